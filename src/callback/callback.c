/* callback.c - taskmill-callback: POSTs the task object to a task's callback_url once the task
 * is done or failed, retrying with exponential back-off. The owed callbacks are a table
 * (callback_jobs.c); the HTTP side is callback_deliver.c, the address checks callback_guard.c.
 *
 * The folders are the truth: at start and after every reconnect to the queue it scans done/ and
 * failed/ for jobs with a callback_url and no finished callback.json; the queue's job.finished
 * pushes are hints that save waiting for the next scan. Every attempt is recorded in the job's
 * callback.json (written atomically) before the next is scheduled, so a restart resumes where it
 * stopped. A job deleted meanwhile is dropped. */
#define _GNU_SOURCE
#include "callback.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "taskmill/ipc.h"
#include "taskmill/log.h"
#include "taskmill/clock.h"
#include "taskmill/files.h"
#include "taskmill/taskview.h"

#define NS_PER_S INT64_C(1000000000)

static Callback callback;

static void arm_due(Callback *cb);

static void update_status(Callback *cb)
{
    daemon_status(cb->daemon, "%u due, %u in flight, %u delivered", cb->n_jobs - cb->n_in_flight,
                  cb->n_in_flight, cb->n_delivered);
}

/* --- callback.json -------------------------------------------------------------------------- */

static json_t *record_new(const char *url)
{
    return json_pack("{s:s, s:[], s:b, s:b, s:n}", "url", url, "attempts", "delivered", 0,
                     "gave_up", 0, "next_attempt_ns");
}

/* Fills j->record, j->attempts and j->due_ns from callback.json. Returns 1 when the callback is
 * already finished (delivered or given up), 0 when it is owed, <0 on error. */
static int record_load(int job_fd, CallbackJob *j)
{
    json_t *rec = NULL, *attempts, *next;
    int r = json_read_at(job_fd, "callback.json", &rec);

    if (r < 0 && r != -ENOENT)
        log_task(LOG_WARNING, j->id, "unreadable callback.json, starting over: %s", strerror(-r));
    if (r == 0 && (json_is_true(json_object_get(rec, "delivered")) ||
                   json_is_true(json_object_get(rec, "gave_up")))) {
        json_decref(rec);
        return 1;
    }
    attempts = r == 0 ? json_object_get(rec, "attempts") : NULL;
    if (!json_is_array(attempts)) {
        json_decref(rec);
        rec = record_new(j->url);
        if (!rec)
            return -ENOMEM;
    }
    next = json_object_get(rec, "next_attempt_ns");
    j->attempts = (int)json_array_size(json_object_get(rec, "attempts"));
    j->due_ns = json_is_integer(next) ? json_integer_value(next) : 0;
    json_object_set_new(rec, "url", json_string(j->url));
    j->record = rec;
    return 0;
}

static int record_write(Callback *cb, CallbackJob *j)
{
    int fd, r = jobdir_open(cb->data_fd, j->stage, j->id, &fd);

    if (r < 0)
        return r;
    r = json_write_at(fd, "callback.json", j->record);
    close(fd);
    return r;
}

static int record_attempt(CallbackJob *j, long status, const char *error)
{
    char at[40];
    json_t *a;

    format_time(j->started_ns, at, sizeof(at));
    a = json_pack("{s:s, s:I, s:s?}", "at", at, "status", (json_int_t)status, "error", error);
    return json_array_append_new(json_object_get(j->record, "attempts"), a) < 0 ? -ENOMEM : 0;
}

/* Writes the record; a job deleted meanwhile is forgotten. Returns false when j is gone. */
static bool record_save(Callback *cb, CallbackJob *j)
{
    int r = record_write(cb, j);

    if (r == -ENOENT) {
        log_task(LOG_INFO, j->id, "job was deleted, callback dropped");
        jobs_drop(cb, j);
        return false;
    }
    if (r < 0)
        log_task(LOG_ERR, j->id, "cannot write callback.json: %s", strerror(-r));
    return true;
}

/* Ends the job's callback for good: key is "delivered" or "gave_up". */
static void job_settle(Callback *cb, CallbackJob *j, const char *key)
{
    json_object_set_new(j->record, key, json_true());
    json_object_set_new(j->record, "next_attempt_ns", json_null());
    if (record_save(cb, j))
        jobs_drop(cb, j);
}

/* --- attempts -------------------------------------------------------------------------------- */

/* callback_backoff x 2^(attempt-1) seconds, at most an hour. */
static int64_t backoff_s(const Callback *cb, int attempt)
{
    int64_t s = cb->conf->callback_backoff;

    for (int i = 1; i < attempt && s < CALLBACK_BACKOFF_MAX_S; i++)
        s *= 2;
    return s < CALLBACK_BACKOFF_MAX_S ? s : CALLBACK_BACKOFF_MAX_S;
}

static void attempt_failed(Callback *cb, CallbackJob *j, long status, const char *error)
{
    int max = cb->conf->callback_max_attempts;
    int64_t wait = backoff_s(cb, j->attempts);

    /* A refused address stays refused: trying again later would only repeat it. */
    if (j->attempts >= max || j->refused[0]) {
        log_task(LOG_WARNING, j->id,
                 "callback gave up after %d attempts url='%s' status=%ld error='%s'", j->attempts,
                 j->url, status, error ? error : "");
        job_settle(cb, j, "gave_up");
        return;
    }
    log_task(LOG_WARNING, j->id,
             "callback failed url='%s' status=%ld error='%s' attempt=%d of %d next_in=%llds",
             j->url, status, error ? error : "", j->attempts, max, (long long)wait);
    j->due_ns = now_ns() + wait * NS_PER_S;
    json_object_set_new(j->record, "next_attempt_ns", json_integer(j->due_ns));
    record_save(cb, j);
}

void callback_attempt_done(Callback *cb, CallbackJob *j, long status, const char *error)
{
    j->attempts++;
    if (record_attempt(j, status, error) < 0)
        log_task(LOG_ERR, j->id, "out of memory recording attempt %d", j->attempts);
    if (!error && status >= 200 && status < 300) {
        log_task(LOG_INFO, j->id, "callback delivered url='%s' status=%ld attempt=%d", j->url,
                 status, j->attempts);
        cb->n_delivered++;
        job_settle(cb, j, "delivered");
    } else {
        attempt_failed(cb, j, status, error);
    }
    update_status(cb);
    if (daemon_stopping(cb->daemon) && cb->n_in_flight == 0)
        daemon_quit(cb->daemon, 0);
    arm_due(cb);
}

/* The body is the task object as the API shows it now, so it is built at each attempt. */
static void attempt_start(Callback *cb, CallbackJob *j)
{
    json_t *view = NULL;
    char *body = NULL;
    int r = task_view(cb->data_fd, j->stage, j->id, &view);

    if (r == -ENOENT) {
        log_task(LOG_INFO, j->id, "job was deleted, callback dropped");
        jobs_drop(cb, j);
        return;
    }
    j->started_ns = now_ns();
    if (r == 0)
        body = json_dumps(view, JSON_COMPACT);
    json_decref(view);
    if (r < 0 || !body || deliver_start(cb, j, body) < 0)
        /* Recorded as a failed attempt, so a job that cannot be shown is given up eventually. */
        callback_attempt_done(cb, j, 0, r < 0 ? strerror(-r) : "cannot start the request");
    free(body);
}

static void start_due(Callback *cb)
{
    int64_t now = now_ns();

    for (CallbackJob *j = jobs_next(cb, NULL), *next; j; j = next) {
        next = jobs_next(cb, j); /* attempt_start may drop j */
        if (cb->n_in_flight >= CALLBACK_MAX_IN_FLIGHT)
            return;
        if (!j->easy && j->due_ns <= now)
            attempt_start(cb, j);
    }
}

/* Sets the due timer to the earliest job waiting, while a delivery slot is free. */
static void arm_due(Callback *cb)
{
    struct itimerspec its = {{0, 0}, {0, 0}};
    int64_t earliest = INT64_MAX;

    if (daemon_stopping(cb->daemon))
        return; /* the timer holds the stop deadline now */
    for (CallbackJob *j = jobs_next(cb, NULL); j && cb->n_in_flight < CALLBACK_MAX_IN_FLIGHT;
         j = jobs_next(cb, j))
        if (!j->easy && j->due_ns < earliest)
            earliest = j->due_ns;
    if (earliest != INT64_MAX) {
        earliest = earliest > 0 ? earliest : 1; /* zero would disarm; the past fires at once */
        its.it_value = (struct timespec){earliest / NS_PER_S, earliest % NS_PER_S};
    }
    if (timerfd_settime(cb->due_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
        log_err("cannot arm the due timer: %s", strerror(errno));
}

/* Deliveries still running when the stop grace ends are abandoned unrecorded: the scan at the
 * next start finds them owed and tries again. */
static void stop_now(Callback *cb)
{
    for (CallbackJob *j = jobs_next(cb, NULL); j; j = jobs_next(cb, j))
        if (j->easy) {
            log_task(LOG_NOTICE, j->id, "callback interrupted by stop url='%s'", j->url);
            deliver_abort(cb, j);
        }
    daemon_quit(cb->daemon, 0);
}

static int on_due(Daemon *d, int fd, uint32_t events, void *userdata)
{
    Callback *cb = userdata;
    uint64_t expirations;

    (void)events;
    if (read(fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
        log_warning("due timer: %s", strerror(errno));
    if (daemon_stopping(d)) {
        stop_now(cb);
        return 0;
    }
    start_due(cb);
    arm_due(cb);
    update_status(cb);
    return 0;
}

/* --- which jobs are owed a callback ---------------------------------------------------------- */

/* Reads the job's callback_url and callback.json; a new CallbackJob when one is owed. */
static CallbackJob *job_load(Stage stage, const char *id, int fd)
{
    CallbackJob *j;
    char err[256];
    Task t;
    int r = task_load(fd, &t, err, sizeof(err));

    if (r < 0) {
        log_task(LOG_WARNING, id, "no callback: %s", err);
        return NULL;
    }
    j = t.callback_url ? calloc(1, sizeof(*j)) : NULL;
    if (j) {
        memcpy(j->id, id, sizeof(j->id));
        j->stage = stage;
        j->url = t.callback_url;
        t.callback_url = NULL;
    }
    task_free(&t);
    if (j && (r = record_load(fd, j)) != 0) {
        if (r < 0)
            log_task(LOG_ERR, id, "cannot schedule callback: %s", strerror(-r));
        jobs_free_one(j);
        return NULL;
    }
    return j;
}

/* Schedules the callback of a finished job, unless it is known, not wanted or finished. */
static void job_consider(Callback *cb, Stage stage, const char *id)
{
    CallbackJob *j;
    int fd, r;

    if (jobs_find(cb, id))
        return;
    r = jobdir_open(cb->data_fd, stage, id, &fd);
    if (r < 0) {
        log_task(r == -ENOENT ? LOG_INFO : LOG_WARNING, id, "cannot open job in %s/: %s",
                 stage_dir(stage), strerror(-r));
        return;
    }
    j = job_load(stage, id, fd);
    close(fd);
    if (!j)
        return;
    jobs_add(cb, j);
    if (j->attempts >= cb->conf->callback_max_attempts) { /* max_attempts was lowered */
        log_task(LOG_WARNING, id, "callback gave up after %d attempts url='%s'", j->attempts,
                 j->url);
        job_settle(cb, j, "gave_up");
        return;
    }
    log_task(LOG_DEBUG, id, "callback owed url='%s' attempts=%d", j->url, j->attempts);
}

typedef struct ScanCtx {
    Callback *cb;
    Stage stage;
} ScanCtx;

static int scan_one(const char *id, void *userdata)
{
    ScanCtx *ctx = userdata;

    job_consider(ctx->cb, ctx->stage, id);
    return 0;
}

static void scan_all(Callback *cb)
{
    static const Stage stages[] = {STAGE_DONE, STAGE_FAILED};
    unsigned before = cb->n_jobs;

    for (size_t i = 0; i < sizeof(stages) / sizeof(stages[0]); i++) {
        ScanCtx ctx = {cb, stages[i]};
        int r = jobdir_each(cb->data_fd, stages[i], scan_one, &ctx);
        if (r < 0)
            log_err("cannot scan %s/: %s", stage_dir(stages[i]), strerror(-r));
    }
    log_info("scanned done/ and failed/: %u callbacks owed, %u new", cb->n_jobs,
             cb->n_jobs - before);
    arm_due(cb);
    update_status(cb);
}

/* The queue creates ROOT/data: until it has, try again every second. */
static void data_open(Callback *cb)
{
    int r = jobdir_open_data(cb->conf->root, false, &cb->data_fd);

    if (r < 0) {
        cb->data_fd = -1;
        if (!cb->data_warned)
            log_notice("cannot open %s/data yet (%s), retrying", cb->conf->root, strerror(-r));
        cb->data_warned = true;
        return;
    }
    scan_all(cb);
}

/* --- the link to the queue ------------------------------------------------------------------- */

static void queue_close(Callback *cb)
{
    daemon_unwatch(cb->daemon, cb->queue_fd);
    close(cb->queue_fd);
    cb->queue_fd = -1;
}

/* A hint only: the scan after a reconnect catches what was missed. Never answered. */
static void on_job_finished(void *ctx, void *peer, json_t *msg)
{
    Callback *cb = ctx;
    const char *id, *state;
    char err[256];
    Stage s;

    (void)peer;
    if (ipc_unpack(msg, err, sizeof(err), "{s:s, s:s}", "id", &id, "state", &state) < 0) {
        log_warning("queue sent a bad job.finished: %s", err);
        return;
    }
    s = stage_from_state(state);
    if (!task_id_valid(id) || (s != STAGE_DONE && s != STAGE_FAILED)) {
        log_warning("queue sent a bad job.finished: id '%.40s' state '%.20s'", id, state);
        return;
    }
    if (cb->data_fd >= 0)
        job_consider(cb, s, id);
    arm_due(cb);
}

static void on_queue_error(void *ctx, void *peer, json_t *msg)
{
    (void)ctx, (void)peer;
    log_warning("queue answered an error: %.200s",
                json_string_value(json_object_get(msg, "message")));
}

static const IpcHandler queue_handlers[] = {
    {"job.finished", IPC_ROLE_QUEUE, on_job_finished},
    {"error", IPC_ROLE_QUEUE, on_queue_error},
};

static int on_queue(Daemon *d, int fd, uint32_t events, void *userdata)
{
    Callback *cb = userdata;
    int r = ipc_dispatch(fd, queue_handlers, sizeof(queue_handlers) / sizeof(queue_handlers[0]),
                         IPC_ROLE_QUEUE, cb, NULL, "the queue");

    (void)d, (void)events;
    if (r < 0 && r != -EAGAIN) {
        log_warning("lost the queue (%s), reconnecting", strerror(-r));
        queue_close(cb);
    }
    return 0;
}

/* Connects and says hello; then scans: anything that finished while nobody listened is only
 * on disk. */
static void queue_connect(Callback *cb)
{
    int fd, r = ipc_connect_queue(cb->conf->runtime_dir, IPC_ROLE_CALLBACK, NULL, 2000, &fd);

    if (r == 0 && (r = daemon_watch(cb->daemon, fd, EPOLLIN, on_queue, cb)) < 0)
        close(fd);
    if (r < 0) {
        if (!cb->queue_warned)
            log_notice("cannot reach the queue at %s/%s (%s), retrying every second",
                       cb->conf->runtime_dir, IPC_QUEUE_SOCK, strerror(-r));
        cb->queue_warned = true;
        return;
    }
    cb->queue_fd = fd;
    cb->queue_warned = false;
    log_info("connected to the queue");
    if (cb->data_fd >= 0)
        scan_all(cb);
}

/* --- the daemon ------------------------------------------------------------------------------ */

static int callback_init(Daemon *d, const Conf *c)
{
    Callback *cb = &callback;
    int r;

    *cb = (Callback){.daemon = d, .conf = c, .data_fd = -1, .queue_fd = -1, .curl_timer_fd = -1};
    daemon_set_userdata(d, cb);
    if ((r = guard_init(c)) < 0) {
        log_err("[callback] allow_networks: a network is malformed");
        return r;
    }
    cb->due_fd = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC | TFD_NONBLOCK);
    if (cb->due_fd < 0)
        return -errno;
    r = daemon_watch(d, cb->due_fd, EPOLLIN, on_due, cb);
    if (r == 0)
        r = deliver_init(cb);
    if (r < 0)
        return r;
    data_open(cb);
    queue_connect(cb);
    update_status(cb);
    return 0;
}

static void callback_tick(Daemon *d)
{
    Callback *cb = daemon_userdata(d);

    if (daemon_stopping(d))
        return;
    if (cb->data_fd < 0)
        data_open(cb);
    if (cb->queue_fd < 0)
        queue_connect(cb);
}

/* Starts nothing new; lets what is in flight finish within the grace period (on_due). */
static int callback_stop(Daemon *d)
{
    Callback *cb = daemon_userdata(d);
    struct itimerspec its = {{0, 0}, {CALLBACK_STOP_GRACE_S, 0}};

    if (cb->n_in_flight == 0)
        return 0;
    log_info("waiting up to %ds for %u callbacks in flight", CALLBACK_STOP_GRACE_S,
             cb->n_in_flight);
    if (timerfd_settime(cb->due_fd, 0, &its, NULL) < 0) {
        stop_now(cb);
        return 0;
    }
    return 1;
}

static void callback_shutdown(Daemon *d)
{
    Callback *cb = daemon_userdata(d);

    for (CallbackJob *j; (j = jobs_next(cb, NULL));) {
        deliver_abort(cb, j);
        jobs_drop(cb, j);
    }
    deliver_free(cb);
    guard_free();
    if (cb->queue_fd >= 0)
        close(cb->queue_fd);
    if (cb->data_fd >= 0)
        close(cb->data_fd);
    if (cb->due_fd >= 0)
        close(cb->due_fd);
}

int main(int argc, char **argv)
{
    static const DaemonSpec spec = {
        .name = "callback",
        .summary = "POSTs finished tasks to their callback_url, with retries.",
        .init = callback_init,
        .stop = callback_stop,
        .shutdown = callback_shutdown,
        .on_tick = callback_tick,
    };
    return daemon_main(argc, argv, &spec);
}
