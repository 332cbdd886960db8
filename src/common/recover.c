/* recover.c - puts the file queue back to a consistent "not started" state after a stop or a
 * crash. Called by taskmill-init at boot and at shutdown, and by taskmill-queue at start,
 * always while no converter works on anything. Running it twice changes nothing more.
 *
 * in_progress/<id>  -> reset (partials, outputs, progress removed) -> pending/<id>
 * request/<id>      -> pending/<id> when request.json exists, else removed
 * request/.tmp-...  -> removed (an upload that never completed), only with JOBDIR_RECOVER_UPLOADS
 * trash/...         -> removed (a deletion that was interrupted) */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "taskmill/jobdir.h"
#include "taskmill/task.h"

typedef struct Recover {
    int data_fd;
    int flags;
    RecoverFn fn;
    void *userdata;
    RecoverStats st;
} Recover;

static void note(Recover *rc, const char *name, Stage from, Stage to, int r)
{
    if (r < 0)
        rc->st.errors++;
    if (rc->fn)
        rc->fn(name, from, to, r, rc->userdata);
}

static int requeue(Recover *rc, const char *id, Stage from)
{
    int fd, r = jobdir_open(rc->data_fd, from, id, &fd);

    if (r == 0) {
        r = jobdir_reset(fd);
        close(fd);
    }
    if (r >= 0)
        r = jobdir_move(rc->data_fd, id, from, STAGE_PENDING);
    return r;
}

static bool request_complete(Recover *rc, const char *id)
{
    int fd;
    bool ok;

    if (jobdir_open(rc->data_fd, STAGE_REQUEST, id, &fd) < 0)
        return false;
    ok = faccessat(fd, "request.json", F_OK, 0) == 0;
    close(fd);
    return ok;
}

/* Visits every entry of a stage folder, task id or not. */
static int each_entry(Recover *rc, Stage s, void (*fn)(Recover *, const char *))
{
    int fd = openat(rc->data_fd, stage_dir(s), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct dirent *de;
    DIR *d;

    if (fd < 0)
        return -errno;
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            fn(rc, de->d_name);
    closedir(d);
    return 0;
}

static void recover_in_progress(Recover *rc, const char *name)
{
    int r = task_id_valid(name) ? requeue(rc, name, STAGE_IN_PROGRESS) : -EINVAL;

    if (r >= 0)
        rc->st.requeued++;
    note(rc, name, STAGE_IN_PROGRESS, STAGE_PENDING, r);
}

static void recover_request(Recover *rc, const char *name)
{
    char path[300];
    int r;

    if (task_id_valid(name) && request_complete(rc, name)) {
        r = jobdir_move(rc->data_fd, name, STAGE_REQUEST, STAGE_PENDING);
        if (r == 0)
            rc->st.published++;
        note(rc, name, STAGE_REQUEST, STAGE_PENDING, r);
        return;
    }
    if (!(rc->flags & JOBDIR_RECOVER_UPLOADS))
        return; /* rest may be writing it right now */
    snprintf(path, sizeof(path), "%s/%s", stage_dir(STAGE_REQUEST), name);
    r = rm_rf_at(rc->data_fd, path);
    if (r == 0)
        rc->st.dropped_uploads++;
    note(rc, name, STAGE_REQUEST, STAGE_TRASH, r);
}

static void recover_trash(Recover *rc, const char *name)
{
    char path[300];

    snprintf(path, sizeof(path), "%s/%s", stage_dir(STAGE_TRASH), name);
    note(rc, name, STAGE_TRASH, STAGE_TRASH, rm_rf_at(rc->data_fd, path));
}

int jobdir_recover(int data_fd, int flags, RecoverFn on_move, void *userdata, RecoverStats *ret)
{
    Recover rc = {.data_fd = data_fd, .flags = flags, .fn = on_move, .userdata = userdata};
    int r;

    if ((r = each_entry(&rc, STAGE_IN_PROGRESS, recover_in_progress)) < 0 ||
        (r = each_entry(&rc, STAGE_REQUEST, recover_request)) < 0 ||
        (r = each_entry(&rc, STAGE_TRASH, recover_trash)) < 0)
        return r;
    if (fsync_at(data_fd, stage_dir(STAGE_REQUEST)) < 0 || fsync_at(data_fd, ".") < 0)
        rc.st.errors++;
    if (ret)
        *ret = rc.st;
    return 0;
}
