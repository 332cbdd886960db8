/* queue_proto.c - the queue's side of the IPC protocol (see docs/ipc.md).
 *
 * One small handler per message type, found through a table. Each handler decodes its message
 * strictly (unknown fields are refused) and answers; a bad message gets an "error" reply and a
 * log line and never stops the daemon. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "queue.h"
#include "taskmill/ipc.h"
#include "taskmill/log.h"

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

static void on_hello(void *ctx, void *peer, json_t *msg)
{
    Queue *q = ctx;
    Peer *p = peer;
    const char *role_name;
    IpcRole role;
    int workers = 0;
    char err[256] = "";

    if (ipc_unpack(msg, err, sizeof(err), "{s:s, s?i}", "role", &role_name, "workers", &workers) <
            0 ||
        workers < 0 || workers > 1024) {
        if (!*err)
            snprintf(err, sizeof(err), "workers must be 0 to 1024");
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
    p->workers = role == IPC_ROLE_CONVERT ? workers : 0;
    if (role != IPC_ROLE_REST)
        log_info("peer %d is a %s%s", p->fd, role_name, role == IPC_ROLE_CONVERT ? " pool" : "");
    if (ipc_rid(msg)) /* rest's hello is a notification */
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
    char err[256];

    if (ipc_unpack(msg, err, sizeof(err), "{}") < 0) {
        reply(p, ipc_reply_error(msg, "bad_request", err));
        return;
    }
    sched_claim(q, p, ipc_rid(msg));
}

static void on_done(void *ctx, void *peer, json_t *msg)
{
    Queue *q = ctx;
    Peer *p = peer;
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

static unsigned count_role(const Queue *q, IpcRole role)
{
    unsigned n = 0;

    for (Peer *p = q->peers; p; p = p->next)
        n += p->role == role;
    return n;
}

static void on_status(void *ctx, void *peer, json_t *msg)
{
    Queue *q = ctx;
    Peer *p = peer;
    unsigned working = sched_working(q), max = sched_max_workers(q);

    reply(p, ipc_reply_ok(msg,
                          json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:{s:I, s:I}}", "waiting",
                                    (json_int_t)q->n_pending, "working", (json_int_t)working,
                                    "done", (json_int_t)q->n_done, "failed",
                                    (json_int_t)q->n_failed, "max_workers", (json_int_t)max,
                                    "free_workers", (json_int_t)(max > working ? max - working : 0),
                                    "peers", "convert", (json_int_t)count_role(q, IPC_ROLE_CONVERT),
                                    "callback", (json_int_t)count_role(q, IPC_ROLE_CALLBACK))));
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

/* Who may send what: a converter cannot delete a task, rest cannot report work. */
static const IpcHandler handlers[] = {
    {"hello", N, on_hello},
    {"job.submitted", R, on_submitted},
    {"job.delete", R, on_delete},
    {"status.get", R, on_status},
    {"work.claim", C, on_claim},
    {"work.done", C, on_done},
    {"work.released", C, on_released},
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
