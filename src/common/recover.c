/* recover.c - puts the file queue back to a consistent "not started" state after a stop or a
 * crash (see recover.h). Called by taskmill-init at boot and at shutdown, and by taskmill-queue
 * at start, always while no converter works on anything. Running it twice changes nothing more.
 *
 * in_progress/<id>  -> interruption counted, reset (partials, outputs, progress removed)
 *                      -> pending/<id>
 * request/<id>      -> pending/<id> when request.json exists, else removed
 * request/.tmp-...  -> removed (an upload that never completed), only with RECOVER_UPLOADS
 * trash/...         -> removed (a deletion that was interrupted) */
#define _GNU_SOURCE
#include "taskmill/recover.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "taskmill/claim.h"
#include "taskmill/files.h"
#include "taskmill/task.h"

typedef struct Recover {
    int data_fd;
    int flags;
    RecoverFn fn;
    void *userdata;
    RecoverStats st;
} Recover;

/* Counts and reports one entry's outcome; returns 0 so the walk goes on. */
static int note(Recover *rc, const char *name, Stage from, Stage to, int r)
{
    if (r < 0)
        rc->st.errors++;
    if (rc->fn)
        rc->fn(name, from, to, r, rc->userdata);
    return 0;
}

static int requeue(Recover *rc, const char *id, Stage from)
{
    int fd, r = jobdir_open(rc->data_fd, from, id, &fd);

    if (r == 0) {
        r = claim_interrupt(fd); /* before the reset, which removes error.json */
        if (r == 0)
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

static int recover_in_progress(const char *name, void *userdata)
{
    Recover *rc = userdata;
    int r = task_id_valid(name) ? requeue(rc, name, STAGE_IN_PROGRESS) : -EINVAL;

    if (r >= 0)
        rc->st.requeued++;
    return note(rc, name, STAGE_IN_PROGRESS, STAGE_PENDING, r);
}

static int recover_request(const char *name, void *userdata)
{
    Recover *rc = userdata;
    char path[300];
    int r;

    if (task_id_valid(name) && request_complete(rc, name)) {
        r = jobdir_move(rc->data_fd, name, STAGE_REQUEST, STAGE_PENDING);
        if (r == 0)
            rc->st.published++;
        return note(rc, name, STAGE_REQUEST, STAGE_PENDING, r);
    }
    if (!(rc->flags & RECOVER_UPLOADS))
        return 0; /* rest may be writing it right now */
    snprintf(path, sizeof(path), "%s/%s", stage_dir(STAGE_REQUEST), name);
    r = rm_rf_at(rc->data_fd, path);
    if (r == 0)
        rc->st.dropped_uploads++;
    return note(rc, name, STAGE_REQUEST, STAGE_TRASH, r);
}

static int recover_trash(const char *name, void *userdata)
{
    Recover *rc = userdata;
    char path[300];

    snprintf(path, sizeof(path), "%s/%s", stage_dir(STAGE_TRASH), name);
    return note(rc, name, STAGE_TRASH, STAGE_TRASH, rm_rf_at(rc->data_fd, path));
}

int recover_run(int data_fd, int flags, RecoverFn on_move, void *userdata, RecoverStats *ret)
{
    Recover rc = {.data_fd = data_fd, .flags = flags, .fn = on_move, .userdata = userdata};
    int r;

    if ((r = jobdir_each_entry(data_fd, STAGE_IN_PROGRESS, recover_in_progress, &rc)) < 0 ||
        (r = jobdir_each_entry(data_fd, STAGE_REQUEST, recover_request, &rc)) < 0 ||
        (r = jobdir_each_entry(data_fd, STAGE_TRASH, recover_trash, &rc)) < 0)
        return r;
    if (fsync_at(data_fd, stage_dir(STAGE_REQUEST)) < 0 || fsync_at(data_fd, ".") < 0)
        rc.st.errors++;
    if (ret)
        *ret = rc.st;
    return 0;
}
