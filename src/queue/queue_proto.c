/* queue_proto.c - the queue's side of the IPC protocol (see docs/ipc.md).
 *
 * One small handler per message type, found through a table. Each handler decodes its message
 * strictly (unknown fields are refused) and answers; a bad message gets an "error" reply and a
 * log line and never stops the daemon. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "queue.h"
#include "taskmill/clock.h"
#include "taskmill/ipc.h"
#include "taskmill/log.h"
#include "taskmill/tasktype.h"

static void reply(Peer *p, json_t *msg)
{
    int r = ipc_send_new(p->fd, msg);

    if (r < 0)
        log_warning("reply to peer %d failed: %s", p->fd, strerror(-r));
}

static void reply_errno(Peer *p, json_t *msg, int r)
{
    const char *code = r == -ENOENT ? "not_found" : r == -EINVAL ? "bad_request" : "io_error";

    reply(p, ipc_reply_error(msg, code, strerror(-r)));
}

/* The kinds a worker pool names must be kinds this server knows. */
static bool kinds_valid(json_t *kinds)
{
    size_t i;
    json_t *k;

    json_array_foreach(kinds, i, k)
    {
        if (!tasktype_kind(json_string_value(k)))
            return false;
    }
    return json_is_array(kinds);
}

static void on_hello(void *ctx, void *peer, json_t *msg)
{
    Queue *q = ctx;
    Peer *p = peer;
    const char *role_name, *host = "";
    json_t *kinds = NULL;
    IpcRole role;
    int workers = 0;
    char err[256] = "";

    if (ipc_unpack(msg, err, sizeof(err), "{s:s, s?i, s?o, s?s}", "role", &role_name, "workers",
                   &workers, "kinds", &kinds, "host", &host) < 0 ||
        workers < 0 || workers > 1024 || (kinds && !kinds_valid(kinds))) {
        if (!*err)
            snprintf(err, sizeof(err), "workers must be 0 to 1024, kinds known task kinds");
        log_warning("peer %d: bad hello: %s", p->fd, err);
        if (ipc_rid(msg))
            reply(p, ipc_reply_error(msg, "bad_request", err));
        return;
    }
    role = ipc_role_from_name(role_name);
    if (!(role & (IPC_ROLE_REST | IPC_ROLE_CONVERT | IPC_ROLE_CALLBACK))) {
        log_warning("peer %d: hello with unknown role '%.32s'", p->fd, role_name);
        if (ipc_rid(msg))
            reply(p, ipc_reply_error(msg, "bad_request", "unknown role"));
        return;
    }
    p->role = role;
    p->workers = kinds ? workers : 0;
    p->kinds = kinds ? json_incref(kinds) : json_array();
    snprintf(p->host, sizeof(p->host), "%s", host);
    if (role != IPC_ROLE_REST)
        log_info("peer %d is a %s with %d workers", p->fd, role_name, p->workers);
    if (ipc_rid(msg)) /* rest's hello is a notification */
        reply(p, ipc_reply_ok(msg, NULL));
    sched_dispatch(q);
}

static bool unpack_id(Peer *p, json_t *msg, const char **id, const char **outcome)
{
    char err[256];
    int r = outcome ? ipc_unpack(msg, err, sizeof(err), "{s:s, s:s}", "id", id, "outcome", outcome)
                    : ipc_unpack(msg, err, sizeof(err), "{s:s}", "id", id);

    if (r == 0 && !task_id_valid(*id)) {
        snprintf(err, sizeof(err), "id is not a task id");
        r = -EINVAL;
    }
    if (r < 0)
        reply(p, ipc_reply_error(msg, "bad_request", err));
    return r == 0;
}

/* A request that carries no fields: anything more is refused (bad_request). */
static bool no_fields(Peer *p, json_t *msg)
{
    char err[256];

    if (ipc_unpack(msg, err, sizeof(err), "{}") == 0)
        return true;
    reply(p, ipc_reply_error(msg, "bad_request", err));
    return false;
}

static void on_submitted(void *ctx, void *peer, json_t *msg)
{
    Queue *q = ctx;
    Peer *p = peer;
    const char *id;
    char err[256];
    int r;

    if (!unpack_id(p, msg, &id, NULL))
        return;
    r = sched_submit(q, id, err, sizeof(err));
    if (r < 0)
        reply(p, ipc_reply_error(msg, r == -ENOENT ? "not_found" : "io_error", err));
    else
        reply(p, ipc_reply_ok(msg, NULL));
}

static void on_delete(void *ctx, void *peer, json_t *msg)
{
    Queue *q = ctx;
    Peer *p = peer;
    const char *id;
    int r;

    if (!unpack_id(p, msg, &id, NULL))
        return;
    r = sched_delete(q, p, ipc_rid(msg), id);
    if (r < 0)
        reply_errno(p, msg, r);
    else if (r == 0)
        reply(p, ipc_reply_ok(msg, NULL));
    /* r == 1: the converter is stopping it; the reply follows its work.released */
}

static void on_claim(void *ctx, void *peer, json_t *msg)
{
    Queue *q = ctx;
    Peer *p = peer;

    if (!no_fields(p, msg))
        return;
    sched_claim(q, p, ipc_rid(msg));
}

/* rest closed a batch: the callback daemon decides whether it has finished. A hint: callback
 * also checks every unfinished batch when it starts. */
static void on_batch_closed(void *ctx, void *peer, json_t *msg)
{
    Queue *q = ctx;
    Peer *p = peer;
    const char *id;

    if (!unpack_id(p, msg, &id, NULL))
        return;
    for (Peer *o = q->peers; o; o = o->next)
        if (o->role == IPC_ROLE_CALLBACK)
            ipc_send_new(o->fd, ipc_msg("batch.check", 0, json_pack("{s:s}", "id", id)));
    reply(p, ipc_reply_ok(msg, NULL));
}

static void on_unclaim(void *ctx, void *peer, json_t *msg)
{
    Queue *q = ctx;
    Peer *p = peer;

    if (!no_fields(p, msg))
        return;
    sched_unclaim(q, p);
    reply(p, ipc_reply_ok(msg, NULL));
}

static void on_done(void *ctx, void *peer, json_t *msg)
{
    Queue *q = ctx;
    Peer *p = peer;
    const char *id, *outcome;
    json_t *attempt = NULL;
    char err[256];
    int r = ipc_unpack(msg, err, sizeof(err), "{s:s, s:s, s?o}", "id", &id, "outcome", &outcome,
                       "attempt", &attempt);

    const char *why = NULL;

    if (r == 0 && !task_id_valid(id))
        why = "id is not a task id";
    else if (r == 0 && strcmp(outcome, "done") && strcmp(outcome, "failed") &&
             strcmp(outcome, "retry") && strcmp(outcome, "crashed"))
        why = "outcome must be done, failed, retry or crashed";
    else if (r == 0 && attempt && !json_is_object(attempt))
        why = "attempt must be an object";
    if (why) {
        snprintf(err, sizeof(err), "%s", why);
        r = -EINVAL;
    }
    if (r < 0) {
        reply(p, ipc_reply_error(msg, "bad_request", err));
        return;
    }
    attempt = attempt ? json_deep_copy(attempt) : NULL;
    r = sched_finish(q, p, id, outcome, attempt);
    json_decref(attempt);
    reply(p,
          r < 0 ? ipc_reply_error(msg, "not_found", "job is not yours") : ipc_reply_ok(msg, NULL));
}

static void on_released(void *ctx, void *peer, json_t *msg)
{
    Queue *q = ctx;
    Peer *p = peer;
    const char *id;
    int r;

    if (!unpack_id(p, msg, &id, NULL))
        return;
    r = sched_release(q, p, id);
    reply(p,
          r < 0 ? ipc_reply_error(msg, "not_found", "job is not yours") : ipc_reply_ok(msg, NULL));
}

static void on_restarted(void *ctx, void *peer, json_t *msg)
{
    Queue *q = ctx;
    Peer *p = peer;
    const char *id;
    int r;

    if (!unpack_id(p, msg, &id, NULL))
        return;
    r = sched_restart(q, p, id);
    reply(p, r == -ENOENT ? ipc_reply_error(msg, "not_found", "job is not yours")
             : r < 0      ? ipc_reply_error(msg, "io_error", "claim.json could not be written")
                          : ipc_reply_ok(msg, NULL));
}

static unsigned count_role(const Queue *q, IpcRole role)
{
    unsigned n = 0;

    for (Peer *p = q->peers; p; p = p->next)
        n += p->role == role;
    return n;
}

/* The waiting tasks by priority band: high (750 and above), normal, low (250 and below). */
static json_t *waiting_by_band(const Queue *q)
{
    json_int_t band[3] = {0, 0, 0};
    int64_t now = now_ns();

    for (size_t i = 0; i < q->n_pending; i++) {
        const Pending *p = &q->pending[i];
        if (p->not_before_ns <= now)
            band[p->priority >= 750 ? 0 : p->priority > 250 ? 1 : 2]++;
    }
    return json_pack("{s:I, s:I, s:I}", "high", band[0], "normal", band[1], "low", band[2]);
}

static void on_status(void *ctx, void *peer, json_t *msg)
{
    Queue *q = ctx;
    Peer *p = peer;
    unsigned working = sched_working(q), max = sched_max_workers(q), scheduled = sched_scheduled(q);
    json_t *st, *held;

    if (!no_fields(p, msg))
        return;
    st = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:{s:I, s:I}}", "waiting",
                   (json_int_t)(q->n_pending - scheduled), "scheduled", (json_int_t)scheduled,
                   "working", (json_int_t)working, "done", (json_int_t)q->n_done, "failed",
                   (json_int_t)q->n_failed, "max_workers", (json_int_t)max, "free_workers",
                   (json_int_t)(max > working ? max - working : 0), "draining", q->draining,
                   "peers", "convert", (json_int_t)count_role(q, IPC_ROLE_CONVERT), "callback",
                   (json_int_t)count_role(q, IPC_ROLE_CALLBACK));
    json_object_set_new(st, "waiting_by_priority", waiting_by_band(q));
    held = admin_held(q);
    json_object_update(st, held);
    json_decref(held);
    reply(p, ipc_reply_ok(msg, st));
}

/* What the queue counted since its start, for rest's GET /metrics. */
static void on_metrics(void *ctx, void *peer, json_t *msg)
{
    Queue *q = ctx;
    Peer *p = peer;

    if (!no_fields(p, msg))
        return;
    reply(p, ipc_reply_ok(msg, json_pack("{s:O, s:o, s:o, s:{s:I, s:I}}", "finished", q->finished,
                                         "conversion", hist_json(&q->conversion), "wait",
                                         hist_json(&q->wait), "callbacks", "delivered",
                                         (json_int_t)q->callbacks[0], "gave_up",
                                         (json_int_t)q->callbacks[1])));
}

/* A pool's slots as it sees them: kept until the next report, shown by workers.get. */
static void on_workers_report(void *ctx, void *peer, json_t *msg)
{
    Peer *p = peer;
    json_t *slots;
    char err[256];

    (void)ctx;
    if (ipc_unpack(msg, err, sizeof(err), "{s:o}", "slots", &slots) < 0 || !json_is_array(slots)) {
        log_warning("peer %d sent a bad workers.report", p->fd);
        return; /* a notification: never answered */
    }
    json_decref(p->slots);
    p->slots = json_deep_copy(slots);
    /* A cluster bridge's slots are its nodes' and change as nodes come and go. */
    if (json_array_size(p->kinds) > 0)
        p->workers = (int)json_array_size(slots);
}

static void on_workers_get(void *ctx, void *peer, json_t *msg)
{
    Queue *q = ctx;
    Peer *p = peer;

    if (!no_fields(p, msg))
        return;
    reply(p, ipc_reply_ok(msg, json_pack("{s:o, s:b}", "workers", admin_workers(q), "draining",
                                         q->draining)));
}

static void on_retry(void *ctx, void *peer, json_t *msg)
{
    static const struct {
        int r;
        const char *code, *message;
    } answers[] = {
        {-ENOENT, "not_found", "no such task"},
        {-EBUSY, "not_failed", "only a failed task can be retried"},
        {-ENODATA, "input_gone", "the task's input is no longer kept on the server"},
    };
    Queue *q = ctx;
    Peer *p = peer;
    const char *id;
    int r;

    if (!unpack_id(p, msg, &id, NULL))
        return;
    r = sched_retry(q, id);
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++)
        if (answers[i].r == r) {
            reply(p, ipc_reply_error(msg, answers[i].code, answers[i].message));
            return;
        }
    if (r < 0)
        reply_errno(p, msg, r);
    else
        reply(p, ipc_reply_ok(msg, NULL));
}

static void on_drain(void *ctx, void *peer, json_t *msg)
{
    Queue *q = ctx;
    Peer *p = peer;
    int on, r;
    char err[256];

    if (ipc_unpack(msg, err, sizeof(err), "{s:b}", "on", &on) < 0) {
        reply(p, ipc_reply_error(msg, "bad_request", err));
        return;
    }
    r = admin_drain(q, on);
    if (r < 0)
        reply_errno(p, msg, r);
    else
        reply(p, ipc_reply_ok(msg, json_pack("{s:b}", "draining", q->draining)));
}

static void on_check(void *ctx, void *peer, json_t *msg)
{
    Queue *q = ctx;
    Peer *p = peer;

    if (!no_fields(p, msg))
        return;
    reply(p, ipc_reply_ok(msg, admin_check(q)));
}

/* The callback daemon settled a task's callback: its index row says so (a hint, never
 * answered; the row is read again from the folder, not from the message). */
static void on_callback_settled(void *ctx, void *peer, json_t *msg)
{
    Queue *q = ctx;
    const char *id, *result = NULL;
    char err[256];
    Stage s;

    (void)peer;
    if (ipc_unpack(msg, err, sizeof(err), "{s:s, s?s}", "id", &id, "result", &result) < 0 ||
        !task_id_valid(id)) {
        log_warning("callback.settled without a task id");
        return;
    }
    if (result && (!strcmp(result, "delivered") || !strcmp(result, "gave_up")))
        q->callbacks[strcmp(result, "delivered") ? 1 : 0]++; /* anything else is not counted */
    if (q->index && jobdir_find(q->data_fd, id, &s) == 0 && (s == STAGE_DONE || s == STAGE_FAILED))
        index_refresh(q->index, q->data_fd, s, id);
}

/* Peers answer our notifications; an answer is never answered, or two peers could ping-pong. */
static void on_answer(void *ctx, void *peer, json_t *msg)
{
    Queue *q = ctx;
    Peer *p = peer;
    (void)q;
    if (!strcmp(ipc_type(msg), "error"))
        log_warning("peer %d reported an error: %.200s", p->fd,
                    json_string_value(json_object_get(msg, "message")));
}

enum { R = IPC_ROLE_REST, C = IPC_ROLE_CONVERT, B = IPC_ROLE_CALLBACK, N = IPC_ROLE_NONE };

/* Who may send what: a converter cannot delete a task, rest cannot report work. The callback
 * daemon is also a worker pool (it runs the http kind). */
static const IpcHandler handlers[] = {
    {"workers.report", C | B, on_workers_report},
    {"workers.get", R, on_workers_get},
    {"metrics.get", R, on_metrics},
    {"job.retry", R, on_retry},
    {"batch.closed", R, on_batch_closed},
    {"admin.drain", R, on_drain},
    {"admin.check", R, on_check},
    {"hello", N, on_hello},
    {"job.submitted", R, on_submitted},
    {"job.delete", R, on_delete},
    {"status.get", R, on_status},
    {"callback.settled", B, on_callback_settled},
    {"work.claim", C | B, on_claim},
    {"work.unclaim", C | B, on_unclaim},
    {"work.done", C | B, on_done},
    {"work.released", C | B, on_released},
    {"work.restarted", C, on_restarted},
    {"ok", C | B, on_answer},
    {"error", C | B, on_answer},
};

int proto_receive(Queue *q, Peer *p)
{
    char who[32];

    snprintf(who, sizeof(who), "peer %d", p->fd);
    return ipc_dispatch(p->fd, handlers, sizeof(handlers) / sizeof(handlers[0]), p->role, q, p,
                        who);
}

void proto_notify_finished(Queue *q, const char *id, const char *state)
{
    for (Peer *p = q->peers; p; p = p->next)
        if (p->role == IPC_ROLE_CALLBACK)
            ipc_send_new(p->fd, ipc_msg("job.finished", 0,
                                        json_pack("{s:s, s:s}", "id", id, "state", state)));
}
