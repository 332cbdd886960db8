/* rest_idem.c - idempotency keys: a client that repeats a POST with the same key gets the
 * task it already created instead of a second one.
 *
 * data/keys/<sha256 of the key> holds the task id. It is written (temp, fsync, no-replace
 * rename) before the job is published, so a 201 always has its key on disk. A key whose task
 * is gone (deleted) is stale and is replaced. A DELETE drops its key (idem_forget); keys of
 * tasks the queue expired are swept by idem_sweep. rest is the only writer of data/keys/, and
 * one mutex orders the replacing of a stale key against the sweep, as MHD runs requests on
 * several threads. */
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

#define KEY_MAX 200

static pthread_mutex_t stale_lock = PTHREAD_MUTEX_INITIALIZER;

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
    for (unsigned i = 0; i < len && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* 0 with the id of a task that still exists; -ENOENT when the key is unknown or stale. */
int idem_lookup(Rest *rest, const char *owner, const char *key, char ret_id[TASK_ID_LEN + 1])
{
    char hex[65], *buf;
    size_t len;
    Stage s;
    int r;

    key_file(owner, key, hex);
    r = file_read_all(rest->keys_fd, hex, TASK_ID_LEN, &buf, &len);
    if (r < 0)
        return r;
    r = len == TASK_ID_LEN && task_id_valid(buf) && jobdir_find(rest->data_fd, buf, &s) == 0
            ? 0
            : -ENOENT;
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

/* Records key -> id. -EEXIST when another upload with the same key got there first. */
int idem_record(Rest *rest, const char *owner, const char *key, const char *id)
{
    char hex[65], tmp[128], other[TASK_ID_LEN + 1];
    int r;

    key_file(owner, key, hex);
    snprintf(tmp, sizeof(tmp), ".tmp.%s", id);
    r = write_tmp(rest->keys_fd, tmp, id);
    if (r < 0)
        return r;
    /* Not file_write_atomic: the publishing rename must not replace a live key. */
    if (renameat2(rest->keys_fd, tmp, rest->keys_fd, hex, RENAME_NOREPLACE) == 0)
        return fsync(rest->keys_fd) < 0 ? -errno : 0;
    r = -errno;
    if (r == -EEXIST) {
        pthread_mutex_lock(&stale_lock);
        if (idem_lookup(rest, owner, key, other) == -ENOENT) /* stale: its task is gone */
            r = renameat(rest->keys_fd, tmp, rest->keys_fd, hex) < 0 ? -errno : 0;
        pthread_mutex_unlock(&stale_lock);
    }
    if (r == 0)
        return fsync(rest->keys_fd) < 0 ? -errno : 0;
    unlinkat(rest->keys_fd, tmp, 0);
    return r;
}

/* After a deletion: drops the key if it still names this task, so data/keys/ does not grow
 * with every task ever made. */
int idem_forget(Rest *rest, const char *owner, const char *key, const char *id)
{
    char hex[65], *buf;
    size_t len;
    int r;

    key_file(owner, key, hex);
    pthread_mutex_lock(&stale_lock);
    r = file_read_all(rest->keys_fd, hex, TASK_ID_LEN, &buf, &len);
    if (r == 0) {
        bool ours = len == TASK_ID_LEN && !memcmp(buf, id, TASK_ID_LEN);

        free(buf);
        if (ours && (unlinkat(rest->keys_fd, hex, 0) < 0 || fsync(rest->keys_fd) < 0))
            r = -errno;
    }
    pthread_mutex_unlock(&stale_lock);
    return r == -ENOENT ? 0 : r;
}

/* A key names a live task while the task uploads (request/.tmp-<id>) or sits in a stage
 * (jobdir_find looks again when a move hides the job from one pass). */
static bool key_task_alive(Rest *rest, const char *id)
{
    char tmp[64];
    Stage s;

    snprintf(tmp, sizeof(tmp), ".tmp-%s", id);
    return faccessat(rest->request_fd, tmp, F_OK, AT_SYMLINK_NOFOLLOW) == 0 ||
           jobdir_find(rest->data_fd, id, &s) == 0;
}

/* Removes the key file name if its task is gone and the file is older than min_age seconds
 * (its task cannot have expired sooner). 1 when removed, 0 when kept, <0 on error. */
static int sweep_one(Rest *rest, const char *name, time_t min_age)
{
    char *buf = NULL;
    size_t len;
    struct stat st;
    int r;

    if (fstatat(rest->keys_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISREG(st.st_mode) || time(NULL) - st.st_mtime < min_age)
        return 0;
    if (name[0] == '.') /* ".tmp.<id>" that old was left by a killed rest */
        return unlinkat(rest->keys_fd, name, 0) < 0 ? (errno == ENOENT ? 0 : -errno) : 1;
    pthread_mutex_lock(&stale_lock);
    r = file_read_all(rest->keys_fd, name, TASK_ID_LEN, &buf, &len);
    if (r == 0)
        r = len == TASK_ID_LEN && task_id_valid(buf) && key_task_alive(rest, buf) ? 0 : 1;
    if (r == 1 && unlinkat(rest->keys_fd, name, 0) < 0)
        r = -errno;
    pthread_mutex_unlock(&stale_lock);
    free(buf);
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
