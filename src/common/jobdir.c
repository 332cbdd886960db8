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

int mkdir_p(const char *path, int mode)
{
    char buf[4096];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int fsync_at(int dir_fd, const char *name)
{
    int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
    int r = 0;

    if (fd < 0)
        return -errno;
    if (fsync(fd) < 0)
        r = -errno;
    close(fd);
    return r;
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
    if (r < 0 && r != -EEXIST)
        return r;
    job_path(path, sizeof(path), STAGE_TRASH, id);
    if (r == -EEXIST) { /* an earlier removal was interrupted: finish it, then retry */
        if ((r = rm_rf_at(data_fd, path)) < 0)
            return r;
        return jobdir_remove(data_fd, s, id);
    }
    return rm_rf_at(data_fd, path);
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

int fd_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int file_write_atomic(int dir_fd, const char *name, const void *buf, size_t len)
{
    char tmp[300];
    int fd, r;

    if (snprintf(tmp, sizeof(tmp), ".tmp.%s", name) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0)
        return -errno;
    r = fd_write_all(fd, buf, len);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && renameat(dir_fd, tmp, dir_fd, name) < 0)
        r = -errno;
    if (r < 0) {
        unlinkat(dir_fd, tmp, 0);
        return r;
    }
    if (dir_fd == AT_FDCWD)
        return fsync_at(AT_FDCWD, ".");
    return fsync(dir_fd) < 0 ? -errno : 0;
}

int file_read_all(int dir_fd, const char *name, size_t max, char **ret, size_t *ret_len)
{
    int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    char *buf;
    size_t len = 0;
    ssize_t n;

    if (fd < 0)
        return -errno;
    buf = malloc(max + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    while (len < max && (n = read(fd, buf + len, max - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int r = -errno;
            close(fd);
            free(buf);
            return r;
        }
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    *ret = buf;
    if (ret_len)
        *ret_len = len;
    return 0;
}

static int rm_children(int fd)
{
    DIR *d = fdopendir(fd);
    struct dirent *de;
    int r = 0;

    if (!d) {
        close(fd);
        return -errno;
    }
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        int q = rm_rf_at(dirfd(d), de->d_name);
        if (q < 0 && r == 0)
            r = q;
    }
    closedir(d);
    return r;
}

int rm_rf_at(int dir_fd, const char *name)
{
    int fd, r;

    if (unlinkat(dir_fd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    r = rm_children(fd);
    if (unlinkat(dir_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
        r = -errno;
    return r;
}

static bool is_attempt_output(const char *name)
{
    size_t n = strlen(name);

    return !strncmp(name, ".tmp", 4) || (n > 8 && !strcmp(name + n - 8, ".partial")) ||
           !strncmp(name, "output.", 7) || !strcmp(name, "progress.json") ||
           !strcmp(name, "result.json") || !strcmp(name, "error.json");
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
