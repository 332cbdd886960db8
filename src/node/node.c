/* node.c - taskmill-node: a conversion node that takes video tasks from the server's JetStream
 * stream (docs/cluster.md).
 *
 * At start the node asks the server who its token is (GET /v1/node: a token of role node, or
 * it refuses to run), connects to NATS and checks that the durable consumer the bridge made is
 * there. Everything happens in the daemon's loop. While slots are free the node asks the
 * consumer for that many messages (a pull request, answered in its own inbox); the inbox is a
 * subscription that lives as long as the node, so a message the server sends as a request
 * expires still arrives, and is taken or handed back at once, never left to come back only
 * after AckWait (libnats's Fetch drops such a message). Acks go to the message's reply subject
 * as JetStream's protocol has them (+ACK, +WPI, -NAK, +TERM). For each message the node asks the
 * bridge whether this delivery may run (taskmill.start): a message the bridge no longer holds is
 * acked away, an older delivery is left alone. An accepted task gets a folder of its own,
 * ROOT/node/in_progress/<id>/ (the id is checked to be a UUID; the server's file names are checked
 * as it checks them), and a runner process (node_job.c). While it runs the node sends in-progress
 * acks every third of the consumer's AckWait and reports its slots every second. When the runner
 * ends the verdict goes to the bridge (taskmill.finish) and only an accepted verdict acks the
 * message; a refused one is dropped. SIGTERM stops the runners and hands their messages back at
 * once (nak). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../client/client.h"
#include "../convert/convert.h"
#include "node.h"
#include "taskmill/clock.h"
#include "taskmill/daemon.h"
#include "taskmill/files.h"
#include "taskmill/jobdir.h"
#include "taskmill/log.h"
#include "taskmill/natslink.h"
#include "taskmill/tasktype.h"

#define FINISH_GIVE_UP_S 600 /* a verdict the bridge never answered is dropped after this */
/* A pull request waits this long on the server; its end may be lost for PULL_LOST_NS more. */
#define PULL_EXPIRES_NS (2 * INT64_C(1000000000))
#define PULL_LOST_NS    (3 * INT64_C(1000000000))
#define PULL_SUBJECT    "$JS.API.CONSUMER.MSG.NEXT." NATS_STREAM "." NATS_CONSUMER

typedef struct Slot {
    pid_t pid;    /* the runner, 0 when none */
    natsMsg *msg; /* the task's message: acked, naked or dropped at the end */
    char id[TASK_ID_LEN + 1], type[72];
    uint64_t seq;
    int64_t delivery;
    int64_t started_ns, acked_ns;
    bool cancelled; /* the task was deleted: no verdict, no ack */
    json_t *finish; /* a verdict the bridge has not answered yet */
    int64_t finish_since_ns;
} Slot;

/* A pull request: its messages come to INBOX.<id>, and a status message (no messages, expired)
 * ends it. */
typedef struct Ask {
    uint64_t id;
    int left;           /* messages it may still bring; 0: ended */
    int64_t expires_ns; /* when the server ends it */
} Ask;

typedef struct Node {
    Daemon *daemon;
    const Conf *conf;
    int work_fd; /* ROOT/node */
    NatsLink *nats;
    bool bound;     /* the consumer is there and the inbox subscribed */
    char inbox[96]; /* pull requests' replies: INBOX.<ask id> */
    int64_t ack_wait_ns;
    Slot *slots;
    Ask *asks; /* n_slots of them: each live one asks for at least one message */
    uint64_t last_ask;
    int n_slots;
    char host[64], name[64];
} Node;

static Node node;

static bool slot_busy(const Slot *s)
{
    return s->pid > 0 || s->finish;
}

static int busy_count(const Node *n)
{
    int k = 0;

    for (int i = 0; i < n->n_slots; i++)
        k += slot_busy(&n->slots[i]);
    return k;
}

/* --- acks: JetStream's protocol on the message's reply subject ----------------------------------
 */

static bool js_ack(Node *n, natsMsg *m, const char *kind)
{
    if (natsConnection_PublishString(natslink_conn(n->nats), natsMsg_GetReply(m), kind) == NATS_OK)
        return true;
    log_warning("cannot send %s for a message: NATS is away", kind);
    return false;
}

/* +ACK, confirmed by the server (it answers an ack that has a reply subject). */
static void js_ack_sync(Node *n, natsMsg *m)
{
    natsMsg *reply = NULL;

    if (natsConnection_RequestString(&reply, natslink_conn(n->nats), natsMsg_GetReply(m), "+ACK",
                                     5000) != NATS_OK)
        log_warning("an ack was not confirmed: NATS is away");
    natsMsg_Destroy(reply);
}

/* --- pulling -------------------------------------------------------------------------------------
 */

static int asked(const Node *n)
{
    int k = 0;

    for (int i = 0; i < n->n_slots; i++)
        k += n->asks[i].left;
    return k;
}

/* Asks for as many messages as slots are free and not yet asked for. */
static void pull_more(Node *n)
{
    int busy = 0, want;
    char reply[128], body[96];
    Ask *a = NULL;

    for (int i = 0; i < n->n_slots; i++) {
        busy += slot_busy(&n->slots[i]);
        if (!n->asks[i].left && !a)
            a = &n->asks[i];
    }
    want = n->n_slots - busy - asked(n);
    if (!n->bound || !a || want <= 0 || daemon_stopping(n->daemon) || !natslink_up(n->nats))
        return;
    *a = (Ask){.id = ++n->last_ask, .left = want, .expires_ns = now_ns() + PULL_EXPIRES_NS};
    snprintf(reply, sizeof(reply), "%s.%" PRIu64, n->inbox, a->id);
    snprintf(body, sizeof(body), "{\"batch\":%d,\"expires\":%" PRId64 "}", want, PULL_EXPIRES_NS);
    if (natsConnection_PublishRequestString(natslink_conn(n->nats), PULL_SUBJECT, reply, body) !=
        NATS_OK)
        a->left = 0;
}

/* The ask a status came for (its subject is INBOX.<id>), or NULL for one that ended. A task
 * comes with its own subject: it is counted against the oldest ask, which the server serves
 * first. */
static Ask *ask_of(Node *n, natsMsg *m, bool task)
{
    const char *subject = natsMsg_GetSubject(m), *dot = strrchr(subject, '.');
    uint64_t id = dot && !task ? strtoull(dot + 1, NULL, 10) : 0;
    Ask *oldest = NULL;

    for (int i = 0; i < n->n_slots; i++) {
        Ask *a = &n->asks[i];
        if (a->left && !task && a->id == id)
            return a;
        if (a->left && task && (!oldest || a->id < oldest->id))
            oldest = a;
    }
    return oldest;
}

/* Asks whose end never came (NATS went away meanwhile) are over. */
static void asks_expire(Node *n)
{
    int64_t now = now_ns();

    for (int i = 0; i < n->n_slots; i++)
        if (n->asks[i].left && now > n->asks[i].expires_ns + PULL_LOST_NS)
            n->asks[i].left = 0;
}

/* Checks that the bridge's consumer is there and subscribes the inbox, once. */
static void pull_setup(Node *n)
{
    jsConsumerInfo *ci = NULL;
    jsErrCode code = 0;
    char subject[128], err[256];

    if (n->bound || !natslink_up(n->nats))
        return;
    if (js_GetConsumerInfo(&ci, natslink_js(n->nats), NATS_STREAM, NATS_CONSUMER, NULL, &code) !=
        NATS_OK) {
        log_notice("the stream %s is not there yet (error %d); is taskmill-cluster running?",
                   NATS_STREAM, (int)code);
        return;
    }
    n->ack_wait_ns = ci->Config ? ci->Config->AckWait : 0;
    jsConsumerInfo_Destroy(ci);
    if (n->ack_wait_ns <= 0)
        n->ack_wait_ns = 30 * INT64_C(1000000000);
    snprintf(subject, sizeof(subject), "%s.*", n->inbox);
    if (natslink_subscribe(n->nats, subject, err, sizeof(err)) < 0) {
        log_warning("%s", err);
        return;
    }
    n->bound = true;
    log_info("taking tasks from %s with %d slots (ack_wait %" PRId64 " s)", NATS_STREAM, n->n_slots,
             n->ack_wait_ns / 1000000000);
    pull_more(n);
}

/* --- slots ---------------------------------------------------------------------------------------
 */

static int slot_dir(Node *n, const Slot *s)
{
    int fd;

    return jobdir_open(n->work_fd, STAGE_IN_PROGRESS, s->id, &fd) == 0 ? fd : -1;
}

static json_t *slot_json(Node *n, int i)
{
    Slot *s = &n->slots[i];
    json_t *progress = NULL;
    char since[40], *text = NULL;
    size_t len;
    uint64_t rss = 0;
    double cpu = 0;
    pid_t conv = 0;
    int fd;

    if (!slot_busy(s))
        return json_pack("{s:i, s:s, s:n, s:n, s:n, s:n, s:n}", "slot", i, "state", "idle", "pid",
                         "task_id", "task_type", "since", "progress");
    if ((fd = slot_dir(n, s)) >= 0) {
        json_read_at(fd, "progress.json", &progress);
        if (file_read_all(fd, ".converter.pid", 32, &text, &len) == 0)
            conv = atoi(text);
        free(text);
        close(fd);
    }
    if (conv > 0 && s->pid > 0)
        child_usage(conv, &cpu, &rss);
    format_time(s->started_ns, since, sizeof(since));
    return json_pack("{s:i, s:s, s:i, s:s, s:s, s:s, s:f, s:I, s:f, s:I, s:O*, s:O*, s:o}", "slot",
                     i, "state", "busy", "pid", (int)(conv > 0 ? conv : s->pid), "task_id", s->id,
                     "task_type", s->type, "since", since, "progress",
                     json_number_value(json_object_get(progress, "percent")), "rss_bytes",
                     (json_int_t)rss, "cpu_seconds", cpu, "delivery", (json_int_t)s->delivery,
                     "fps", json_object_get(progress, "fps"), "eta_seconds",
                     json_object_get(progress, "eta_seconds"), "progress_detail",
                     progress ? progress : json_null());
}

static void report(Node *n)
{
    json_t *slots = json_array();

    for (int i = 0; i < n->n_slots; i++)
        json_array_append_new(slots, slot_json(n, i));
    natslink_publish(
        n->nats, NATS_REPORT,
        json_pack("{s:s, s:s, s:o}", "host", n->host, "node", n->name, "slots", slots));
    daemon_status(n->daemon, "%d working, %d idle%s", busy_count(n), n->n_slots - busy_count(n),
                  natslink_up(n->nats) ? "" : ", NATS unreachable");
}

/* The slot is free again: its folder goes, its message is let go. */
static void slot_clear(Node *n, Slot *s)
{
    char path[64];

    snprintf(path, sizeof(path), "in_progress/%s", s->id);
    if (s->id[0])
        rm_rf_at(n->work_fd, path);
    natsMsg_Destroy(s->msg);
    json_decref(s->finish);
    *s = (Slot){0};
    pull_more(n);
}

/* --- a new message -------------------------------------------------------------------------------
 */

/* x265 threads: [convert] threads when set; the cores shared by the slots otherwise. */
static int job_threads(const Node *n)
{
    int cpus = conf_cpus();

    if (n->conf->threads > 0)
        return n->conf->threads;
    return n->n_slots <= 1 ? 0 : cpus / n->n_slots > 1 ? cpus / n->n_slots : 1;
}

/* The task's folder with its request.json, checked as the server checks its own. */
static int make_folder(Node *n, const char *id, json_t *request, char *err, size_t errlen)
{
    char path[64];
    Task t;
    int fd, r;

    if ((r = task_from_request_json(request, &t, err, errlen)) < 0)
        return r;
    if (strcmp(t.id, id)) {
        snprintf(err, errlen, "the request is for another task");
        task_free(&t);
        return -EINVAL;
    }
    snprintf(path, sizeof(path), "in_progress/%s", id);
    rm_rf_at(n->work_fd, path);
    if (mkdirat(n->work_fd, path, 0750) < 0 ||
        (fd = openat(n->work_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        snprintf(err, errlen, "cannot make %s: %s", path, strerror(errno));
        task_free(&t);
        return -errno;
    }
    r = task_save(fd, &t);
    close(fd);
    task_free(&t);
    if (r < 0)
        snprintf(err, errlen, "cannot write request.json: %s", strerror(-r));
    return r;
}

/* May this delivery run? 1 yes, 0 no (the message was dealt with), -1 no answer. */
static int ask_start(Node *n, Slot *s, int slot)
{
    json_t *a = natslink_request(n->nats, NATS_START,
                                 json_pack("{s:s, s:I, s:I, s:s, s:s, s:i}", "id", s->id, "seq",
                                           (json_int_t)s->seq, "delivery", (json_int_t)s->delivery,
                                           "node", n->name, "host", n->host, "slot", slot),
                                 5000);
    const char *reason = json_string_value(json_object_get(a, "reason"));
    int r = !a ? -1 : json_is_true(json_object_get(a, "ok")) ? 1 : 0;

    if (r == 0 && reason && !strcmp(reason, "not_held")) {
        /* a task the server no longer holds (finished, deleted, taken back): clear it away */
        log_task(LOG_INFO, s->id, "dropped: the server no longer holds this task");
        js_ack_sync(n, s->msg);
    } else if (r == 0) {
        log_task(LOG_INFO, s->id, "not started: delivery %" PRId64 " is %s", s->delivery,
                 reason ? reason : "refused");
    }
    json_decref(a);
    return r;
}

static void send_verdict(Node *n, Slot *s, const char *outcome, json_t *result, json_t *error,
                         json_t *attempt);

static void take_work(Node *n, natsMsg *m)
{
    jsMsgMetaData *meta = NULL;
    json_t *j = natslink_json(m), *input, *request;
    const char *id = json_string_value(json_object_get(j, "id"));
    const TaskType *tt;
    char err[256];
    Slot *s = NULL;
    int slot = 0, r;

    for (int i = 0; i < n->n_slots && !s; i++)
        if (!slot_busy(&n->slots[i]))
            s = &n->slots[slot = i];
    if (!s || daemon_stopping(n->daemon)) {
        log_notice("handed a task back at once (%s)", s ? "stopping" : "no free slot");
        js_ack(n, m, "-NAK"); /* another node may take it */
        natsMsg_Destroy(m);
        json_decref(j);
        return;
    }
    if (!j || !id || !task_id_valid(id) || natsMsg_GetMetaData(&meta, m) != NATS_OK) {
        log_warning("a message in the stream is not a task; dropping it");
        js_ack(n, m, "+TERM");
        natsMsg_Destroy(m);
        json_decref(j);
        return;
    }
    *s = (Slot){.msg = m,
                .seq = meta->Sequence.Stream,
                .delivery = (int64_t)meta->NumDelivered,
                .started_ns = now_ns()};
    s->acked_ns = s->started_ns;
    jsMsgMetaData_Destroy(meta);
    snprintf(s->id, sizeof(s->id), "%s", id);
    request = json_object_get(j, "request");
    input = json_object_get(j, "input");
    snprintf(s->type, sizeof(s->type), "%s",
             json_string_value(json_object_get(request, "task_type")) ?: "");
    if ((r = ask_start(n, s, slot)) <= 0) {
        if (r < 0) {
            log_task(LOG_NOTICE, id,
                     "the bridge did not answer the start of delivery %" PRId64 "; handing it back",
                     s->delivery);
            js_ack(n, m, "-NAK"); /* let it come again, here or elsewhere */
        }
        s->id[0] = '\0';
        slot_clear(n, s);
        json_decref(j);
        return;
    }
    log_task(LOG_INFO, id, "took delivery=%" PRId64 " type=%s", s->delivery, s->type);
    tt = tasktype_find(n->conf, s->type);
    err[0] = '\0';
    if (!tt || tt->kind != &kind_video)
        snprintf(err, sizeof(err), "task type '%s' is not a video type this node runs", s->type);
    else if (make_folder(n, id, request, err, sizeof(err)) == 0 && (s->pid = fork()) == 0)
        _exit(node_job_run(n->conf, n->work_fd, id, s->delivery,
                           json_string_value(json_object_get(input, "sha256")),
                           (uint64_t)json_integer_value(json_object_get(input, "size")),
                           job_threads(n)));
    if (s->pid < 0 || err[0]) {
        s->pid = 0;
        log_task(LOG_WARNING, id, "cannot run it here: %s", err[0] ? err : strerror(errno));
        send_verdict(n, s, "failed", NULL,
                     json_pack("{s:s, s:s}", "code", tt ? "node_error" : "unknown_task_type",
                               "message", err[0] ? err : "the node cannot start a process"),
                     json_pack("{s:i, s:i, s:s}", "slot", slot, "pid", 0, "host", n->host));
    }
    json_decref(j);
}

static void on_cancel(Node *n, natsMsg *m)
{
    json_t *j = natslink_json(m);
    const char *id = json_string_value(json_object_get(j, "id"));

    for (int i = 0; id && i < n->n_slots; i++) {
        Slot *s = &n->slots[i];
        if (!slot_busy(s) || strcmp(s->id, id))
            continue;
        log_task(LOG_INFO, id, "stopping: the server took the task back");
        s->cancelled = true;
        if (s->pid > 0)
            kill(s->pid, SIGTERM);
        else
            slot_clear(n, s);
    }
    json_decref(j);
}

static int on_nats(Daemon *d, int fd, uint32_t events, void *userdata)
{
    Node *n = userdata;
    char why[256];
    natsMsg *m;

    (void)fd, (void)events;
    if (natslink_gave_up(n->nats, why, sizeof(why))) {
        log_err("NATS closed the connection for good (%s); exiting", why);
        daemon_quit(d, EXIT_FAILURE);
        return 0;
    }
    while ((m = natslink_next(n->nats))) {
        const char *reply = natsMsg_GetReply(m);
        bool task = reply && !strncmp(reply, "$JS.ACK.", 8);
        Ask *a = ask_of(n, m, task);
        if (!strcmp(natsMsg_GetSubject(m), NATS_CANCEL)) {
            on_cancel(n, m);
            natsMsg_Destroy(m);
        } else if (task) {
            if (a)
                a->left--;
            take_work(n, m); /* owns m */
        } else { /* a status without a reply subject: the ask ended (expired, no messages) */
            if (a)
                a->left = 0;
            natsMsg_Destroy(m);
        }
    }
    pull_more(n);
    return 0;
}

/* --- verdicts ------------------------------------------------------------------------------------
 */

/* Sends the slot's verdict to the bridge; an accepted one acks the message. 1 settled (the
 * slot may clear), 0 no answer yet (try again later). */
static int finish_try(Node *n, Slot *s)
{
    json_t *a = natslink_request(n->nats, NATS_FINISH, json_incref(s->finish), 5000);
    const char *reason = json_string_value(json_object_get(a, "reason"));

    if (!a)
        return now_ns() - s->finish_since_ns > (int64_t)FINISH_GIVE_UP_S * 1000000000 ? 1 : 0;
    if (json_is_true(json_object_get(a, "ok")))
        js_ack_sync(n, s->msg);
    else
        log_task(LOG_NOTICE, s->id,
                 "discarded: the server refused the result of delivery %" PRId64 " (%s)",
                 s->delivery, reason ? reason : "?");
    json_decref(a);
    return 1;
}

static void send_verdict(Node *n, Slot *s, const char *outcome, json_t *result, json_t *error,
                         json_t *attempt)
{
    s->finish = json_pack("{s:s, s:I, s:I, s:s, s:o, s:o?, s:o?}", "id", s->id, "seq",
                          (json_int_t)s->seq, "delivery", (json_int_t)s->delivery, "outcome",
                          outcome, "attempt", attempt, "result", result, "error", error);
    s->finish_since_ns = now_ns();
    if (finish_try(n, s))
        slot_clear(n, s);
}

/* A runner ended: the verdict from its exit status and the files it left. */
static void runner_ended(Node *n, Slot *s, int slot, int status, const struct rusage *ru)
{
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    json_t *result = NULL, *error = NULL;
    const char *outcome;
    int fd = slot_dir(n, s);

    if (s->cancelled || code == JOB_EXIT_INTERRUPTED || code == NODE_EXIT_STALE) {
        if (code == NODE_EXIT_STALE)
            log_task(LOG_NOTICE, s->id, "discarded: delivery %" PRId64 " no longer runs the task",
                     s->delivery);
        else if (!s->cancelled)
            js_ack(n, s->msg, "-NAK"); /* stopped here: another node may take it at once */
        if (fd >= 0)
            close(fd);
        slot_clear(n, s);
        return;
    }
    outcome = code == JOB_EXIT_DONE     ? "done"
              : code == JOB_EXIT_FAILED ? "failed"
              : code == JOB_EXIT_RETRY  ? "retry"
                                        : "crashed";
    if (fd >= 0)
        json_read_at(fd, code == JOB_EXIT_DONE ? "result.json" : "error.json",
                     code == JOB_EXIT_DONE ? &result : &error);
    if (fd >= 0)
        close(fd);
    if (!strcmp(outcome, "crashed") && !error)
        error = json_pack("{s:s, s:s}", "code", "worker_crashed", "message",
                          "the node's runner process died");
    log_task(LOG_INFO, s->id, "finished outcome=%s", outcome);
    s->pid = 0;
    send_verdict(n, s, outcome, result, error,
                 attempt_figures(n->host, slot, s->pid, s->type, s->started_ns, ru));
}

static void on_child(Daemon *d)
{
    Node *n = daemon_userdata(d);
    struct rusage ru;
    int status;
    pid_t pid;

    while ((pid = wait4(-1, &status, WNOHANG, &ru)) > 0)
        for (int i = 0; i < n->n_slots; i++)
            if (n->slots[i].pid == pid)
                runner_ended(n, &n->slots[i], i, status, &ru);
    if (daemon_stopping(d) && busy_count(n) == 0 && asked(n) == 0)
        daemon_quit(d, EXIT_SUCCESS);
}

/* --- the loop ------------------------------------------------------------------------------------
 */

static void on_tick(Daemon *d)
{
    Node *n = daemon_userdata(d);
    int64_t now = now_ns();

    pull_setup(n);
    for (int i = 0; i < n->n_slots; i++) {
        Slot *s = &n->slots[i];
        if (!slot_busy(s) || !s->msg)
            continue;
        if (now - s->acked_ns >= n->ack_wait_ns / 3 && js_ack(n, s->msg, "+WPI"))
            s->acked_ns = now;
        if (s->finish && s->pid == 0 && finish_try(n, s))
            slot_clear(n, s);
    }
    asks_expire(n); /* after a NATS restart too: the server forgot them; a reconnection to a
                       server still up keeps them, and their tasks come to the same inbox */
    pull_more(n);
    report(n);
    if (daemon_stopping(d) && busy_count(n) == 0 && asked(n) == 0)
        daemon_quit(d, EXIT_SUCCESS);
}

static int node_stop(Daemon *d)
{
    Node *n = daemon_userdata(d);

    for (int i = 0; i < n->n_slots; i++) {
        Slot *s = &n->slots[i];
        if (s->pid > 0)
            kill(s->pid, SIGTERM);
        else if (s->finish && !finish_try(n, s))
            log_task(LOG_WARNING, s->id,
                     "the bridge never answered; the verdict is lost and "
                     "the task will run again");
        if (s->finish && s->pid == 0)
            slot_clear(n, s);
    }
    return busy_count(n) > 0 || asked(n) > 0; /* an ask's late task is handed back (nak) */
}

/* Who the token is, from the server: the name node.json will carry. */
static int whoami(Node *n)
{
    char url[1024];
    long status = 0;
    json_t *j = NULL;
    Api *h = NULL;
    bool ok;
    int r;

    snprintf(url, sizeof(url), "%s/v1/node", n->conf->node_server);
    if ((r = api_new(&h)) < 0 || (r = api_set_token(h, n->conf->node_token)) < 0) {
        api_free(h);
        return r;
    }
    r = api_get_json(h, url, &status, &j);
    if (r < 0)
        log_err("cannot reach the server at %s: %s", n->conf->node_server, api_strerror(h));
    else if (status != 200 || !json_is_string(json_object_get(j, "name")))
        log_err("the server refused the node token (HTTP %ld %s): it must be a token of role "
                "node in the server's tokens file",
                status, json_string_value(json_object_get(j, "code")) ?: "");
    else /* "" from a server without tokens (loopback only), where every request may all */
        snprintf(n->name, sizeof(n->name), "%s", json_string_value(json_object_get(j, "name")));
    ok = r == 0 && status == 200 && json_is_string(json_object_get(j, "name"));
    json_decref(j);
    api_free(h);
    return r < 0 ? r : ok ? 0 : -EACCES;
}

static int open_work_dir(Node *n)
{
    char path[4096];
    int r;

    snprintf(path, sizeof(path), "%s/node/in_progress", n->conf->root);
    if ((r = mkdir_p(path, 0750)) < 0)
        return r;
    snprintf(path, sizeof(path), "%s/node", n->conf->root);
    n->work_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (n->work_fd < 0)
        return -errno;
    /* What a killed node left: those deliveries are redelivered by JetStream anyway. */
    rm_rf_at(n->work_fd, "in_progress");
    return mkdirat(n->work_fd, "in_progress", 0750) < 0 ? -errno : 0;
}

static int node_init(Daemon *d, const Conf *c)
{
    Node *n = &node;
    char err[512];
    int r;

    natsInbox *inbox = NULL;

    *n = (Node){.daemon = d, .conf = c, .work_fd = -1};
    daemon_set_userdata(d, n);
    if (!c->node_server || !c->node_token || !c->nats_url) {
        log_err("%s needs [node] server, token and nats_url", c->path ? c->path : "the config");
        return -ECANCELED;
    }
    n->n_slots = c->node_workers > 0 ? c->node_workers : conf_cpus();
    if (c->node_host)
        snprintf(n->host, sizeof(n->host), "%s", c->node_host);
    else if (gethostname(n->host, sizeof(n->host)) < 0)
        snprintf(n->host, sizeof(n->host), "node");
    if (!(n->slots = calloc((size_t)n->n_slots, sizeof(*n->slots))) ||
        !(n->asks = calloc((size_t)n->n_slots, sizeof(*n->asks))) ||
        natsInbox_Create(&inbox) != NATS_OK)
        return -ENOMEM;
    snprintf(n->inbox, sizeof(n->inbox), "%s", (const char *)inbox);
    natsInbox_Destroy(inbox);
    if ((r = open_work_dir(n)) < 0) {
        log_err("cannot use %s/node: %s", c->root, strerror(-r));
        return -ECANCELED;
    }
    if (whoami(n) < 0)
        return -ECANCELED;
    if (natslink_open(c, n->host, &n->nats, err, sizeof(err)) < 0 ||
        natslink_subscribe(n->nats, NATS_CANCEL, err, sizeof(err)) < 0 ||
        daemon_watch(d, natslink_fd(n->nats), EPOLLIN, on_nats, n) < 0) {
        log_err("%s", err);
        return -ECANCELED;
    }
    log_info("node %s (token %s) with %d slots for %s", n->host, n->name, n->n_slots,
             c->node_server);
    pull_setup(n);
    return 0;
}

static void node_shutdown(Daemon *d)
{
    Node *n = daemon_userdata(d);

    for (int i = 0; i < n->n_slots; i++)
        natsMsg_Destroy(n->slots[i].msg);
    natslink_close(n->nats);
    free(n->slots);
    free(n->asks);
    if (n->work_fd >= 0)
        close(n->work_fd);
}

int main(int argc, char **argv)
{
    static const DaemonSpec spec = {
        .name = "node",
        .summary = "A conversion node: takes video tasks from a taskmill server through NATS "
                   "JetStream.",
        .init = node_init,
        .stop = node_stop,
        .shutdown = node_shutdown,
        .on_child = on_child,
        .on_tick = on_tick,
        .reload_types = true,
    };
    return daemon_main(argc, argv, &spec);
}
