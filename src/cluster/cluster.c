/* cluster.c - taskmill-cluster: the queue's side of the bridge to conversion nodes, and main.
 *
 * The bridge connects to the queue as a worker pool of kind video whose slots are the idle
 * slots the nodes report; it keeps one work.claim outstanding per such slot. Each task the
 * queue assigns is published to the JetStream stream: the task's request.json, its input's size
 * and SHA-256, with a message id that makes a repeated publish of the same dispatch a
 * duplicate. When the queue cancels a task (a client deleted it) the message is deleted from the
 * stream and the nodes are told to stop it. When the queue goes away every task goes back to
 * pending/ there; the bridge forgets them and deletes their messages, and the nodes' late
 * results are refused. At start the stream is emptied: whatever it holds belongs to no one. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster.h"
#include "taskmill/claim.h"
#include "taskmill/clock.h"
#include "taskmill/files.h"
#include "taskmill/ipc.h"
#include "taskmill/jobdir.h"
#include "taskmill/log.h"

static Bridge bridge;

/* --- the queue ------------------------------------------------------------------------------- */

int bridge_send(Bridge *b, const char *type, json_t *body)
{
    if (b->queue_fd < 0) {
        json_decref(body);
        return -ENOTCONN;
    }
    return ipc_send_new(b->queue_fd, ipc_msg(type, ++b->rid, body));
}

void bridge_report(Bridge *b, const char *type, json_t *body)
{
    if (bridge_send(b, type, body) == 0)
        b->unacked_rid = b->rid;
}

/* One claim per idle node slot that no published task waits for; fewer withdraw them all. */
void bridge_claim(Bridge *b)
{
    int want = 0;

    if (b->queue_fd < 0)
        return;
    if (!daemon_stopping(b->daemon) && b->stream_ready && natslink_up(b->nats) &&
        now_ns() >= b->pause_until_ns)
        want = nodes_free_slots(b);
    if (want < b->claims && bridge_send(b, "work.unclaim", NULL) == 0)
        b->claims = 0;
    while (b->claims < want && bridge_send(b, "work.claim", NULL) == 0)
        b->claims++;
}

void bridge_report_slots(Bridge *b)
{
    if (b->queue_fd >= 0)
        ipc_send_new(b->queue_fd, ipc_msg("workers.report", 0,
                                          json_pack("{s:o}", "slots", nodes_slots_json(b))));
}

static void maybe_quit(Bridge *b)
{
    bool answered = b->unacked_rid == 0 || b->queue_fd < 0;

    if (!daemon_stopping(b->daemon))
        return;
    if (!answered && now_ns() - b->stop_ns < 10000000000LL)
        return;
    daemon_quit(b->daemon, EXIT_SUCCESS);
}

/* --- the tasks it holds ------------------------------------------------------------------------
 */

Remote *remote_find(Bridge *b, const char *id)
{
    for (Remote *r = b->remotes; r; r = r->next)
        if (!strcmp(r->id, id))
            return r;
    return NULL;
}

void remote_drop(Bridge *b, Remote *r)
{
    for (Remote **pp = &b->remotes; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            free(r);
            return;
        }
}

void remote_unpublish(Bridge *b, Remote *r)
{
    jsErrCode code = 0;
    natsStatus s;

    if (!r->seq)
        return;
    s = js_DeleteMsg(natslink_js(b->nats), NATS_STREAM, r->seq, NULL, &code);
    if (s != NATS_OK && code != JSStreamMsgDeleteFailed)
        log_task(LOG_NOTICE, r->id, "cannot delete message %" PRIu64 " from the stream: %s", r->seq,
                 natsStatus_GetText(s));
    r->seq = 0;
}

/* The message a node needs: the task as rest stored it, and what its input must hash to. */
static int task_message(Bridge *b, const char *id, json_t **ret, char *msg_id, size_t idlen)
{
    json_t *req = NULL, *input = json_null();
    const char *name;
    char hex[SHA256_HEX_LEN + 1];
    JobClaim claim;
    struct stat st;
    int job_fd, fd, r = jobdir_open(b->data_fd, STAGE_IN_PROGRESS, id, &job_fd);

    if (r < 0)
        return r;
    if ((r = json_read_at(job_fd, "request.json", &req)) == 0 &&
        (r = claim_read(job_fd, &claim)) == 0 &&
        (name = json_string_value(json_object_get(req, "input_name")))) {
        fd = openat(job_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || fstat(fd, &st) < 0 || (r = file_sha256(fd, hex)) < 0)
            r = r < 0 ? r : -errno;
        else
            input = json_pack("{s:I, s:s}", "size", (json_int_t)st.st_size, "sha256", hex);
        if (fd >= 0)
            close(fd);
    }
    close(job_fd);
    if (r < 0) {
        json_decref(req);
        json_decref(input);
        return r;
    }
    /* One id per dispatch (the claim's start): JetStream drops a repeated publish of it. */
    snprintf(msg_id, idlen, "%s.%" PRId64, id, claim.started_ns);
    *ret = json_pack("{s:s, s:o, s:o}", "id", id, "request", req, "input", input);
    return 0;
}

static int publish(Bridge *b, Remote *r)
{
    char msg_id[80], *text = NULL;
    jsPubOptions po;
    jsPubAck *ack = NULL;
    jsErrCode code = 0;
    json_t *m = NULL;
    natsStatus s;
    int q = task_message(b, r->id, &m, msg_id, sizeof(msg_id));

    if (q < 0) {
        log_task(LOG_ERR, r->id, "cannot read the task to publish it: %s", strerror(-q));
        return q;
    }
    text = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    jsPubOptions_Init(&po);
    po.MsgId = msg_id;
    po.MaxWait = 5000;
    s = text ? js_Publish(&ack, natslink_js(b->nats), NATS_WORK_SUBJECT, text, (int)strlen(text),
                          &po, &code)
             : NATS_NO_MEMORY;
    free(text);
    if (s != NATS_OK) {
        log_task(LOG_WARNING, r->id, "cannot publish: %s (%d)", natsStatus_GetText(s), (int)code);
        return -EIO;
    }
    r->seq = ack->Sequence;
    r->delivery = 0;
    r->heard_ns = now_ns();
    jsPubAck_Destroy(ack);
    log_task(LOG_INFO, r->id, "published seq=%" PRIu64, r->seq);
    return 0;
}

static void on_assign(void *ctx, void *peer, json_t *msg)
{
    Bridge *b = ctx;
    WorkAssign w;
    char err[256];
    Remote *r;

    (void)peer;
    if (ipc_work_assign_unpack(msg, &w, err, sizeof(err)) < 0) {
        log_warning("queue sent a malformed work.assign: %s", err);
        return;
    }
    b->claims = b->claims > 0 ? b->claims - 1 : 0;
    r = calloc(1, sizeof(*r));
    if (!r || daemon_stopping(b->daemon)) {
        free(r);
        bridge_report(b, "work.released", json_pack("{s:s}", "id", w.id));
        return;
    }
    snprintf(r->id, sizeof(r->id), "%s", w.id);
    snprintf(r->type, sizeof(r->type), "%s", w.task_type);
    r->next = b->remotes;
    b->remotes = r;
    if (publish(b, r) < 0) {
        b->pause_until_ns = now_ns() + 2000000000; /* not the same failure for every task */
        remote_drop(b, r);
        bridge_report(b, "work.released", json_pack("{s:s}", "id", w.id));
    }
    bridge_claim(b);
}

/* A client deleted the task: out of the stream, stopped on its node, handed back. */
static void on_cancel(void *ctx, void *peer, json_t *msg)
{
    Bridge *b = ctx;
    const char *id = NULL;
    char err[256];
    Remote *r;

    (void)peer;
    if (ipc_unpack(msg, err, sizeof(err), "{s:s}", "id", &id) < 0 || !task_id_valid(id)) {
        log_warning("queue sent a malformed work.cancel");
        return;
    }
    if (!(r = remote_find(b, id)))
        return;
    remote_unpublish(b, r);
    natslink_publish(b->nats, NATS_CANCEL, json_pack("{s:s}", "id", id));
    log_task(LOG_INFO, id, "stopping: the task was deleted");
    remote_drop(b, r);
    bridge_report(b, "work.released", json_pack("{s:s}", "id", id));
    bridge_claim(b);
}

static void on_answer(void *ctx, void *peer, json_t *msg)
{
    Bridge *b = ctx;

    (void)peer;
    if (!strcmp(ipc_type(msg), "error"))
        log_warning("queue: %.200s", json_string_value(json_object_get(msg, "message")));
    if (ipc_rid(msg) >= b->unacked_rid)
        b->unacked_rid = 0;
}

static const IpcHandler queue_handlers[] = {
    {"work.assign", IPC_ROLE_QUEUE, on_assign},
    {"work.cancel", IPC_ROLE_QUEUE, on_cancel},
    {"ok", IPC_ROLE_QUEUE, on_answer},
    {"error", IPC_ROLE_QUEUE, on_answer},
};

/* The queue put every task of ours back in pending/: their messages and runs are void. */
static void queue_lost(Bridge *b)
{
    log_warning("lost the queue; the tasks on nodes go back to it");
    daemon_unwatch(b->daemon, b->queue_fd);
    close(b->queue_fd);
    b->queue_fd = -1;
    b->claims = 0;
    while (b->remotes) {
        remote_unpublish(b, b->remotes);
        natslink_publish(b->nats, NATS_CANCEL, json_pack("{s:s}", "id", b->remotes->id));
        remote_drop(b, b->remotes);
    }
    maybe_quit(b);
}

static int on_queue(Daemon *d, int fd, uint32_t events, void *userdata)
{
    Bridge *b = userdata;
    int r = ipc_dispatch(fd, queue_handlers, sizeof(queue_handlers) / sizeof(queue_handlers[0]),
                         IPC_ROLE_QUEUE, b, NULL, "the queue");

    (void)d, (void)events;
    if (r < 0 && r != -EAGAIN)
        queue_lost(b);
    maybe_quit(b);
    return 0;
}

static int queue_connect(Bridge *b)
{
    char host[64];
    int fd, r;

    if (gethostname(host, sizeof(host)) < 0)
        snprintf(host, sizeof(host), "localhost");
    r = ipc_connect_queue(
        b->conf->runtime_dir, IPC_ROLE_CONVERT,
        json_pack("{s:i, s:[s], s:s}", "workers", 0, "kinds", "video", "host", host), 5000, &fd);
    if (r == 0 && (r = daemon_watch(b->daemon, fd, EPOLLIN, on_queue, b)) < 0)
        close(fd);
    if (r < 0)
        return r;
    b->rid = 1;
    b->queue_fd = fd;
    b->claims = 0;
    log_info("connected to the queue");
    bridge_report_slots(b);
    bridge_claim(b);
    return 0;
}

/* --- NATS --------------------------------------------------------------------------------------
 */

static int on_nats(Daemon *d, int fd, uint32_t events, void *userdata)
{
    Bridge *b = userdata;
    char why[256];
    natsMsg *m;

    (void)fd, (void)events;
    if (natslink_gave_up(b->nats, why, sizeof(why))) {
        log_err("NATS closed the connection for good (%s); exiting", why);
        daemon_quit(d, EXIT_FAILURE);
        return 0;
    }
    while ((m = natslink_next(b->nats))) {
        nodes_on_message(b, m);
        natsMsg_Destroy(m);
    }
    return 0;
}

/* The stream and its consumer, made once NATS answers; then emptied of what no one holds. */
static void stream_setup(Bridge *b)
{
    char err[512];
    jsErrCode code = 0;

    if (b->stream_ready || !natslink_up(b->nats))
        return;
    if (natslink_ensure_stream(b->nats, b->conf, err, sizeof(err)) < 0) {
        if (b->ticks % 10 == 0)
            log_warning("%s; retrying", err);
        return;
    }
    if (!b->remotes && js_PurgeStream(natslink_js(b->nats), NATS_STREAM, NULL, &code) != NATS_OK)
        log_warning("cannot empty the stream of old tasks (error %d)", (int)code);
    b->stream_ready = true;
    log_info("JetStream stream %s ready (ack_wait %d s, max_deliver %d)", NATS_STREAM,
             b->conf->cluster_ack_wait, b->conf->cluster_max_deliver);
}

static void on_tick(Daemon *d)
{
    Bridge *b = daemon_userdata(d);

    b->ticks++;
    stream_setup(b);
    if (b->queue_fd < 0 && !daemon_stopping(d))
        queue_connect(b);
    nodes_tick(b);
    bridge_claim(b);
    bridge_report_slots(b);
    maybe_quit(b);
}

/* Tasks on nodes go on there; the queue gets them back (not counted as attempts) and the
 * nodes' results will be refused, so they are stopped. */
static int cluster_stop(Daemon *d)
{
    Bridge *b = daemon_userdata(d);

    b->stop_ns = now_ns();
    if (b->claims > 0 && bridge_send(b, "work.unclaim", NULL) == 0)
        b->claims = 0;
    while (b->remotes) {
        remote_unpublish(b, b->remotes);
        natslink_publish(b->nats, NATS_CANCEL, json_pack("{s:s}", "id", b->remotes->id));
        bridge_report(b, "work.released", json_pack("{s:s}", "id", b->remotes->id));
        remote_drop(b, b->remotes);
    }
    return b->unacked_rid != 0 && b->queue_fd >= 0;
}

static int cluster_init(Daemon *d, const Conf *c)
{
    Bridge *b = &bridge;
    char err[512];
    int r;

    *b = (Bridge){.daemon = d, .conf = c, .data_fd = -1, .queue_fd = -1};
    daemon_set_userdata(d, b);
    if (!c->nats_url) {
        log_err("%s has no [cluster] nats_url: there is no cluster to serve",
                c->path ? c->path : "the config");
        return -ECANCELED;
    }
    if ((r = jobdir_open_data(c->root, true, &b->data_fd)) < 0) {
        log_err("cannot open %s/data: %s", c->root, strerror(-r));
        return r;
    }
    if (natslink_open(c, "taskmill-cluster", &b->nats, err, sizeof(err)) < 0 ||
        natslink_subscribe(b->nats, NATS_START, err, sizeof(err)) < 0 ||
        natslink_subscribe(b->nats, NATS_FINISH, err, sizeof(err)) < 0 ||
        natslink_subscribe(b->nats, NATS_REPORT, err, sizeof(err)) < 0 ||
        daemon_watch(d, natslink_fd(b->nats), EPOLLIN, on_nats, b) < 0) {
        log_err("%s", err);
        return -ECANCELED;
    }
    stream_setup(b);
    if (queue_connect(b) < 0)
        log_notice("queue not reachable yet; will retry every second");
    return 0;
}

static void cluster_shutdown(Daemon *d)
{
    Bridge *b = daemon_userdata(d);

    natslink_close(b->nats);
    nodes_free(b);
    if (b->queue_fd >= 0)
        close(b->queue_fd);
    if (b->data_fd >= 0)
        close(b->data_fd);
}

int main(int argc, char **argv)
{
    static const DaemonSpec spec = {
        .name = "cluster",
        .summary = "Hands video tasks to conversion nodes on other machines through NATS "
                   "JetStream.",
        .init = cluster_init,
        .stop = cluster_stop,
        .shutdown = cluster_shutdown,
        .on_tick = on_tick,
    };
    return daemon_main(argc, argv, &spec);
}
