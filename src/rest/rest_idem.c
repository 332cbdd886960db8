/* rest_idem.c - idempotency keys: a client that repeats a POST with the same key gets the
 * task it already created instead of a second one.
 *
 * data/keys/<sha256 of owner and key> holds the id of the upload that claimed the key. An
 * upload claims its key as soon as the key arrives (the Idempotency-Key header, or the form
 * field), long before it publishes its job: the key file is written (temp, fsync, no-replace
 * rename), so a 201 always has its key on disk, and the upload is listed as in flight. A second
 * upload with the same key then finds the key taken and learns, in this order:
 *   - the first upload is still in flight (storing): 409 duplicate_in_progress;
 *   - its task exists: 200 with that task;
 *   - neither (its upload failed, its task was deleted or expired, or a killed rest left the
 *     key): the key is stale and is taken over.
 * An upload leaves the in-flight list only after it published its job or dropped its key, so
 * the two questions are never both "no" for a live task. One mutex orders every decision on
 * data/keys/ (MHD runs requests on several threads); rest is the only writer there. A DELETE
 * drops its key (idem_forget); keys of tasks the queue expired are swept by idem_sweep. */
#define _GNU_SOURCE
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rest.h"
#include "taskmill/jobdir.h"
#include "taskmill/task.h"
#include "taskmill/files.h"
#include "taskmill/text.h"

#define KEY_MAX 200

static pthread_mutex_t key_lock = PTHREAD_MUTEX_INITIALIZER;

bool idem_key_valid(const char *key)
{
    size_t n = key ? strlen(key) : 0;

    if (n == 0 || n > KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (key[i] < 0x21 || key[i] > 0x7e)
            return false;
    return true;
}

/* Keys are per token: the file name hashes the owner's name with the key, so one token can
 * never reach another's task by guessing its key. */
static void key_file(const char *owner, const char *key, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    char buf[512];
    int n = snprintf(buf, sizeof(buf), "%s\n%s", owner ? owner : "", key);

    EVP_Digest(buf, (size_t)n, md, &len, EVP_sha256(), NULL);
    hex_encode(md, 32, hex);
}

/* The uploads that hold a key and have not published yet: a short list, under the lock. */
typedef struct InFlight {
    char id[TASK_ID_LEN + 1];
    struct InFlight *next;
} InFlight;
static InFlight *in_flight;

static bool flying(const char *id)
{
    for (InFlight *f = in_flight; f; f = f->next)
        if (!strcmp(f->id, id))
            return true;
    return false;
}

static int fly(const char *id)
{
    InFlight *f = calloc(1, sizeof(*f));

    if (!f)
        return -ENOMEM;
    memcpy(f->id, id, sizeof(f->id));
    f->next = in_flight;
    in_flight = f;
    return 0;
}

static void land(const char *id)
{
    for (InFlight **pp = &in_flight; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->id, id)) {
            InFlight *f = *pp;
            *pp = f->next;
            free(f);
            return;
        }
}

/* The id a key file names: 0, -ENOENT, or -EBADMSG for a garbled file. */
static int key_read(Rest *rest, const char *hex, char ret_id[TASK_ID_LEN + 1])
{
    size_t len;
    char *buf;
    int r = file_read_all(rest->keys_fd, hex, TASK_ID_LEN, &buf, &len);

    if (r < 0)
        return r;
    r = len == TASK_ID_LEN && task_id_valid(buf) ? 0 : -EBADMSG;
    if (r == 0)
        memcpy(ret_id, buf, TASK_ID_LEN + 1);
    free(buf);
    return r;
}

/* A new file name holding the id, fsynced; not yet published. */
static int write_tmp(int dir_fd, const char *name, const char *id)
{
    int fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
    int r;

    if (fd < 0)
        return -errno;
    r = fd_write_all(fd, id, TASK_ID_LEN);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    close(fd);
    if (r < 0)
        unlinkat(dir_fd, name, 0);
    return r;
}

/* Publishes tmp as hex: without replacing (a fresh key), or replacing a stale one. */
static int key_publish(Rest *rest, const char *tmp, const char *hex, bool replace)
{
    int r = renameat2(rest->keys_fd, tmp, rest->keys_fd, hex, replace ? 0 : RENAME_NOREPLACE);

    if (r < 0)
        return -errno;
    return fsync(rest->keys_fd) < 0 ? -errno : 0;
}

/* Decides a key that another upload wrote: busy, existing, or stale (taken over). */
static int claim_taken(Rest *rest, const char *tmp, const char *hex, char existing[37],
                       IdemClaim *ret)
{
    char other[TASK_ID_LEN + 1];
    Stage s;
    int r = key_read(rest, hex, other);

    if (r == 0 && flying(other)) {
        *ret = IDEM_BUSY;
        return 0;
    }
    if (r == 0 && jobdir_find(rest->data_fd, other, &s) == 0) {
        memcpy(existing, other, sizeof(other));
        *ret = IDEM_EXISTS;
        return 0;
    }
    if (r < 0 && r != -EBADMSG && r != -ENOENT)
        return r;
    *ret = IDEM_NEW;
    return key_publish(rest, tmp, hex, true);
}

int idem_claim(Rest *rest, const char *owner, const char *key, const char *id,
               char ret_existing[37], IdemClaim *ret)
{
    char hex[65], tmp[128];
    int r;

    key_file(owner, key, hex);
    snprintf(tmp, sizeof(tmp), ".tmp.%s", id);
    r = write_tmp(rest->keys_fd, tmp, id);
    if (r < 0)
        return r;
    pthread_mutex_lock(&key_lock);
    *ret = IDEM_NEW;
    r = key_publish(rest, tmp, hex, false);
    if (r == -EEXIST)
        r = claim_taken(rest, tmp, hex, ret_existing, ret);
    if (r == 0 && *ret == IDEM_NEW)
        r = fly(id);
    pthread_mutex_unlock(&key_lock);
    if (r < 0 || *ret != IDEM_NEW)
        unlinkat(rest->keys_fd, tmp, 0);
    return r;
}

void idem_release(Rest *rest, const char *owner, const char *key, const char *id, bool published)
{
    char hex[65], named[TASK_ID_LEN + 1];

    key_file(owner, key, hex);
    pthread_mutex_lock(&key_lock);
    if (!published && key_read(rest, hex, named) == 0 && !strcmp(named, id) &&
        unlinkat(rest->keys_fd, hex, 0) == 0)
        fsync(rest->keys_fd);
    land(id); /* only now: its job is published, or its key is gone */
    pthread_mutex_unlock(&key_lock);
}

/* After a deletion: drops the key if it still names this task, so data/keys/ does not grow
 * with every task ever made. */
int idem_forget(Rest *rest, const char *owner, const char *key, const char *id)
{
    char hex[65], named[TASK_ID_LEN + 1];
    int r;

    key_file(owner, key, hex);
    pthread_mutex_lock(&key_lock);
    r = key_read(rest, hex, named);
    if (r == 0 && !strcmp(named, id) &&
        (unlinkat(rest->keys_fd, hex, 0) < 0 || fsync(rest->keys_fd) < 0))
        r = -errno;
    pthread_mutex_unlock(&key_lock);
    return r == -ENOENT || r == -EBADMSG ? 0 : r;
}

/* A key names a live task while the task uploads (in flight) or sits in a stage (jobdir_find
 * looks again when a move hides the job from one pass). Called under the lock. */
static bool key_task_alive(Rest *rest, const char *id)
{
    Stage s;

    return flying(id) || jobdir_find(rest->data_fd, id, &s) == 0;
}

/* Removes the key file name if its task is gone and the file is older than min_age seconds
 * (its task cannot have expired sooner). 1 when removed, 0 when kept, <0 on error. */
static int sweep_one(Rest *rest, const char *name, time_t min_age)
{
    char id[TASK_ID_LEN + 1];
    struct stat st;
    int r;

    if (fstatat(rest->keys_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISREG(st.st_mode) || time(NULL) - st.st_mtime < min_age)
        return 0;
    if (name[0] == '.') /* ".tmp.<id>" that old was left by a killed rest */
        return unlinkat(rest->keys_fd, name, 0) < 0 ? (errno == ENOENT ? 0 : -errno) : 1;
    pthread_mutex_lock(&key_lock);
    r = key_read(rest, name, id);
    if (r == -EBADMSG || (r == 0 && !key_task_alive(rest, id)))
        r = unlinkat(rest->keys_fd, name, 0) < 0 ? -errno : 1;
    pthread_mutex_unlock(&key_lock);
    return r == -ENOENT ? 0 : r;
}

int idem_sweep(Rest *rest, time_t min_age, unsigned *ret_removed)
{
    int fd = openat(rest->keys_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;
    struct dirent *de;
    DIR *d;

    *ret_removed = 0;
    if (fd < 0 || !(d = fdopendir(fd))) {
        r = -errno;
        if (fd >= 0)
            close(fd);
        return r;
    }
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        r = sweep_one(rest, de->d_name, min_age);
        if (r < 0)
            break;
        *ret_removed += (unsigned)r;
        r = 0;
    }
    closedir(d);
    if (*ret_removed && fsync(rest->keys_fd) < 0)
        r = r ? r : -errno;
    return r;
}
