/* convert.c - taskmill-convert: a pool of conversion workers fed by the queue.
 *
 * The pool announces its slots to the queue, keeps one work.claim outstanding per free slot,
 * and runs each assigned job in a child (convert_job.c). A child's exit status becomes
 * work.done (done, failed, crashed) or work.released (interrupted). On SIGTERM every child is
 * asked to stop, each job is handed back with work.released, and only then does the pool exit.
 * If the queue goes away, children are stopped and the pool reconnects on its own. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "convert.h"
#include "taskmill/daemon.h"
#include "taskmill/ipc.h"
#include "taskmill/jobdir.h"
#include "taskmill/log.h"
#include "taskmill/task.h"
#include "taskmill/clock.h"

typedef struct Slot {
    pid_t pid;
    int64_t started_ns;
    char id[TASK_ID_LEN + 1];
    bool claimed; /* a work.claim for this slot is outstanding */
} Slot;

typedef struct Pool {
    Daemon *daemon;
    const Conf *conf;
    int data_fd, queue_fd;
    int64_t rid;
    int64_t unacked_rid; /* last work.done/work.released the queue has not answered yet */
    int64_t stop_ns;
    Slot *slots;
    int n_slots;
} Pool;

static Pool pool;

static int busy_count(const Pool *p)
{
    int n = 0;

    for (int i = 0; i < p->n_slots; i++)
        n += p->slots[i].pid > 0;
    return n;
}

static int pool_send(Pool *p, const char *type, json_t *body)
{
    if (p->queue_fd < 0) {
        json_decref(body);
        return -ENOTCONN;
    }
    return ipc_send_new(p->queue_fd, ipc_msg(type, ++p->rid, body));
}

/* Reports an outcome and remembers to wait for its answer before exiting: a job is back in
 * pending/ (or in done/) before the pool's process ends. */
static void pool_report(Pool *p, const char *type, json_t *body)
{
    if (pool_send(p, type, body) == 0)
        p->unacked_rid = p->rid;
}

/* While stopping: may the process end now? */
static void maybe_quit(Pool *p)
{
    bool answered = p->unacked_rid == 0 || p->queue_fd < 0;
    bool waited_long = p->stop_ns && now_ns() - p->stop_ns > 10000000000LL;

    if (!daemon_stopping(p->daemon) || busy_count(p) > 0)
        return;
    if (!answered && !waited_long)
        return;
    if (!answered)
        log_warning("the queue did not confirm the hand-back; init will reset the jobs");
    daemon_quit(p->daemon, EXIT_SUCCESS);
}

static void update_status(Pool *p)
{
    daemon_status(p->daemon, "%d working, %d idle%s", busy_count(p), p->n_slots - busy_count(p),
                  p->queue_fd < 0 ? ", waiting for the queue" : "");
}

static void claim_free_slots(Pool *p)
{
    if (daemon_stopping(p->daemon))
        return;
    for (int i = 0; i < p->n_slots; i++)
        if (p->slots[i].pid == 0 && !p->slots[i].claimed && pool_send(p, "work.claim", NULL) == 0)
            p->slots[i].claimed = true;
}

static Slot *slot_of(Pool *p, const char *id)
{
    for (int i = 0; i < p->n_slots; i++)
        if (p->slots[i].pid > 0 && !strcmp(p->slots[i].id, id))
            return &p->slots[i];
    return NULL;
}

/* The id of work.assign and work.cancel, decoded strictly like every IPC message. */
static const char *msg_id(json_t *msg)
{
    const char *id = NULL;
    char err[256];

    if (ipc_unpack(msg, err, sizeof(err), "{s:s}", "id", &id) < 0 || !task_id_valid(id)) {
        log_warning("queue sent a malformed %s: %s", ipc_type(msg), id ? "bad id" : err);
        return NULL;
    }
    return id;
}

static void on_assign(void *ctx, void *peer, json_t *msg)
{
    Pool *p = ctx;
    const char *id = msg_id(msg);
    Slot *s = NULL;
    int r;

    (void)peer;
    for (int i = 0; i < p->n_slots && !s; i++)
        if (p->slots[i].claimed)
            s = &p->slots[i];
    if (!id || !s) {
        log_warning("queue assigned work we did not claim");
        return;
    }
    s->claimed = false;
    if (daemon_stopping(p->daemon)) {
        pool_report(p, "work.released", json_pack("{s:s}", "id", id));
        return;
    }
    snprintf(s->id, sizeof(s->id), "%s", id);
    s->started_ns = now_ns();
    r = job_spawn(p->conf, p->data_fd, id, &s->pid);
    if (r < 0) {
        log_task(LOG_ERR, id, "cannot start a worker: %s", strerror(-r));
        pool_report(p, "work.released", json_pack("{s:s}", "id", id));
        return;
    }
    log_task(LOG_INFO, id, "converting pid=%d", (int)s->pid);
    update_status(p);
}

static void on_cancel(void *ctx, void *peer, json_t *msg)
{
    Pool *p = ctx;
    const char *id = msg_id(msg);
    Slot *s = id ? slot_of(p, id) : NULL;

    (void)peer;
    if (s) {
        log_task(LOG_INFO, id, "stopping: the task was deleted");
        kill(s->pid, SIGTERM);
    }
}

static void queue_lost(Pool *p)
{
    log_warning("lost the queue; stopping running conversions");
    daemon_unwatch(p->daemon, p->queue_fd);
    close(p->queue_fd);
    p->queue_fd = -1;
    for (int i = 0; i < p->n_slots; i++) {
        p->slots[i].claimed = false;
        if (p->slots[i].pid > 0)
            kill(p->slots[i].pid, SIGTERM);
    }
    update_status(p);
    maybe_quit(p);
}

/* The queue answers in order: an answer to the last report covers every earlier one. */
static void on_answer(void *ctx, void *peer, json_t *msg)
{
    Pool *p = ctx;

    (void)peer;
    if (!strcmp(ipc_type(msg), "error"))
        log_warning("queue: %.200s", json_string_value(json_object_get(msg, "message")));
    if (ipc_rid(msg) >= p->unacked_rid)
        p->unacked_rid = 0;
}

static const IpcHandler queue_handlers[] = {
    {"work.assign", IPC_ROLE_QUEUE, on_assign},
    {"work.cancel", IPC_ROLE_QUEUE, on_cancel},
    {"ok", IPC_ROLE_QUEUE, on_answer},
    {"error", IPC_ROLE_QUEUE, on_answer},
};

static int on_queue(Daemon *d, int fd, uint32_t events, void *userdata)
{
    Pool *p = userdata;
    int r = ipc_dispatch(fd, queue_handlers, sizeof(queue_handlers) / sizeof(queue_handlers[0]),
                         IPC_ROLE_QUEUE, p, NULL, "the queue");

    (void)d, (void)events;
    if (r < 0 && r != -EAGAIN)
        queue_lost(p);
    maybe_quit(p);
    return 0;
}

static int queue_connect(Pool *p)
{
    int fd, r = ipc_connect_queue(p->conf->runtime_dir, IPC_ROLE_CONVERT,
                                  json_pack("{s:i}", "workers", p->n_slots), 5000, &fd);

    if (r == 0 && (r = daemon_watch(p->daemon, fd, EPOLLIN, on_queue, p)) < 0)
        close(fd);
    if (r < 0)
        return r;
    p->rid = 1; /* the hello's */
    p->queue_fd = fd;
    log_info("connected to the queue with %d workers", p->n_slots);
    claim_free_slots(p);
    update_status(p);
    return 0;
}

/* Maps a child's exit status to what the queue must hear; ru is the child's resource use. */
static void report_exit(Pool *p, Slot *s, int status, const struct rusage *ru)
{
    const char *outcome = "crashed";
    char msg[128];

    if (WIFEXITED(status) && WEXITSTATUS(status) == JOB_EXIT_INTERRUPTED) {
        log_task(LOG_NOTICE, s->id, "interrupted, handing the job back");
        pool_report(p, "work.released", json_pack("{s:s}", "id", s->id));
        return;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == JOB_EXIT_DONE)
        outcome = "done";
    else if (WIFEXITED(status) && WEXITSTATUS(status) == JOB_EXIT_FAILED)
        outcome = "failed";
    if (!strcmp(outcome, "crashed")) {
        snprintf(msg, sizeof(msg), "the converter process died (%s %d)",
                 WIFSIGNALED(status) ? "signal" : "exit status",
                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        job_write_crash(p->data_fd, s->id, msg);
    }
    log_task(!strcmp(outcome, "done") ? LOG_INFO : LOG_WARNING, s->id,
             "finished outcome=%s wall=%.2fs cpu=%.2fs max_rss=%ldKiB", outcome,
             (double)(now_ns() - s->started_ns) / 1e9,
             (double)(ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) +
                 (double)(ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) / 1e6,
             ru->ru_maxrss);
    pool_report(p, "work.done", json_pack("{s:s, s:s}", "id", s->id, "outcome", outcome));
}

static void on_child(Daemon *d)
{
    Pool *p = daemon_userdata(d);
    struct rusage ru;
    int status;
    pid_t pid;

    while ((pid = wait4(-1, &status, WNOHANG, &ru)) > 0)
        for (int i = 0; i < p->n_slots; i++) {
            Slot *s = &p->slots[i];
            if (s->pid != pid)
                continue;
            report_exit(p, s, status, &ru);
            *s = (Slot){0};
        }
    maybe_quit(p);
    claim_free_slots(p);
    update_status(p);
}

/* Seconds since the child last wrote progress.json (or since it started). */
static int64_t idle_seconds(Pool *p, const Slot *s)
{
    char path[128];
    struct stat st;
    int64_t last = s->started_ns;

    snprintf(path, sizeof(path), "in_progress/%s/progress.json", s->id);
    if (fstatat(p->data_fd, path, &st, 0) == 0) {
        int64_t m = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        last = m > last ? m : last;
    }
    return (now_ns() - last) / 1000000000;
}

/* The loop pings the watchdog; a conversion stuck inside a decoder or x265 is this loop's to
 * catch: it is killed and reported as a crashed attempt. */
static void kill_stalled(Pool *p)
{
    for (int i = 0; i < p->n_slots; i++) {
        Slot *s = &p->slots[i];
        if (s->pid <= 0 || idle_seconds(p, s) < p->conf->stall_timeout)
            continue;
        log_task(LOG_ERR, s->id, "no progress for %d s, killing pid=%d", p->conf->stall_timeout,
                 (int)s->pid);
        kill(s->pid, SIGKILL);
    }
}

static void on_tick(Daemon *d)
{
    Pool *p = daemon_userdata(d);

    kill_stalled(p);
    maybe_quit(p);
    /* Reconnect only once the old children are gone: the new queue hands their jobs out again. */
    if (p->queue_fd < 0 && !daemon_stopping(d) && busy_count(p) == 0)
        queue_connect(p);
}

static int convert_stop(Daemon *d)
{
    Pool *p = daemon_userdata(d);

    p->stop_ns = now_ns();
    for (int i = 0; i < p->n_slots; i++)
        if (p->slots[i].pid > 0)
            kill(p->slots[i].pid, SIGTERM);
    /* Ends once the last child has exited and the queue confirmed the hand-back. */
    return busy_count(p) > 0 || (p->unacked_rid != 0 && p->queue_fd >= 0);
}

static int convert_init(Daemon *d, const Conf *c)
{
    Pool *p = &pool;
    int r;

    *p = (Pool){.daemon = d, .conf = c, .data_fd = -1, .queue_fd = -1, .n_slots = c->workers};
    daemon_set_userdata(d, p);
    p->slots = calloc((size_t)p->n_slots, sizeof(*p->slots));
    if (!p->slots)
        return -ENOMEM;
    r = jobdir_open_data(c->root, true, &p->data_fd);
    if (r < 0) {
        log_err("cannot open %s/data: %s", c->root, strerror(-r));
        return r;
    }
    if (jail_landlock_abi() > 0)
        log_info("conversion children are confined with Landlock ABI %d, seccomp and rlimits",
                 jail_landlock_abi());
    else
        log_warning("this kernel has no Landlock: conversion children are confined by seccomp "
                    "and rlimits only, not in what files they may open");
    if (queue_connect(p) < 0)
        log_notice("queue not reachable yet; will retry every second");
    update_status(p);
    return 0;
}

static void convert_shutdown(Daemon *d)
{
    Pool *p = daemon_userdata(d);

    if (p->queue_fd >= 0)
        close(p->queue_fd);
    if (p->data_fd >= 0)
        close(p->data_fd);
    free(p->slots);
}

int main(int argc, char **argv)
{
    static const DaemonSpec spec = {
        .name = "convert",
        .summary = "Converts videos to H.265 for the queue, one child process per job.",
        .init = convert_init,
        .stop = convert_stop,
        .shutdown = convert_shutdown,
        .on_child = on_child,
        .on_tick = on_tick,
    };
    return daemon_main(argc, argv, &spec);
}
