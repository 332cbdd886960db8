/* jobdir.c - the file queue on disk.
 *
 * Guarantees: a job directory changes stage only by one renameat2(RENAME_NOREPLACE) followed
 * by fsync of the source and target folders; a file inside a job is published by writing a
 * temporary name, fsync, rename, fsync of the folder. If any step fails the whole operation
 * reports failure and the caller must not acknowledge it. Only the queue daemon moves jobs. */
#define _GNU_SOURCE
#include "taskmill/jobdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "taskmill/files.h"
#include "taskmill/task.h"

static const char *const stage_dirs[_STAGE_MAX] = {
    [STAGE_REQUEST] = "request", [STAGE_PENDING] = "pending", [STAGE_IN_PROGRESS] = "in_progress",
    [STAGE_DONE] = "done",       [STAGE_FAILED] = "failed",   [STAGE_CORRUPT] = "corrupt",
    [STAGE_TRASH] = "trash",
};

static const char *const stage_states[_STAGE_MAX] = {
    [STAGE_REQUEST] = "received", [STAGE_PENDING] = "pending", [STAGE_IN_PROGRESS] = "in_progress",
    [STAGE_DONE] = "done",        [STAGE_FAILED] = "failed",   [STAGE_CORRUPT] = "corrupt",
    [STAGE_TRASH] = "deleted",
};

const char *stage_dir(Stage s)
{
    return s >= 0 && s < _STAGE_MAX ? stage_dirs[s] : NULL;
}

const char *stage_state(Stage s)
{
    return s >= 0 && s < _STAGE_MAX ? stage_states[s] : NULL;
}

Stage stage_from_state(const char *state)
{
    for (int s = 0; s <= STAGE_FAILED; s++)
        if (!strcmp(stage_states[s], state))
            return (Stage)s;
    return STAGE_INVALID;
}

static int open_stages(int data_fd, bool create)
{
    struct stat data_st, st;

    if (fstat(data_fd, &data_st) < 0)
        return -errno;
    for (int s = 0; s < _STAGE_MAX; s++) {
        if (create && mkdirat(data_fd, stage_dirs[s], 0750) < 0 && errno != EEXIST)
            return -errno;
        if (fstatat(data_fd, stage_dirs[s], &st, 0) < 0)
            return -errno;
        if (!S_ISDIR(st.st_mode))
            return -ENOTDIR;
        /* rename(2) only works within one filesystem: refuse a split queue at start. */
        if (st.st_dev != data_st.st_dev)
            return -EXDEV;
    }
    return 0;
}

int jobdir_open_data(const char *root, bool create, int *ret_fd)
{
    char path[4096];
    int fd, r;

    if (snprintf(path, sizeof(path), "%s/data", root) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    if (create && (r = mkdir_p(path, 0750)) < 0)
        return r;
    fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    r = open_stages(fd, create);
    if (r < 0) {
        close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}

static void job_path(char *buf, size_t len, Stage s, const char *id)
{
    snprintf(buf, len, "%s/%s", stage_dirs[s], id);
}

int jobdir_move(int data_fd, const char *id, Stage from, Stage to)
{
    char src[128], dst[128];
    int r;

    if (!task_id_valid(id) || from == to)
        return -EINVAL;
    job_path(src, sizeof(src), from, id);
    job_path(dst, sizeof(dst), to, id);
    if (renameat2(data_fd, src, data_fd, dst, RENAME_NOREPLACE) < 0)
        return -errno;
    r = fsync_at(data_fd, stage_dirs[to]);
    if (r == 0)
        r = fsync_at(data_fd, stage_dirs[from]);
    return r;
}

int jobdir_find(int data_fd, const char *id, Stage *ret_stage)
{
    char path[128];
    struct stat st;

    if (!task_id_valid(id))
        return -EINVAL;
    /* Look in the order a job travels; a move between two looks is caught by the retry. */
    for (int attempt = 0; attempt < 3; attempt++)
        for (int s = STAGE_REQUEST; s <= STAGE_FAILED; s++) {
            job_path(path, sizeof(path), (Stage)s, id);
            if (fstatat(data_fd, path, &st, 0) == 0 && S_ISDIR(st.st_mode)) {
                *ret_stage = (Stage)s;
                return 0;
            }
        }
    return -ENOENT;
}

int jobdir_open(int data_fd, Stage s, const char *id, int *ret_fd)
{
    char path[128];
    int fd;

    if (!task_id_valid(id))
        return -EINVAL;
    job_path(path, sizeof(path), s, id);
    fd = openat(data_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    *ret_fd = fd;
    return 0;
}

int jobdir_find_open(int data_fd, const char *id, Stage *ret_stage, int *ret_fd)
{
    int r = -ENOENT;

    for (int attempt = 0; attempt < 3 && r == -ENOENT; attempt++) {
        r = jobdir_find(data_fd, id, ret_stage);
        if (r == 0)
            r = jobdir_open(data_fd, *ret_stage, id, ret_fd);
    }
    return r;
}

int jobdir_remove(int data_fd, Stage s, const char *id)
{
    char path[128];
    int r;

    r = jobdir_move(data_fd, id, s, STAGE_TRASH);
    job_path(path, sizeof(path), STAGE_TRASH, id);
    if (r == -EEXIST) { /* an earlier removal was interrupted: finish it, then retry */
        if ((r = rm_rf_at(data_fd, path)) < 0)
            return r;
        return jobdir_remove(data_fd, s, id);
    }
    if (r < 0)
        return r;
    /* The job is gone from every stage; a tree that resists (a file added meanwhile through
     * an fd opened before the move) is emptied by the next recovery. */
    rm_rf_at(data_fd, path);
    return 0;
}

int jobdir_publish(int data_fd, const char *tmp_name, const char *id, bool *ret_published)
{
    char src[128], dst[128];
    int r;

    *ret_published = false;
    if (!task_id_valid(id) || snprintf(src, sizeof(src), "%s/%s", stage_dirs[STAGE_REQUEST],
                                       tmp_name) >= (int)sizeof(src))
        return -EINVAL;
    job_path(dst, sizeof(dst), STAGE_REQUEST, id);
    if (renameat2(data_fd, src, data_fd, dst, RENAME_NOREPLACE) < 0)
        return -errno;
    *ret_published = true;
    r = fsync_at(data_fd, stage_dirs[STAGE_REQUEST]);
    if (r == 0)
        return 0;
    /* Not durable: take it back, so nobody is told of a job a power cut could undo. */
    if (renameat2(data_fd, dst, data_fd, src, RENAME_NOREPLACE) == 0)
        *ret_published = false;
    return r;
}

int jobdir_each_entry(int data_fd, Stage s, JobdirEachFn fn, void *userdata)
{
    int fd = openat(data_fd, stage_dirs[s], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d;
    struct dirent *de;
    int r = 0;

    if (fd < 0)
        return -errno;
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    while (r == 0 && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            r = fn(de->d_name, userdata);
    closedir(d);
    return r;
}

typedef struct EachId {
    JobdirEachFn fn;
    void *userdata;
} EachId;

static int each_id(const char *name, void *userdata)
{
    EachId *e = userdata;

    return task_id_valid(name) ? e->fn(name, e->userdata) : 0;
}

int jobdir_each(int data_fd, Stage s, JobdirEachFn fn, void *userdata)
{
    EachId e = {fn, userdata};

    return jobdir_each_entry(data_fd, s, each_id, &e);
}

/* What an attempt writes: temporaries and partials, outputs (output*, stdout.txt, the exec
 * kind's tmp/), progress, result and error, and the cluster node it ran on (node.json). */
static bool is_attempt_output(const char *name)
{
    size_t n = strlen(name);

    return !strncmp(name, ".tmp", 4) || (n > 8 && !strcmp(name + n - 8, ".partial")) ||
           !strncmp(name, "output", 6) || !strcmp(name, "stdout.txt") || !strcmp(name, "tmp") ||
           !strcmp(name, "progress.json") || !strcmp(name, "result.json") ||
           !strcmp(name, "error.json") || !strcmp(name, "node.json");
}

int jobdir_reset(int job_fd)
{
    int fd = dup(job_fd);
    DIR *d;
    struct dirent *de;
    int r = 0, removed = 0;

    if (fd < 0)
        return -errno;
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    rewinddir(d);
    while ((de = readdir(d)))
        if (is_attempt_output(de->d_name)) {
            int q = rm_rf_at(job_fd, de->d_name);
            if (q < 0 && r == 0)
                r = q;
            removed++;
        }
    closedir(d);
    if (r == 0 && removed && fsync(job_fd) < 0)
        r = -errno;
    return r < 0 ? r : removed;
}

int jobdir_lock(int data_fd, int *ret_fd)
{
    int fd = openat(data_fd, ".queue.lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);

    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}
