/* callback.c - taskmill-callback: tells the outside world that a task (or a batch) finished,
 * and runs the http kind's tasks (callback_http.c).
 *
 * A callback POSTs the task object (a batch's: the batch object) to its callback_url once it is
 * done or failed, or with callback_method GET sends its id and state as query parameters,
 * retrying with exponential back-off. The owed callbacks are a table (callback_jobs.c); the
 * HTTP side is callback_deliver.c, the address checks callback_guard.c.
 *
 * The folders are the truth: at start and after every reconnect to the queue it scans done/ and
 * failed/ for jobs with a callback_url and no finished callback.json, and batches/ for batches
 * not yet finished; the queue's job.finished and batch.check pushes are hints that save waiting
 * for the next scan. Every attempt is recorded in the callback.json of the job (or batch),
 * written atomically, before the next is scheduled, so a restart resumes where it stopped. A
 * job deleted meanwhile is dropped. */
#define _GNU_SOURCE
#include "callback.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "taskmill/ipc.h"
#include "taskmill/log.h"
#include "taskmill/clock.h"
#include "taskmill/files.h"
#include "taskmill/batch.h"
#include "taskmill/taskview.h"

#define NS_PER_S INT64_C(1000000000)

static Callback callback;

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

int callback_record_load(int job_fd, CallbackJob *j)
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
    int fd, r = j->batch ? batch_open(cb->batches_fd, j->id, &fd)
                         : jobdir_open(cb->data_fd, j->stage, j->id, &fd);

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

/* Ends the job's callback for good: key is "delivered" or "gave_up". The queue hears of it so
 * that the task index no longer counts the callback as owed (a lost hint costs one read of
 * callback.json at the next start). */
static void job_settle(Callback *cb, CallbackJob *j, const char *key)
{
    json_object_set_new(j->record, key, json_true());
    json_object_set_new(j->record, "next_attempt_ns", json_null());
    if (!record_save(cb, j))
        return;
    if (!j->batch)
        callback_send(cb, "callback.settled", json_pack("{s:s, s:s}", "id", j->id, "result", key));
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
    if (j->attempts >= max || j->t.refused[0]) {
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

static void attempt_done(Callback *cb, Transfer *t, long status, const char *error)
{
    CallbackJob *j = (CallbackJob *)((char *)t - offsetof(CallbackJob, t));

    j->in_flight = false;
    cb->n_in_flight--;
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
    if (daemon_stopping(cb->daemon) && cb->n_in_flight == 0 && http_busy(cb) == 0)
        daemon_quit(cb->daemon, 0);
    callback_arm(cb);
}

/* The object the callback tells of, as the API shows it now: built at each attempt. */
static int attempt_object(Callback *cb, CallbackJob *j, json_t **ret)
{
    if (j->batch)
        return batch_callback_body(cb, j->id, ret);
    return task_view(cb->data_fd, j->stage, j->id, ret);
}

/* GET: the URL with the id and state appended as query parameters. */
static char *get_url(const CallbackJob *j, json_t *obj)
{
    const char *state = j->batch ? "finished" : json_string_value(json_object_get(obj, "state"));
    char *url = NULL;

    if (asprintf(&url, "%s%c%s=%s&state=%s", j->url, strchr(j->url, '?') ? '&' : '?',
                 j->batch ? "batch_id" : "task_id", j->id, state ? state : "unknown") < 0)
        return NULL;
    return url;
}

static int attempt_send(Callback *cb, CallbackJob *j, json_t *obj)
{
    bool get = j->method && !strcmp(j->method, "GET");
    char *body = get ? NULL : json_dumps(obj, JSON_COMPACT), *url = get ? get_url(j, obj) : NULL;
    const char *signed_text = get ? url : body; /* what the receiver gets */
    char idh[80], attempt[64], sig[256];
    const char *headers[5];
    size_t n = 0;
    TransferSpec spec = {.url = get ? url : j->url,
                         .method = get ? "GET" : "POST",
                         .body = body,
                         .headers = headers,
                         .timeout_s = cb->conf->callback_timeout};
    int r = -ENOMEM;

    snprintf(idh, sizeof(idh), "X-Taskmill-%s-Id: %s", j->batch ? "Batch" : "Task", j->id);
    snprintf(attempt, sizeof(attempt), "X-Taskmill-Attempt: %d", j->attempts + 1);
    headers[n++] = idh;
    headers[n++] = attempt;
    if (!get)
        headers[n++] = "Content-Type: application/json";
    if (signed_text && guard_sign(cb->conf, signed_text, sig, sizeof(sig)) > 0)
        headers[n++] = sig; /* with [callback] secret */
    headers[n] = NULL;
    j->t.done = attempt_done;
    j->t.body_fd = -1;
    if (signed_text && (r = transfer_start(cb, &j->t, &spec)) == 0) {
        j->in_flight = true;
        cb->n_in_flight++;
    }
    free(body);
    free(url);
    return r;
}

static void attempt_start(Callback *cb, CallbackJob *j)
{
    json_t *obj = NULL;
    int r = attempt_object(cb, j, &obj);

    if (r == -ENOENT) {
        log_task(LOG_INFO, j->id, "%s was deleted, callback dropped", j->batch ? "batch" : "job");
        jobs_drop(cb, j);
        return;
    }
    j->started_ns = now_ns();
    if (r == 0)
        r = attempt_send(cb, j, obj);
    json_decref(obj);
    if (r < 0) {
        /* Recorded as a failed attempt, so a job that cannot be shown is given up eventually. */
        j->in_flight = true;
        cb->n_in_flight++;
        attempt_done(cb, &j->t, 0, strerror(-r));
    }
}

static void start_due(Callback *cb)
{
    int64_t now = now_ns();

    for (CallbackJob *j = jobs_next(cb, NULL), *next; j; j = next) {
        next = jobs_next(cb, j); /* attempt_start may drop j */
        if (cb->n_in_flight >= CALLBACK_MAX_IN_FLIGHT)
            return;
        if (!j->in_flight && j->due_ns <= now)
            attempt_start(cb, j);
    }
}

/* Sets the due timer to the earliest job waiting, while a delivery slot is free. */
void callback_arm(Callback *cb)
{
    struct itimerspec its = {{0, 0}, {0, 0}};
    int64_t earliest = INT64_MAX;

    if (daemon_stopping(cb->daemon))
        return; /* the timer holds the stop deadline now */
    for (CallbackJob *j = jobs_next(cb, NULL); j && cb->n_in_flight < CALLBACK_MAX_IN_FLIGHT;
         j = jobs_next(cb, j))
        if (!j->in_flight && j->due_ns < earliest)
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
        if (j->in_flight) {
            log_task(LOG_NOTICE, j->id, "callback interrupted by stop url='%s'", j->url);
            transfer_abort(cb, &j->t);
            j->in_flight = false;
            cb->n_in_flight--;
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
    callback_arm(cb);
    update_status(cb);
    return 0;
}

/* --- which jobs are owed a callback ---------------------------------------------------------- */

/* Reads the job's callback_url and callback.json; a new CallbackJob when one is owed. */
static CallbackJob *job_load(Stage stage, const char *id, int fd, char ret_batch[TASK_ID_LEN + 1])
{
    CallbackJob *j;
    char err[256];
    Task t;
    int r = task_load(fd, &t, err, sizeof(err));

    if (r < 0) {
        log_task(LOG_WARNING, id, "no callback: %s", err);
        return NULL;
    }
    if (ret_batch && t.batch)
        snprintf(ret_batch, TASK_ID_LEN + 1, "%s", t.batch);
    j = t.callback_url ? calloc(1, sizeof(*j)) : NULL;
    if (j) {
        memcpy(j->id, id, sizeof(j->id));
        j->stage = stage;
        j->url = t.callback_url;
        j->method = t.callback_method;
        t.callback_url = t.callback_method = NULL;
    }
    task_free(&t);
    if (j && (r = callback_record_load(fd, j)) != 0) {
        if (r < 0)
            log_task(LOG_ERR, id, "cannot schedule callback: %s", strerror(-r));
        jobs_free_one(j);
        return NULL;
    }
    return j;
}

/* Schedules the callback of a finished job, unless it is known, not wanted or finished. With
 * ret_batch, the job's batch is given back too ("" when none), from the same read. */
static void job_consider(Callback *cb, Stage stage, const char *id, char ret_batch[TASK_ID_LEN + 1])
{
    CallbackJob *j;
    int fd, r;

    if (!ret_batch && jobs_find(cb, id))
        return;
    r = jobdir_open(cb->data_fd, stage, id, &fd);
    if (r < 0) {
        log_task(r == -ENOENT ? LOG_INFO : LOG_WARNING, id, "cannot open job in %s/: %s",
                 stage_dir(stage), strerror(-r));
        return;
    }
    j = job_load(stage, id, fd, ret_batch);
    close(fd);
    if (j && jobs_find(cb, id))
        jobs_free_one(j); /* owed already */
    else if (j)
        callback_owed(cb, j);
}

void callback_owed(Callback *cb, CallbackJob *j)
{
    jobs_add(cb, j);
    if (j->attempts >= cb->conf->callback_max_attempts) { /* max_attempts was lowered */
        log_task(LOG_WARNING, j->id, "callback gave up after %d attempts url='%s'", j->attempts,
                 j->url);
        job_settle(cb, j, "gave_up");
        return;
    }
    log_task(LOG_DEBUG, j->id, "callback owed url='%s' attempts=%d", j->url, j->attempts);
}

static int scan_one(const IndexRow *row, void *userdata)
{
    job_consider(userdata, row->stage, row->id, NULL);
    return 0;
}

/* The finished jobs whose callback the task index says is owed: only those are read, however
 * many finished jobs there are. Until the queue has created the index, tried every second. */
static void scan_all(Callback *cb)
{
    unsigned before = cb->n_jobs;
    int r = index_keep_open(&cb->index, cb->conf->root);

    if (r == 0)
        r = index_each_owed(cb->index, scan_one, cb);
    cb->rescan = r < 0;
    if (r < 0) {
        if (!cb->index_warned)
            log_notice("cannot read the task index yet (%s), retrying", strerror(-r));
        cb->index_warned = true;
        return;
    }
    log_info("scanned the task index: %u callbacks owed, %u new", cb->n_jobs, cb->n_jobs - before);
    batch_scan(cb);
    callback_arm(cb);
    update_status(cb);
}

/* The queue creates ROOT/data and rest ROOT/data/batches: until they have, try again every
 * second. */
static void data_open(Callback *cb)
{
    int r = cb->data_fd >= 0 ? 0 : jobdir_open_data(cb->conf->root, false, &cb->data_fd);

    if (r == 0 && cb->batches_fd < 0) {
        cb->batches_fd = openat(cb->data_fd, "batches", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (cb->batches_fd < 0 && errno != ENOENT)
            log_warning("cannot open data/batches: %s", strerror(errno));
    }
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
    http_lost(cb);
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
    if (cb->data_fd >= 0) {
        char batch[TASK_ID_LEN + 1] = "";
        job_consider(cb, s, id, batch); /* the task ended: its batch may have finished */
        if (batch[0])
            batch_consider(cb, batch);
    }
    callback_arm(cb);
}

/* rest closed a batch (through the queue): it may have finished. */
static void on_batch_check(void *ctx, void *peer, json_t *msg)
{
    Callback *cb = ctx;
    const char *id;
    char err[256];

    (void)peer;
    if (ipc_unpack(msg, err, sizeof(err), "{s:s}", "id", &id) < 0 || !task_id_valid(id)) {
        log_warning("queue sent a bad batch.check: %s", err);
        return;
    }
    if (cb->data_fd >= 0 && cb->batches_fd < 0)
        data_open(cb);
    if (cb->batches_fd >= 0)
        batch_consider(cb, id);
    callback_arm(cb);
}

static void on_queue_error(void *ctx, void *peer, json_t *msg)
{
    (void)ctx, (void)peer;
    log_warning("queue answered an error: %.200s",
                json_string_value(json_object_get(msg, "message")));
    http_on_answer(ctx, peer, msg);
}

static const IpcHandler queue_handlers[] = {
    {"job.finished", IPC_ROLE_QUEUE, on_job_finished},
    {"batch.check", IPC_ROLE_QUEUE, on_batch_check},
    {"work.assign", IPC_ROLE_QUEUE, http_on_assign},
    {"work.cancel", IPC_ROLE_QUEUE, http_on_cancel},
    {"ok", IPC_ROLE_QUEUE, http_on_answer},
    {"error", IPC_ROLE_QUEUE, on_queue_error},
};

int callback_send(Callback *cb, const char *type, json_t *body)
{
    if (cb->queue_fd < 0) {
        json_decref(body);
        return -ENOTCONN;
    }
    return ipc_send_new(cb->queue_fd, ipc_msg(type, ++cb->rid, body));
}

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
    int fd,
        r = ipc_connect_queue(cb->conf->runtime_dir, IPC_ROLE_CALLBACK, http_hello(cb), 2000, &fd);

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
    cb->rid = 1; /* the hello's */
    cb->queue_warned = false;
    log_info("connected to the queue");
    if (cb->data_fd >= 0)
        scan_all(cb);
    http_connected(cb);
}

/* --- the daemon ------------------------------------------------------------------------------ */

static int callback_init(Daemon *d, const Conf *c)
{
    Callback *cb = &callback;
    int r;

    *cb = (Callback){.daemon = d,
                     .conf = c,
                     .data_fd = -1,
                     .batches_fd = -1,
                     .queue_fd = -1,
                     .curl_timer_fd = -1};
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
    if (r == 0)
        r = http_init(cb);
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
    if (cb->data_fd < 0 || cb->batches_fd < 0)
        data_open(cb);
    else if (cb->rescan)
        scan_all(cb);
    if (cb->queue_fd < 0)
        queue_connect(cb);
    http_tick(cb);
}

/* Hands every http task back; starts no new callback and lets those in flight finish within
 * the grace period (on_due). */
static int callback_stop(Daemon *d)
{
    Callback *cb = daemon_userdata(d);
    struct itimerspec its = {{0, 0}, {CALLBACK_STOP_GRACE_S, 0}};

    http_stop_all(cb);
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
        transfer_abort(cb, &j->t);
        jobs_drop(cb, j);
    }
    http_free(cb);
    deliver_free(cb);
    guard_free();
    if (cb->queue_fd >= 0)
        close(cb->queue_fd);
    if (cb->data_fd >= 0)
        close(cb->data_fd);
    if (cb->batches_fd >= 0)
        close(cb->batches_fd);
    if (cb->due_fd >= 0)
        close(cb->due_fd);
    index_close(cb->index);
}

int main(int argc, char **argv)
{
    static const DaemonSpec spec = {
        .name = "callback",
        .summary = "Delivers callbacks of finished tasks and batches, and runs http tasks.",
        .init = callback_init,
        .stop = callback_stop,
        .shutdown = callback_shutdown,
        .on_tick = callback_tick,
        .reload_types = true,
    };
    return daemon_main(argc, argv, &spec);
}
