/* queue_proto.c - the queue's side of the IPC protocol (see docs/ipc.md).
 *
 * One small handler per message type, found through a table. Each handler decodes its message
 * strictly (unknown fields are refused) and answers; a bad message gets an "error" reply and a
 * log line and never stops the daemon. */
#include <errno.h>
#include <string.h>

#include "queue.h"
#include "taskmill/ipc.h"
#include "taskmill/log.h"

typedef void (*Handler)(Queue *q, Peer *p, json_t *msg);

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

static void on_hello(Queue *q, Peer *p, json_t *msg)
{
    const char *role;
    int workers = 0;
    char err[256];

    if (ipc_unpack(msg, err, sizeof(err), "{s:s, s?i}", "role", &role, "workers", &workers) < 0 ||
        workers < 0 || workers > 1024) {
        reply(p, ipc_reply_error(msg, "bad_request", err));
        return;
    }
    if (!strcmp(role, "convert"))
        p->role = PEER_CONVERT;
    else if (!strcmp(role, "callback"))
        p->role = PEER_CALLBACK;
    else {
        reply(p, ipc_reply_error(msg, "bad_request", "unknown role"));
        return;
    }
    p->workers = workers;
    log_info("peer %d is a %s%s", p->fd, role, p->role == PEER_CONVERT ? " pool" : "");
    reply(p, ipc_reply_ok(msg, NULL));
    sched_update_status(q);
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

static void on_submitted(Queue *q, Peer *p, json_t *msg)
{
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

static void on_delete(Queue *q, Peer *p, json_t *msg)
{
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

static void on_claim(Queue *q, Peer *p, json_t *msg)
{
    char err[256];

    if (p->role != PEER_CONVERT || ipc_unpack(msg, err, sizeof(err), "{}") < 0) {
        reply(p, ipc_reply_error(msg, "bad_request", "work.claim needs a convert hello"));
        return;
    }
    sched_claim(q, p, ipc_rid(msg));
}

static void on_done(Queue *q, Peer *p, json_t *msg)
{
    const char *id, *outcome;
    int r;

    if (!unpack_id(p, msg, &id, &outcome))
        return;
    if (strcmp(outcome, "done") && strcmp(outcome, "failed") && strcmp(outcome, "crashed")) {
        reply(p, ipc_reply_error(msg, "bad_request", "outcome must be done, failed or crashed"));
        return;
    }
    r = sched_finish(q, p, id, outcome);
    reply(p,
          r < 0 ? ipc_reply_error(msg, "not_found", "job is not yours") : ipc_reply_ok(msg, NULL));
}

static void on_released(Queue *q, Peer *p, json_t *msg)
{
    const char *id;
    int r;

    if (!unpack_id(p, msg, &id, NULL))
        return;
    r = sched_release(q, p, id);
    reply(p,
          r < 0 ? ipc_reply_error(msg, "not_found", "job is not yours") : ipc_reply_ok(msg, NULL));
}

static unsigned count_role(const Queue *q, PeerRole role)
{
    unsigned n = 0;

    for (Peer *p = q->peers; p; p = p->next)
        n += p->role == role;
    return n;
}

static void on_status(Queue *q, Peer *p, json_t *msg)
{
    unsigned working = sched_working(q), max = sched_max_workers(q);

    reply(p, ipc_reply_ok(msg,
                          json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:{s:I, s:I}}", "waiting",
                                    (json_int_t)q->n_pending, "working", (json_int_t)working,
                                    "done", (json_int_t)q->n_done, "failed",
                                    (json_int_t)q->n_failed, "max_workers", (json_int_t)max,
                                    "free_workers", (json_int_t)(max > working ? max - working : 0),
                                    "peers", "convert", (json_int_t)count_role(q, PEER_CONVERT),
                                    "callback", (json_int_t)count_role(q, PEER_CALLBACK))));
}

/* Peers answer our notifications; an answer is never answered, or two peers could ping-pong. */
static void on_answer(Queue *q, Peer *p, json_t *msg)
{
    (void)q;
    if (!strcmp(ipc_type(msg), "error"))
        log_warning("peer %d reported an error: %.200s", p->fd,
                    json_string_value(json_object_get(msg, "message")));
}

static const struct {
    const char *type;
    Handler fn;
} handlers[] = {
    {"hello", on_hello},       {"job.submitted", on_submitted},
    {"job.delete", on_delete}, {"work.claim", on_claim},
    {"work.done", on_done},    {"work.released", on_released},
    {"status.get", on_status}, {"ok", on_answer},
    {"error", on_answer},
};

void proto_handle(Queue *q, Peer *p, json_t *msg)
{
    const char *type = ipc_type(msg);

    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
        if (!strcmp(handlers[i].type, type)) {
            handlers[i].fn(q, p, msg);
            return;
        }
    log_warning("peer %d sent unknown message type '%.64s'", p->fd, type);
    reply(p, ipc_reply_error(msg, "unknown_type", "unknown message type"));
}

void proto_notify_finished(Queue *q, const char *id, const char *state)
{
    for (Peer *p = q->peers; p; p = p->next)
        if (p->role == PEER_CALLBACK)
            ipc_send_new(p->fd, ipc_msg("job.finished", 0,
                                        json_pack("{s:s, s:s}", "id", id, "state", state)));
}
