/* rest_idem.c - idempotency keys: a client that repeats a POST with the same key gets the
 * task it already created instead of a second one.
 *
 * data/keys/<sha256 of the key> holds the task id. It is written (temp, fsync, no-replace
 * rename) before the job is published, so a 201 always has its key on disk. A key whose task
 * is gone (deleted) is stale and is replaced. rest is the only writer of data/keys/. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rest.h"
#include "taskmill/jobdir.h"
#include "taskmill/task.h"

#define KEY_MAX 200

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

/* Records key -> id. -EEXIST when another upload with the same key got there first. */
int idem_record(Rest *rest, const char *owner, const char *key, const char *id)
{
    char hex[65], tmp[128], other[TASK_ID_LEN + 1];
    int r;

    key_file(owner, key, hex);
    snprintf(tmp, sizeof(tmp), ".tmp.%s", id);
    r = file_write_atomic(rest->keys_fd, tmp, id, TASK_ID_LEN);
    if (r < 0)
        return r;
    if (renameat2(rest->keys_fd, tmp, rest->keys_fd, hex, RENAME_NOREPLACE) == 0)
        return fsync(rest->keys_fd) < 0 ? -errno : 0;
    r = -errno;
    if (r == -EEXIST &&
        idem_lookup(rest, owner, key, other) == -ENOENT) /* stale: its task is gone */
        r = renameat(rest->keys_fd, tmp, rest->keys_fd, hex) < 0 ? -errno : 0;
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
    r = file_read_all(rest->keys_fd, hex, TASK_ID_LEN, &buf, &len);
    if (r < 0)
        return r == -ENOENT ? 0 : r;
    r = len == TASK_ID_LEN && !memcmp(buf, id, TASK_ID_LEN);
    free(buf);
    if (r && unlinkat(rest->keys_fd, hex, 0) < 0)
        return -errno;
    return r ? (fsync(rest->keys_fd) < 0 ? -errno : 0) : 0;
}
