/* convert.c - taskmill-convert: a pool of workers fed by the queue (video and exec tasks).
 *
 * The pool announces its slots and the kinds it runs to the queue, keeps one work.claim
 * outstanding per slot it may fill (fewer under load or cooldown, convert_load.c), and runs each
 * assigned task in a child (convert_job.c). A child's exit status becomes work.done (done,
 * failed, retry, crashed), with the attempt's figures, or work.released (interrupted). A task
 * that outlives its timeout is killed and tried again later. The slots are reported to the
 * queue (workers.report) on every change and every second while busy. On SIGTERM every
 * child is asked to stop, each task is handed back with work.released, and only then does the
 * pool exit. If the queue goes away, children are stopped and the pool reconnects on its own.
 * SIGHUP re-reads the task types; running tasks go on. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "convert.h"
#include "taskmill/clock.h"
#include "taskmill/daemon.h"
#include "taskmill/files.h"
#include "taskmill/ipc.h"
#include "taskmill/jobdir.h"
#include "taskmill/log.h"

#define REPORT_EVERY_S 1

typedef struct Slot {
    pid_t pid;
    int64_t started_ns, deadline_ns; /* deadline: the timeout plus the runner's grace; 0 = none */
    char id[TASK_ID_LEN + 1];
    char type[72];
    bool timed_out;
} Slot;

typedef struct Pool {
    Daemon *daemon;
    const Conf *conf;
    int data_fd, queue_fd;
    int64_t rid;
    int64_t unacked_rid; /* last work.done/work.released the queue has not answered yet */
    int64_t stop_ns, last_start_ns;
    int claims; /* work.claims outstanding */
    Slot *slots;
    int n_slots;
    LoadGate gate;
    char host[64];
    unsigned ticks;
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

/* --- what the slots are doing ----------------------------------------------------------------- */

/* The task's progress.json ({percent, fps, eta_seconds}; {} before the first): to decref. */
static json_t *slot_progress(Pool *p, const Slot *s)
{
    char path[128];
    json_t *j = NULL;
    int fd;

    snprintf(path, sizeof(path), "in_progress/%s", s->id);
    fd = openat(p->data_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || json_read_at(fd, "progress.json", &j) < 0 || !json_is_object(j)) {
        json_decref(j);
        j = json_object();
    }
    if (fd >= 0)
        close(fd);
    return j;
}

static json_t *slot_json(Pool *p, int i)
{
    Slot *s = &p->slots[i];
    json_t *progress, *slot;
    char since[40];
    uint64_t rss;
    double cpu;

    if (s->pid <= 0) {
        bool held = busy_count(p) >= p->gate.allowed || p->gate.cooling;
        return json_pack("{s:i, s:s, s:n, s:n, s:n, s:n, s:n, s:s*}", "slot", i, "state",
                         held && p->gate.reason[0] ? "held" : "idle", "pid", "task_id", "task_type",
                         "since", "progress", "held_because",
                         held && p->gate.reason[0] ? p->gate.reason : NULL);
    }
    child_usage(s->pid, &cpu, &rss);
    format_time(s->started_ns, since, sizeof(since));
    progress = slot_progress(p, s);
    slot = json_pack("{s:i, s:s, s:i, s:s, s:s, s:s, s:f, s:I, s:f, s:O*, s:O*}", "slot", i,
                     "state", "busy", "pid", (int)s->pid, "task_id", s->id, "task_type", s->type,
                     "since", since, "progress",
                     json_number_value(json_object_get(progress, "percent")), "rss_bytes",
                     (json_int_t)rss, "cpu_seconds", cpu, "fps", json_object_get(progress, "fps"),
                     "eta_seconds", json_object_get(progress, "eta_seconds"));
    json_decref(progress);
    return slot;
}

/* The slots to the queue (a notification: not answered), for GET /v1/workers. */
static void report_slots(Pool *p)
{
    json_t *slots = json_array();

    for (int i = 0; i < p->n_slots; i++)
        json_array_append_new(slots, slot_json(p, i));
    if (p->queue_fd >= 0)
        ipc_send_new(p->queue_fd, ipc_msg("workers.report", 0, json_pack("{s:o}", "slots", slots)));
    else
        json_decref(slots);
}

static void update_status(Pool *p)
{
    daemon_status(p->daemon, "%d working, %d idle%s%s%s", busy_count(p), p->n_slots - busy_count(p),
                  p->queue_fd < 0 ? ", waiting for the queue" : "",
                  p->gate.reason[0] ? ", held: " : "", p->gate.reason);
    report_slots(p);
}

/* --- claims --------------------------------------------------------------------------------- */

/* Keeps as many claims outstanding as tasks may start now: free slots, within the load gate,
 * none during a cooldown. Claims over that number are withdrawn (work.unclaim). */
static void claim_free_slots(Pool *p)
{
    char before[sizeof(p->gate.reason)];
    int busy = busy_count(p), want;

    if (daemon_stopping(p->daemon) || p->queue_fd < 0)
        return;
    memcpy(before, p->gate.reason, sizeof(before));
    p->gate = load_gate(p->conf, busy, p->last_start_ns);
    want = p->gate.cooling ? 0 : p->gate.allowed - busy;
    want = want < p->n_slots - busy ? want : p->n_slots - busy;
    want = want > 0 ? want : 0;
    if (p->conf->cooldown > 0 && want > 1)
        want = 1; /* each start opens a cooldown: one at a time */
    if (strcmp(before, p->gate.reason))
        report_slots(p); /* a slot is held now, or no longer: GET /v1/workers shows it */
    if (want < p->claims && pool_send(p, "work.unclaim", NULL) == 0)
        p->claims = 0;
    while (p->claims < want && pool_send(p, "work.claim", NULL) == 0)
        p->claims++;
}

/* A child and all in its process group (it is a session leader once jailed). */
static void slot_kill(const Slot *s, int sig)
{
    if (kill(-s->pid, sig) < 0)
        kill(s->pid, sig); /* not jailed yet: no group of its own */
}

static Slot *slot_of(Pool *p, const char *id)
{
    for (int i = 0; i < p->n_slots; i++)
        if (p->slots[i].pid > 0 && !strcmp(p->slots[i].id, id))
            return &p->slots[i];
    return NULL;
}

/* --- the queue's messages --------------------------------------------------------------------- */

/* x265 threads for the job about to start in slot mine: [convert] threads when set; else the
 * cores shared among the encoders expected to run at once - those running, this one, and the
 * waiting jobs the free slots will take. A job alone gets 0 (x265 uses every core); on two
 * cores a batch runs two encoders of one pool thread each, which beats one encoder with two
 * (bench/README.md, P2). */
static int job_threads(const Pool *p, const Slot *mine, int waiting)
{
    int expected = 1 + (waiting > 0 ? waiting : 0), cpus = conf_cpus();

    if (p->conf->threads > 0)
        return p->conf->threads;
    for (int i = 0; i < p->n_slots; i++)
        expected += &p->slots[i] != mine && p->slots[i].pid != 0;
    if (expected > p->n_slots)
        expected = p->n_slots;
    return expected <= 1 ? 0 : cpus / expected > 1 ? cpus / expected : 1;
}

static void on_assign(void *ctx, void *peer, json_t *msg)
{
    Pool *p = ctx;
    WorkAssign w;
    int r, threads;
    char err[256];
    Slot *s = NULL;

    (void)peer;
    if (ipc_work_assign_unpack(msg, &w, err, sizeof(err)) < 0) {
        log_warning("queue sent a malformed work.assign: %s", err);
        return;
    }
    p->claims = p->claims > 0 ? p->claims - 1 : 0;
    for (int i = 0; i < p->n_slots && !s; i++)
        if (p->slots[i].pid == 0)
            s = &p->slots[i];
    if (!s || daemon_stopping(p->daemon)) {
        if (!s)
            log_warning("queue assigned work but no slot is free: handing it back");
        pool_report(p, "work.released", json_pack("{s:s}", "id", w.id));
        return;
    }
    *s = (Slot){.started_ns = now_ns()};
    snprintf(s->id, sizeof(s->id), "%s", w.id);
    snprintf(s->type, sizeof(s->type), "%s", w.task_type);
    s->deadline_ns =
        w.timeout > 0
            ? s->started_ns + (int64_t)(w.timeout + job_timeout_grace(w.kind)) * 1000000000
            : 0;
    threads = job_threads(p, s, w.waiting);
    r = job_spawn(p->conf, p->data_fd, w.id, threads, &s->pid);
    if (r < 0) {
        log_task(LOG_ERR, w.id, "cannot start a worker: %s", strerror(-r));
        *s = (Slot){0};
        pool_report(p, "work.released", json_pack("{s:s}", "id", w.id));
        return;
    }
    p->last_start_ns = s->started_ns;
    log_event(LOG_INFO, w.id, w.task_type, "in_progress",
              "started kind=%s type=%s pid=%d threads=%d", w.kind, w.task_type, (int)s->pid,
              threads);
    claim_free_slots(p); /* the start may have opened a cooldown or filled the load gate */
    update_status(p);
}

static void on_cancel(void *ctx, void *peer, json_t *msg)
{
    Pool *p = ctx;
    const char *id = NULL;
    char err[256];
    Slot *s;

    (void)peer;
    if (ipc_unpack(msg, err, sizeof(err), "{s:s}", "id", &id) < 0 || !task_id_valid(id)) {
        log_warning("queue sent a malformed work.cancel: %s", id ? "bad id" : err);
        return;
    }
    if ((s = slot_of(p, id))) {
        log_task(LOG_INFO, id, "stopping: the task was deleted");
        kill(s->pid, SIGTERM);
    }
}

static void queue_lost(Pool *p)
{
    log_warning("lost the queue; stopping running tasks");
    daemon_unwatch(p->daemon, p->queue_fd);
    close(p->queue_fd);
    p->queue_fd = -1;
    p->claims = 0;
    for (int i = 0; i < p->n_slots; i++)
        if (p->slots[i].pid > 0)
            kill(p->slots[i].pid, SIGTERM);
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
                                  json_pack("{s:i, s:o, s:s}", "workers", p->n_slots, "kinds",
                                            job_kinds(), "host", p->host),
                                  5000, &fd);

    if (r == 0 && (r = daemon_watch(p->daemon, fd, EPOLLIN, on_queue, p)) < 0)
        close(fd);
    if (r < 0)
        return r;
    p->rid = 1; /* the hello's */
    p->queue_fd = fd;
    p->claims = 0;
    log_info("connected to the queue with %d workers", p->n_slots);
    claim_free_slots(p);
    update_status(p);
    return 0;
}

/* --- children ------------------------------------------------------------------------------- */

typedef enum Outcome { OUTCOME_DONE, OUTCOME_FAILED, OUTCOME_RETRY, OUTCOME_CRASHED } Outcome;
static const char *const outcome_names[] = {"done", "failed", "retry", "crashed"};

static Outcome outcome_of(int status)
{
    if (WIFEXITED(status) && WEXITSTATUS(status) == JOB_EXIT_DONE)
        return OUTCOME_DONE;
    if (WIFEXITED(status) && WEXITSTATUS(status) == JOB_EXIT_FAILED)
        return OUTCOME_FAILED;
    if (WIFEXITED(status) && WEXITSTATUS(status) == JOB_EXIT_RETRY)
        return OUTCOME_RETRY;
    return OUTCOME_CRASHED;
}

/* Maps a child's exit status to what the queue must hear; ru is the child's resource use. */
static void report_exit(Pool *p, Slot *s, int slot, int status, const struct rusage *ru)
{
    Outcome outcome = outcome_of(status);
    char msg[128];
    json_t *attempt;

    if (WIFEXITED(status) && WEXITSTATUS(status) == JOB_EXIT_INTERRUPTED) {
        log_task(LOG_NOTICE, s->id, "interrupted, handing the job back");
        pool_report(p, "work.released", json_pack("{s:s}", "id", s->id));
        return;
    }
    if (s->timed_out) {
        outcome = OUTCOME_RETRY;
        job_write_error(p->data_fd, s->id, "timeout", "the task ran longer than its timeout");
    } else if (outcome == OUTCOME_CRASHED) {
        snprintf(msg, sizeof(msg), "the worker process died (%s %d)",
                 WIFSIGNALED(status) ? "signal" : "exit status",
                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        job_write_error(p->data_fd, s->id, "worker_crashed", msg);
    }
    attempt = attempt_figures(p->host, slot, s->pid, s->type, s->started_ns, ru);
    log_event(outcome == OUTCOME_DONE ? LOG_INFO : LOG_WARNING, s->id, s->type, NULL,
              "finished outcome=%s wall=%.2fs cpu=%.2fs max_rss=%ldKiB", outcome_names[outcome],
              json_real_value(json_object_get(attempt, "wall_seconds")),
              json_real_value(json_object_get(attempt, "cpu_seconds")), ru->ru_maxrss);
    pool_report(p, "work.done",
                json_pack("{s:s, s:s, s:o}", "id", s->id, "outcome", outcome_names[outcome],
                          "attempt", attempt));
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
            report_exit(p, s, i, status, &ru);
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

/* The loop pings the watchdog; a video conversion stuck inside a decoder or x265 is this loop's
 * to catch (killed, a crashed attempt), as is any task past its timeout (killed, retried). */
static void kill_stalled(Pool *p)
{
    int64_t now = now_ns();

    for (int i = 0; i < p->n_slots; i++) {
        Slot *s = &p->slots[i];
        const TaskType *tt = s->pid > 0 ? tasktype_find(p->conf, s->type) : NULL;
        if (s->pid <= 0)
            continue;
        if (s->deadline_ns && now > s->deadline_ns && !s->timed_out) {
            log_task(LOG_WARNING, s->id, "over its timeout, killing pid=%d", (int)s->pid);
            s->timed_out = true;
            slot_kill(s, SIGKILL);
        } else if (tt && tt->kind == &kind_video && idle_seconds(p, s) >= p->conf->stall_timeout) {
            log_task(LOG_ERR, s->id, "no progress for %d s, killing pid=%d", p->conf->stall_timeout,
                     (int)s->pid);
            slot_kill(s, SIGKILL);
        }
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
    claim_free_slots(p); /* the load moves; so does what may start */
    if (++p->ticks % REPORT_EVERY_S == 0 && busy_count(p) > 0)
        report_slots(p);
}

static int convert_stop(Daemon *d)
{
    Pool *p = daemon_userdata(d);

    p->stop_ns = now_ns();
    /* Claims go first: a job handed back must not be handed straight back to a free slot of
     * this stopping pool (another interruption, counted against the task). */
    if (p->claims > 0 && p->queue_fd >= 0 && pool_send(p, "work.unclaim", NULL) == 0)
        p->claims = 0;
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
    if (gethostname(p->host, sizeof(p->host)) < 0)
        snprintf(p->host, sizeof(p->host), "localhost");
    p->slots = calloc((size_t)p->n_slots, sizeof(*p->slots));
    if (!p->slots)
        return -ENOMEM;
    r = jobdir_open_data(c->root, true, &p->data_fd);
    if (r < 0) {
        log_err("cannot open %s/data: %s", c->root, strerror(-r));
        return r;
    }
    if (jail_landlock_abi() > 0)
        log_info("task children are confined with Landlock ABI %d, seccomp and rlimits",
                 jail_landlock_abi());
    else
        log_warning("this kernel has no Landlock: task children are confined by seccomp and "
                    "rlimits only, not in what files they may open");
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
        .summary = "Runs video and exec tasks for the queue, one child process per task.",
        .init = convert_init,
        .stop = convert_stop,
        .shutdown = convert_shutdown,
        .on_child = on_child,
        .on_tick = on_tick,
        .reload_types = true,
    };
    return daemon_main(argc, argv, &spec);
}
