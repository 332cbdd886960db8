/* init.c - taskmill-init: puts the queue back to "not started" around the workers' lifetime.
 *
 * At start, before any other taskmill daemon runs (systemd orders them after it), every
 * interrupted job goes back to pending/ with its half-written outputs removed, complete uploads
 * are published, incomplete ones removed (jobdir_recover). Then READY=1 and it waits. On
 * SIGTERM, which systemd sends after the converters have exited, it runs the same cleanup. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "taskmill/daemon.h"
#include "taskmill/jobdir.h"
#include "taskmill/log.h"
#include "taskmill/files.h"
#include "taskmill/recover.h"

static int data_fd = -1;

static void on_move(const char *name, Stage from, Stage to, int error, void *userdata)
{
    (void)userdata;
    if (error < 0)
        log_task(LOG_ERR, name, "cannot recover from=%s: %s", stage_dir(from), strerror(-error));
    else if (from == STAGE_REQUEST && to == STAGE_TRASH)
        log_task(LOG_NOTICE, name, "removed an incomplete upload");
    else if (from != STAGE_TRASH)
        log_task(LOG_NOTICE, name, "reset from=%s to=%s", stage_dir(from), stage_dir(to));
}

static int cleanup(const char *when)
{
    RecoverStats st;
    int lock_fd, r = jobdir_lock(data_fd, &lock_fd);

    if (r == -EWOULDBLOCK) { /* init restarted under a running queue: its jobs are live */
        log_notice("%s cleanup skipped: the queue is running", when);
        return 0;
    }
    if (r < 0) {
        log_err("cannot take the queue lock: %s", strerror(-r));
        return r;
    }
    r = recover_run(data_fd, RECOVER_UPLOADS, on_move, NULL, &st);
    close(lock_fd);
    if (r < 0) {
        log_err("%s cleanup failed: %s", when, strerror(-r));
        return r;
    }
    log_info("%s cleanup: %u jobs back to pending, %u uploads published, %u incomplete uploads "
             "removed, %u errors",
             when, st.requeued, st.published, st.dropped_uploads, st.errors);
    return st.errors ? -EIO : 0;
}

static int init_init(Daemon *d, const Conf *c)
{
    int r = jobdir_open_data(c->root, true, &data_fd);

    (void)d;
    if (r < 0) {
        log_err("cannot open %s/data: %s", c->root, strerror(-r));
        return r;
    }
    r = mkdir_p(c->runtime_dir, 0750);
    if (r < 0)
        log_warning("cannot create %s: %s", c->runtime_dir, strerror(-r));
    return cleanup("boot");
}

static void init_shutdown(Daemon *d)
{
    (void)d;
    cleanup("shutdown");
    close(data_fd);
}

int main(int argc, char **argv)
{
    static const DaemonSpec spec = {
        .name = "init",
        .summary = "Resets interrupted jobs before the workers start and after they stop.",
        .init = init_init,
        .shutdown = init_shutdown,
    };
    return daemon_main(argc, argv, &spec);
}
