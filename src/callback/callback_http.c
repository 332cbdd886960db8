/* callback_http.c - the worker pool of the http kind: one HTTP request per task, described by
 * the task's type ([type.NAME] kind = http, see src/common/kind_http.c).
 *
 * Like taskmill-convert, the pool announces its slots ([callback] http_workers) and the kind it
 * runs to the queue, keeps one work.claim outstanding per free slot, and reports each task's
 * end with work.done. A task's request is its type's url, method, headers and body with the
 * parameters filled in (percent-encoded in the url); a url whose host is not the type's fixed
 * host or one of its allow_hosts is refused, and every address goes through the same guard as
 * callbacks. The answer's body is kept up to the type's max_body_bytes as the result file,
 * with its status and headers in result.json. A 2xx answer is done; 5xx, 408, 429, a timeout
 * or a failed connection is retried later by the queue; anything else fails at once. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "callback.h"
#include "taskmill/clock.h"
#include "taskmill/files.h"
#include "taskmill/log.h"
#include "taskmill/result.h"
#include "taskmill/tasktype.h"
#include "taskmill/text.h"

#define PARTIAL        "response.partial"
#define REPORT_EVERY_S 2

static char host_name[64];

static HttpSlot *slot_of(Callback *cb, const char *id)
{
    for (int i = 0; i < cb->n_slots; i++)
        if (cb->slots[i].id[0] && !strcmp(cb->slots[i].id, id))
            return &cb->slots[i];
    return NULL;
}

unsigned http_busy(const Callback *cb)
{
    unsigned n = 0;

    for (int i = 0; i < cb->n_slots; i++)
        n += cb->slots[i].id[0] != '\0';
    return n;
}

/* The slots to the queue, for GET /v1/workers (a notification: not answered). */
static void report_slots(Callback *cb)
{
    json_t *slots = json_array();
    char since[40];

    for (int i = 0; i < cb->n_slots; i++) {
        HttpSlot *s = &cb->slots[i];
        if (!s->id[0]) {
            json_array_append_new(slots, json_pack("{s:i, s:s, s:n, s:n, s:n, s:n, s:n}", "slot", i,
                                                   "state", "idle", "pid", "task_id", "task_type",
                                                   "since", "progress"));
            continue;
        }
        format_time(s->started_ns, since, sizeof(since));
        json_array_append_new(slots,
                              json_pack("{s:i, s:s, s:i, s:s, s:s, s:s, s:f}", "slot", i, "state",
                                        "busy", "pid", (int)getpid(), "task_id", s->id, "task_type",
                                        s->type, "since", since, "progress", 0.0));
    }
    if (cb->queue_fd >= 0)
        ipc_send_new(cb->queue_fd,
                     ipc_msg("workers.report", 0, json_pack("{s:o}", "slots", slots)));
    else
        json_decref(slots);
}

/* One work.claim outstanding per free slot. */
static void claim_free_slots(Callback *cb)
{
    int want = cb->n_slots - (int)http_busy(cb);

    if (daemon_stopping(cb->daemon) || cb->queue_fd < 0)
        return;
    while (cb->claims < want && callback_send(cb, "work.claim", NULL) == 0)
        cb->claims++;
}

int http_init(Callback *cb)
{
    if (gethostname(host_name, sizeof(host_name)) < 0)
        snprintf(host_name, sizeof(host_name), "localhost");
    cb->n_slots = cb->conf->http_workers;
    cb->slots = calloc((size_t)cb->n_slots, sizeof(*cb->slots));
    for (int i = 0; cb->slots && i < cb->n_slots; i++)
        cb->slots[i].job_fd = -1;
    return cb->slots ? 0 : -ENOMEM;
}

json_t *http_hello(Callback *cb)
{
    return json_pack("{s:i, s:[s], s:s}", "workers", cb->n_slots, "kinds", kind_http.name, "host",
                     host_name);
}

void http_connected(Callback *cb)
{
    cb->claims = 0;
    claim_free_slots(cb);
    report_slots(cb);
}

/* Frees a slot; its partial answer goes (a finished one was renamed before). */
static void slot_clear(Callback *cb, HttpSlot *s)
{
    transfer_abort(cb, &s->t);
    if (s->t.body_fd >= 0)
        close(s->t.body_fd);
    if (s->job_fd >= 0) {
        unlinkat(s->job_fd, PARTIAL, 0);
        close(s->job_fd);
    }
    json_decref(s->t.resp_headers);
    *s = (HttpSlot){.job_fd = -1, .t = {.body_fd = -1}};
}

void http_lost(Callback *cb)
{
    cb->claims = 0;
    for (int i = 0; i < cb->n_slots; i++)
        if (cb->slots[i].id[0]) {
            log_task(LOG_NOTICE, cb->slots[i].id, "stopped: the queue went away");
            slot_clear(cb, &cb->slots[i]);
        }
}

/* Claims go first: a job handed back must not be handed straight back to a free slot of this
 * stopping pool (another interruption, counted against the task). */
void http_stop_all(Callback *cb)
{
    if (cb->claims > 0 && callback_send(cb, "work.unclaim", NULL) == 0)
        cb->claims = 0;
    for (int i = 0; i < cb->n_slots; i++) {
        HttpSlot *s = &cb->slots[i];
        if (!s->id[0])
            continue;
        log_task(LOG_NOTICE, s->id, "interrupted by stop, handing the job back");
        callback_send(cb, "work.released", json_pack("{s:s}", "id", s->id));
        slot_clear(cb, s);
    }
}

void http_free(Callback *cb)
{
    for (int i = 0; cb->slots && i < cb->n_slots; i++)
        slot_clear(cb, &cb->slots[i]);
    free(cb->slots);
    cb->slots = NULL;
}

void http_tick(Callback *cb)
{
    static unsigned ticks;

    claim_free_slots(cb);
    if (++ticks % REPORT_EVERY_S == 0 && http_busy(cb) > 0)
        report_slots(cb);
}

/* --- the end of a task ----------------------------------------------------------------------- */

static json_t *attempt_json(const HttpSlot *s, int slot, long status)
{
    char started[40], finished[40];
    int64_t now = now_ns();

    format_time(s->started_ns, started, sizeof(started));
    format_time(now, finished, sizeof(finished));
    return json_pack("{s:i, s:i, s:s, s:s, s:s, s:s, s:f, s:n, s:n, s:i}", "slot", slot, "pid",
                     (int)getpid(), "host", host_name, "task_type", s->type, "started_at", started,
                     "finished_at", finished, "wall_seconds", (double)(now - s->started_ns) / 1e9,
                     "cpu_seconds", "max_rss_bytes", "http_status", (int)status);
}

static void report(Callback *cb, HttpSlot *s, const char *outcome, long status)
{
    int slot = (int)(s - cb->slots);

    log_task(!strcmp(outcome, "done") ? LOG_INFO : LOG_WARNING, s->id,
             "finished outcome=%s status=%ld wall=%.2fs", outcome, status,
             (double)(now_ns() - s->started_ns) / 1e9);
    callback_send(cb, "work.done",
                  json_pack("{s:s, s:s, s:o}", "id", s->id, "outcome", outcome, "attempt",
                            attempt_json(s, slot, status)));
    slot_clear(cb, s);
    claim_free_slots(cb);
    report_slots(cb);
}

static void answered(Callback *cb, HttpSlot *s, long status)
{
    const char *ct = json_string_value(json_object_get(s->t.resp_headers, "content-type"));
    char msg[128], name[32];
    json_t *extra;
    int r;

    snprintf(name, sizeof(name), "response%s", result_extension(ct));
    if (status < 200 || status > 299) {
        bool again = status >= 500 || status == 408 || status == 429;
        snprintf(msg, sizeof(msg), "the server answered HTTP %ld", status);
        result_error(s->job_fd, "http_status", msg);
        report(cb, s, again ? "retry" : "failed", status);
        return;
    }
    extra = json_pack("{s:i, s:O, s:b}", "http_status", (int)status, "headers", s->t.resp_headers,
                      "truncated", s->t.body_truncated);
    r = s->t.write_failed ? -EIO : result_publish(s->job_fd, PARTIAL, name, name, extra);
    json_decref(extra);
    if (r < 0) {
        snprintf(msg, sizeof(msg), "cannot store the answer: %s", strerror(-r));
        result_error(s->job_fd, "io_error", msg);
        report(cb, s, "retry", status);
        return;
    }
    report(cb, s, "done", status);
}

static void on_transfer_done(Callback *cb, Transfer *t, long status, const char *error)
{
    HttpSlot *s = (HttpSlot *)((char *)t - offsetof(HttpSlot, t));
    bool refused = t->refused[0] != '\0';

    close(t->body_fd);
    t->body_fd = -1;
    if (!error) {
        answered(cb, s, status);
        return;
    }
    /* A refused address stays refused; a timeout or a failed connection may pass later. */
    result_error(s->job_fd,
                 refused                                 ? "address_refused"
                 : t->result == CURLE_OPERATION_TIMEDOUT ? "timeout"
                                                         : "http_unreachable",
                 error);
    report(cb, s, refused ? "failed" : "retry", 0);
}

/* --- the start of a task --------------------------------------------------------------------- */

static bool host_allowed(const TaskType *tt, const char *url, char *why, size_t len)
{
    CURLU *u = curl_url();
    char *host = NULL;
    bool ok = false;

    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        ok = !tt->allow_hosts; /* the host is fixed in the type's url */
        for (const char *p = tt->allow_hosts; p && *p && !ok;) {
            size_t n = strcspn(p, " ,");
            ok = n == strlen(host) && !strncasecmp(p, host, n);
            p += n;
            p += strspn(p, " ,");
        }
    }
    snprintf(why, len, "the url's host '%.100s' is not in the type's allow_hosts",
             host ? host : "?");
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

/* The type's request with the task's values: url, headers and body. */
typedef struct Request {
    char *url, *body;
    char **headers; /* NULL-terminated */
} Request;

static void request_free(Request *rq)
{
    free(rq->url);
    free(rq->body);
    strv_free(rq->headers);
}

static int request_build(const TaskType *tt, const Task *t, Request *rq, char *why, size_t len)
{
    const char *vars[] = {"task_id", t->id, NULL};
    size_t n = 0;

    *rq = (Request){0};
    while (tt->headers && tt->headers[n])
        n++;
    if (!(rq->headers = calloc(n + 1, sizeof(char *))))
        return -ENOMEM;
    if (tasktype_expand(tt->url, t->params, vars, TEMPLATE_URL, &rq->url) < 0 ||
        (tt->body && tasktype_expand(tt->body, t->params, vars, TEMPLATE_RAW, &rq->body) < 0)) {
        snprintf(why, len, "the url or body template cannot be filled in");
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++)
        if (tasktype_expand(tt->headers[i], t->params, vars, TEMPLATE_RAW, &rq->headers[i]) < 0 ||
            text_has_control(rq->headers[i])) {
            snprintf(why, len, "a header would hold a line break or a control character");
            return -EINVAL;
        }
    if (!host_allowed(tt, rq->url, why, len))
        return -EPERM;
    return 0;
}

/* Loads the task and sends its request; a task that cannot even be sent fails here. */
static int slot_start(Callback *cb, HttpSlot *s, int timeout, char *why, size_t len)
{
    const TaskType *tt;
    Request rq;
    Task t;
    int r = task_load(s->job_fd, &t, why, len);

    if (r < 0)
        return r;
    tt = tasktype_find(cb->conf, t.task_type);
    if (!tt || tt->kind != &kind_http) {
        snprintf(why, len, "task type '%s' is not an http type of this server", t.task_type);
        task_free(&t);
        return -EINVAL;
    }
    r = request_build(tt, &t, &rq, why, len);
    if (r == 0) {
        TransferSpec spec = {.url = rq.url,
                             .method = tt->method,
                             .body = rq.body,
                             .headers = (const char *const *)rq.headers,
                             .timeout_s = timeout > 0 ? timeout : tt->timeout};
        s->t = (Transfer){.done = on_transfer_done,
                          .body_max = tt->max_stdout_bytes,
                          .resp_headers = json_object()};
        s->t.body_fd = openat(s->job_fd, PARTIAL, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        r = s->t.body_fd < 0 ? -errno : transfer_start(cb, &s->t, &spec);
        if (r < 0)
            snprintf(why, len, "cannot start the request: %s", strerror(-r));
        else
            log_event(LOG_INFO, s->id, tt->name, "in_progress",
                      "started kind=http type=%s %s url='%s'", tt->name, tt->method, rq.url);
    }
    request_free(&rq);
    task_free(&t);
    return r;
}

void http_on_assign(void *ctx, void *peer, json_t *msg)
{
    Callback *cb = ctx;
    WorkAssign w;
    int r;
    char err[256];
    HttpSlot *s = NULL;

    (void)peer;
    if (ipc_work_assign_unpack(msg, &w, err, sizeof(err)) < 0) {
        log_warning("queue sent a malformed work.assign: %s", err);
        return;
    }
    cb->claims = cb->claims > 0 ? cb->claims - 1 : 0;
    for (int i = 0; i < cb->n_slots && !s; i++)
        if (!cb->slots[i].id[0])
            s = &cb->slots[i];
    if (!s || daemon_stopping(cb->daemon) || cb->data_fd < 0) {
        callback_send(cb, "work.released", json_pack("{s:s}", "id", w.id));
        return;
    }
    *s = (HttpSlot){.started_ns = now_ns(), .t = {.body_fd = -1}};
    snprintf(s->id, sizeof(s->id), "%s", w.id);
    snprintf(s->type, sizeof(s->type), "%s", w.task_type);
    if ((r = jobdir_open(cb->data_fd, STAGE_IN_PROGRESS, w.id, &s->job_fd)) < 0) {
        s->job_fd = -1;
        callback_send(cb, "work.released", json_pack("{s:s}", "id", w.id));
        slot_clear(cb, s);
        return;
    }
    if ((r = slot_start(cb, s, w.timeout, err, sizeof(err))) < 0) {
        log_task(LOG_WARNING, w.id, "cannot run: %s", err);
        result_error(s->job_fd, r == -EPERM ? "host_not_allowed" : "bad_request", err);
        report(cb, s, r == -ENOMEM ? "retry" : "failed", 0);
        return;
    }
    report_slots(cb);
}

void http_on_cancel(void *ctx, void *peer, json_t *msg)
{
    Callback *cb = ctx;
    const char *id = NULL;
    char err[256];
    HttpSlot *s;

    (void)peer;
    if (ipc_unpack(msg, err, sizeof(err), "{s:s}", "id", &id) < 0 || !task_id_valid(id))
        return;
    if (!(s = slot_of(cb, id)))
        return;
    log_task(LOG_INFO, id, "stopping: the task was deleted");
    callback_send(cb, "work.released", json_pack("{s:s}", "id", id));
    slot_clear(cb, s);
    claim_free_slots(cb);
    report_slots(cb);
}

void http_on_answer(void *ctx, void *peer, json_t *msg)
{
    (void)ctx, (void)peer, (void)msg; /* the queue confirms work.done and work.released */
}
