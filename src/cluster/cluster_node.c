/* cluster_node.c - taskmill-cluster: what the conversion nodes say, and the watch over them.
 *
 * JetStream delivers a task at least once; the bridge makes the outcome count once. Every
 * delivery of a task's message has a number (NumDelivered) and a node must ask before it
 * starts one (taskmill.start): the bridge accepts only a delivery newer than the one that runs,
 * records it in in_progress/<id>/node.json (which rest checks before it lets a node fetch the
 * input or upload a result) and, when an older delivery had started, tells the queue the
 * attempt was interrupted (work.restarted). A verdict (taskmill.finish) counts only from the
 * delivery that runs now; anything else is refused and the node drops it.
 *
 * Nodes report their slots every second (taskmill.report). A node silent for NODE_GONE_S
 * seconds is forgotten; a task whose node is silent for the consumer's ack_wait plus a margin
 * has been redelivered by JetStream, or if no node took it, is withdrawn and handed back to the
 * queue; after max_deliver silent deliveries it fails with worker_crashed. */
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
#include "taskmill/clock.h"
#include "taskmill/files.h"
#include "taskmill/ipc.h"
#include "taskmill/jobdir.h"
#include "taskmill/log.h"
#include "taskmill/result.h"

#define NODE_GONE_S   5 /* a node that has not reported for this long is gone */
#define SILENCE_GRACE 5 /* seconds past ack_wait before a silent task is taken back */

static const int64_t S = 1000000000;

static Node *node_find(Bridge *b, const char *host)
{
    for (Node *n = b->nodes; n; n = n->next)
        if (!strcmp(n->host, host))
            return n;
    return NULL;
}

static bool hex64(const char *s)
{
    return s && strlen(s) == SHA256_HEX_LEN && strspn(s, "0123456789abcdef") == SHA256_HEX_LEN;
}

/* --- taskmill.start ----------------------------------------------------------------------------
 */

static int write_assignment(Bridge *b, const Remote *r)
{
    json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:i}", "node", r->node, "host", r->host, "delivery",
                          (json_int_t)r->delivery, "seq", (json_int_t)r->seq, "slot", r->slot);
    int fd, q = jobdir_open(b->data_fd, STAGE_IN_PROGRESS, r->id, &fd);

    if (q == 0) {
        q = json_write_at(fd, "node.json", j);
        close(fd);
    }
    json_decref(j);
    return q;
}

/* What an earlier delivery may have uploaded before it went silent. */
static void forget_upload(Bridge *b, const Remote *r)
{
    char name[64];
    int fd;

    if (jobdir_open(b->data_fd, STAGE_IN_PROGRESS, r->id, &fd) < 0)
        return;
    snprintf(name, sizeof(name), "output.node-%" PRId64, r->delivery);
    unlinkat(fd, name, 0);
    snprintf(name, sizeof(name), "output.node-%" PRId64 ".partial", r->delivery);
    unlinkat(fd, name, 0);
    close(fd);
}

static void on_start(Bridge *b, natsMsg *m, json_t *j)
{
    const char *id = NULL, *node = NULL, *host = NULL;
    json_int_t seq = 0, delivery = 0;
    int slot = 0;
    Remote *r;
    Node *n;

    if (json_unpack(j, "{s:s, s:I, s:I, s:s, s:s, s:i}", "id", &id, "seq", &seq, "delivery",
                    &delivery, "node", &node, "host", &host, "slot", &slot) < 0 ||
        !task_id_valid(id)) {
        natslink_reply(b->nats, m, json_pack("{s:b, s:s}", "ok", 0, "reason", "bad_request"));
        return;
    }
    r = remote_find(b, id);
    if (!r || r->seq != (uint64_t)seq || delivery <= r->delivery) {
        natslink_reply(b->nats, m,
                       json_pack("{s:b, s:s}", "ok", 0, "reason",
                                 r && r->seq == (uint64_t)seq ? "stale" : "not_held"));
        return;
    }
    if (r->delivery > 0) {
        log_task(LOG_NOTICE, id, "delivery %" PRId64 " on %s went silent; %s took it over",
                 r->delivery, r->host, host);
        forget_upload(b, r);
        bridge_report(b, "work.restarted", json_pack("{s:s}", "id", id));
    }
    r->delivery = delivery;
    snprintf(r->node, sizeof(r->node), "%s", node);
    snprintf(r->host, sizeof(r->host), "%s", host);
    r->slot = slot;
    r->started_ns = r->heard_ns = now_ns();
    r->percent = -1;
    if (write_assignment(b, r) < 0) {
        log_task(LOG_ERR, id, "cannot write node.json");
        natslink_reply(b->nats, m, json_pack("{s:b, s:s}", "ok", 0, "reason", "io_error"));
        return;
    }
    if ((n = node_find(b, host)) && n->idle > 0)
        n->idle--; /* until its next report says so itself */
    log_event(LOG_INFO, id, r->type, "in_progress", "started on %s delivery=%" PRId64, host,
              r->delivery);
    natslink_reply(b->nats, m, json_pack("{s:b}", "ok", 1));
    bridge_claim(b);
}

/* --- taskmill.finish ---------------------------------------------------------------------------
 */

/* The node's uploaded output becomes the result: output.node-<delivery> renamed to the name
 * the node's converter chose, then result.json. */
static int take_result(Bridge *b, const Remote *r, int job_fd, json_t *result)
{
    const char *disk = json_string_value(json_object_get(result, "disk_name"));
    const char *sha = json_string_value(json_object_get(result, "sha256"));
    json_t *size = json_object_get(result, "size");
    char upload[64];
    struct stat st;

    (void)b;
    if (!disk || strncmp(disk, "output.", 7) || task_file_name_problem(disk) || !hex64(sha) ||
        !json_is_integer(size) || !json_is_string(json_object_get(result, "file_name")))
        return -EINVAL;
    snprintf(upload, sizeof(upload), "output.node-%" PRId64, r->delivery);
    if (fstatat(job_fd, upload, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode) || (json_int_t)st.st_size != json_integer_value(size))
        return -EBADMSG;
    if (renameat(job_fd, upload, job_fd, disk) < 0 || fsync(job_fd) < 0)
        return -errno;
    return json_write_at(job_fd, "result.json", result);
}

static int take_verdict(Bridge *b, const Remote *r, const char *outcome, json_t *j)
{
    json_t *result = json_object_get(j, "result"), *error = json_object_get(j, "error");
    const char *code = json_string_value(json_object_get(error, "code"));
    const char *message = json_string_value(json_object_get(error, "message"));
    int fd, q = jobdir_open(b->data_fd, STAGE_IN_PROGRESS, r->id, &fd);

    if (q < 0)
        return q;
    if (!strcmp(outcome, "done"))
        q = json_is_object(result) ? take_result(b, r, fd, result) : -EINVAL;
    else if (code && message)
        q = result_error(fd, code, message);
    else
        q = -EINVAL;
    if (q == 0)
        unlinkat(fd, "node.json", 0);
    close(fd);
    return q;
}

static void on_finish(Bridge *b, natsMsg *m, json_t *j)
{
    const char *id = NULL, *outcome = NULL;
    json_int_t seq = 0, delivery = 0;
    json_t *attempt = NULL;
    Remote *r;
    Node *n;
    int q;

    if (json_unpack(j, "{s:s, s:I, s:I, s:s, s:o}", "id", &id, "seq", &seq, "delivery", &delivery,
                    "outcome", &outcome, "attempt", &attempt) < 0 ||
        !task_id_valid(id) || !json_is_object(attempt) ||
        (strcmp(outcome, "done") && strcmp(outcome, "failed") && strcmp(outcome, "retry") &&
         strcmp(outcome, "crashed"))) {
        natslink_reply(b->nats, m, json_pack("{s:b, s:s}", "ok", 0, "reason", "bad_request"));
        return;
    }
    r = remote_find(b, id);
    if (!r || r->seq != (uint64_t)seq || r->delivery != delivery) {
        log_task(LOG_NOTICE, id,
                 "refused a result from %s delivery=%" PRId64 " (current %" PRId64 ")",
                 json_string_value(json_object_get(attempt, "host")) ?: "?", (int64_t)delivery,
                 r && r->seq == (uint64_t)seq ? r->delivery : 0);
        natslink_reply(b->nats, m, json_pack("{s:b, s:s}", "ok", 0, "reason", "stale"));
        return;
    }
    if ((q = take_verdict(b, r, outcome, j)) < 0) {
        log_task(LOG_WARNING, id, "the verdict of %s could not be taken: %s", r->host,
                 strerror(-q));
        natslink_reply(b->nats, m, json_pack("{s:b, s:s}", "ok", 0, "reason", "bad_result"));
        return;
    }
    json_object_set_new(attempt, "host", json_string(r->host));
    json_object_set_new(attempt, "task_type", json_string(r->type));
    log_event(LOG_INFO, id, r->type, NULL, "finished on %s outcome=%s", r->host, outcome);
    bridge_report(b, "work.done",
                  json_pack("{s:s, s:s, s:O}", "id", id, "outcome", outcome, "attempt", attempt));
    if ((n = node_find(b, r->host)))
        n->idle++; /* its slot is free now: the next task need not wait for its report */
    remote_unpublish(b, r);
    remote_drop(b, r);
    natslink_reply(b->nats, m, json_pack("{s:b}", "ok", 1));
    bridge_claim(b);
}

/* --- taskmill.report ---------------------------------------------------------------------------
 */

/* A running task's progress as its node sees it, into progress.json for GET /v1/tasks/<id>. */
static void note_progress(Bridge *b, Remote *r, json_t *slot)
{
    json_t *detail = json_object_get(slot, "progress_detail");
    double pct = json_number_value(json_object_get(slot, "progress"));
    int fd;

    r->heard_ns = now_ns();
    if (!json_is_object(detail) || pct - r->percent < 0.5)
        return;
    r->percent = pct;
    if (jobdir_open(b->data_fd, STAGE_IN_PROGRESS, r->id, &fd) == 0) {
        json_write_at(fd, "progress.json", detail);
        close(fd);
    }
}

static void on_report(Bridge *b, json_t *j)
{
    const char *host = NULL, *node = NULL, *id;
    json_t *slots = NULL, *s;
    size_t i;
    Node *n;
    Remote *r;

    if (json_unpack(j, "{s:s, s:s, s:o}", "host", &host, "node", &node, "slots", &slots) < 0 ||
        !json_is_array(slots) || json_array_size(slots) > 1024)
        return;
    if (!(n = node_find(b, host))) {
        if (!(n = calloc(1, sizeof(*n))))
            return;
        snprintf(n->host, sizeof(n->host), "%s", host);
        n->next = b->nodes;
        b->nodes = n;
        log_info("node %s (token %s) reports %zu slots", host, node, json_array_size(slots));
    }
    snprintf(n->node, sizeof(n->node), "%s", node);
    json_decref(n->slots);
    n->slots = json_array();
    n->idle = 0;
    n->seen_ns = now_ns();
    json_array_foreach(slots, i, s)
    {
        json_t *copy = json_object();
        json_object_update(copy, s);
        json_object_del(copy, "progress_detail");
        json_object_del(copy, "delivery");
        json_object_set_new(copy, "host", json_string(host));
        json_array_append_new(n->slots, copy);
        n->idle += !strcmp(json_string_value(json_object_get(s, "state")) ?: "", "idle");
        id = json_string_value(json_object_get(s, "task_id"));
        if (id && (r = remote_find(b, id)) && !strcmp(r->host, host) &&
            json_integer_value(json_object_get(s, "delivery")) == r->delivery)
            note_progress(b, r, s);
    }
}

void nodes_on_message(Bridge *b, natsMsg *m)
{
    const char *subject = natsMsg_GetSubject(m);
    json_t *j = natslink_json(m);

    if (!j) {
        log_warning("a message on %s is not a JSON object", subject);
        return;
    }
    if (!strcmp(subject, NATS_START))
        on_start(b, m, j);
    else if (!strcmp(subject, NATS_FINISH))
        on_finish(b, m, j);
    else if (!strcmp(subject, NATS_REPORT))
        on_report(b, j);
    json_decref(j);
}

/* --- the watch ---------------------------------------------------------------------------------
 */

/* max_deliver deliveries went silent: the task fails for good. */
static void give_up(Bridge *b, Remote *r)
{
    char message[256], at[40], end[40];
    int fd;

    snprintf(message, sizeof(message),
             "the node running it went silent on each of its %" PRId64 " deliveries (last: %s)",
             r->delivery, r->host);
    if (jobdir_open(b->data_fd, STAGE_IN_PROGRESS, r->id, &fd) == 0) {
        result_error(fd, "worker_crashed", message);
        unlinkat(fd, "node.json", 0);
        close(fd);
    }
    format_time(r->started_ns, at, sizeof(at));
    format_time(now_ns(), end, sizeof(end));
    log_task(LOG_WARNING, r->id, "%s", message);
    remote_unpublish(b, r);
    bridge_report(b, "work.done",
                  json_pack("{s:s, s:s, s:{s:i, s:i, s:s, s:s, s:s, s:s}}", "id", r->id, "outcome",
                            "failed", "attempt", "slot", r->slot, "pid", 0, "host", r->host,
                            "task_type", r->type, "started_at", at, "finished_at", end));
}

static void sweep_remotes(Bridge *b, bool reconnected)
{
    int64_t now = now_ns();

    for (Remote *r = b->remotes, *next; r; r = next) {
        int64_t limit = r->delivery > 0 ? b->conf->cluster_ack_wait + SILENCE_GRACE
                                        : b->conf->cluster_start_timeout;
        next = r->next;
        if (reconnected)
            r->heard_ns = now; /* NATS was away: give the nodes a fresh chance */
        if (now - r->heard_ns < limit * S)
            continue;
        if (r->delivery >= b->conf->cluster_max_deliver) {
            give_up(b, r);
        } else {
            log_task(LOG_NOTICE, r->id, "%s; back to the queue",
                     r->delivery ? "its node went silent and no other took it" : "no node took it");
            remote_unpublish(b, r);
            natslink_publish(b->nats, NATS_CANCEL, json_pack("{s:s}", "id", r->id));
            bridge_report(b, "work.released", json_pack("{s:s}", "id", r->id));
        }
        remote_drop(b, r);
    }
}

void nodes_tick(Bridge *b)
{
    int64_t now = now_ns();
    bool reconnected;

    for (Node **pp = &b->nodes; *pp;) {
        Node *n = *pp;
        if (now - n->seen_ns < NODE_GONE_S * S) {
            pp = &n->next;
            continue;
        }
        log_notice("node %s stopped reporting", n->host);
        *pp = n->next;
        json_decref(n->slots);
        free(n);
    }
    if (natslink_connected(b->nats, &reconnected))
        sweep_remotes(b, reconnected);
}

int nodes_free_slots(Bridge *b)
{
    int64_t now = now_ns();
    int n = 0;

    for (Node *node = b->nodes; node; node = node->next)
        if (now - node->seen_ns < NODE_GONE_S * S)
            n += node->idle;
    for (Remote *r = b->remotes; r; r = r->next)
        n -= r->delivery == 0;
    return n > 0 ? n : 0;
}

json_t *nodes_slots_json(Bridge *b)
{
    json_t *all = json_array();

    for (Node *n = b->nodes; n; n = n->next)
        json_array_extend(all, n->slots);
    return all;
}

void nodes_free(Bridge *b)
{
    while (b->nodes) {
        Node *n = b->nodes;
        b->nodes = n->next;
        json_decref(n->slots);
        free(n);
    }
    while (b->remotes)
        remote_drop(b, b->remotes);
}
