/* queue_sched.c - the queue's state machine: which job moves where, and who works on what.
 *
 * request -> pending (sched_submit), pending -> in_progress (sched_dispatch, when a converter
 * has claimed work), in_progress -> done|failed (sched_finish) or back to pending (sched_release,
 * an interruption; or a crash within the attempt limit). Pending jobs are handed out by
 * priority (higher first), then creation time, then id: FIFO within a priority. Every move goes
 * through jobdir_move; a move that fails is logged and leaves the job where it was. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "queue.h"
#include "taskmill/ipc.h"
#include "taskmill/log.h"

static int pending_add(Queue *q, const char *id, int priority, int64_t created_ns)
{
    if (q->n_pending == q->cap_pending) {
        size_t cap = q->cap_pending ? q->cap_pending * 2 : 64;
        Pending *p = realloc(q->pending, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        q->pending = p;
        q->cap_pending = cap;
    }
    Pending *e = &q->pending[q->n_pending++];
    memcpy(e->id, id, sizeof(e->id));
    e->priority = priority;
    e->created_ns = created_ns;
    return 0;
}

static bool pending_before(const Pending *a, const Pending *b)
{
    if (a->priority != b->priority)
        return a->priority > b->priority;
    if (a->created_ns != b->created_ns)
        return a->created_ns < b->created_ns;
    return strcmp(a->id, b->id) < 0;
}

/* A linear scan: a claim costs O(pending), microseconds for a hundred thousand jobs, and the
 * order stays obviously right. */
static ssize_t pending_best(const Queue *q)
{
    ssize_t best = -1;

    for (size_t i = 0; i < q->n_pending; i++)
        if (best < 0 || pending_before(&q->pending[i], &q->pending[best]))
            best = (ssize_t)i;
    return best;
}

static void pending_del(Queue *q, size_t i)
{
    q->pending[i] = q->pending[--q->n_pending];
}

static ssize_t pending_find(const Queue *q, const char *id)
{
    for (size_t i = 0; i < q->n_pending; i++)
        if (!strcmp(q->pending[i].id, id))
            return (ssize_t)i;
    return -1;
}

static Running *running_find(Queue *q, const char *id)
{
    for (Running *r = q->running; r; r = r->next)
        if (!strcmp(r->id, id))
            return r;
    return NULL;
}

static void running_del(Queue *q, Running *victim)
{
    for (Running **pp = &q->running; *pp; pp = &(*pp)->next)
        if (*pp == victim) {
            *pp = victim->next;
            free(victim);
            return;
        }
}

unsigned sched_working(const Queue *q)
{
    unsigned n = 0;

    for (Running *r = q->running; r; r = r->next)
        n++;
    return n;
}

unsigned sched_max_workers(const Queue *q)
{
    unsigned n = 0;

    for (Peer *p = q->peers; p; p = p->next)
        if (p->role == PEER_CONVERT)
            n += (unsigned)p->workers;
    return n;
}

void sched_update_status(Queue *q)
{
    daemon_status(q->daemon, "%u working, %zu pending, %u done, %u failed", sched_working(q),
                  q->n_pending, q->n_done, q->n_failed);
}

/* Reads priority and creation time of a job and puts it on the pending list. */
static int pending_load(Queue *q, const char *id)
{
    char err[256];
    Task t;
    int fd, r = jobdir_open(q->data_fd, STAGE_PENDING, id, &fd);

    if (r < 0)
        return r;
    r = task_load(fd, &t, err, sizeof(err));
    close(fd);
    if (r < 0) {
        log_task(LOG_ERR, id, "unreadable, moved to corrupt/: %s", err);
        return jobdir_move(q->data_fd, id, STAGE_PENDING, STAGE_CORRUPT);
    }
    r = pending_add(q, id, t.priority, t.created_ns);
    task_free(&t);
    return r;
}

/* Clears what an attempt left behind and moves the job back to pending. */
static int job_requeue(Queue *q, const char *id, Stage from)
{
    int fd, r = jobdir_open(q->data_fd, from, id, &fd);

    if (r < 0)
        return r;
    r = jobdir_reset(fd);
    close(fd);
    if (r < 0)
        return r;
    r = jobdir_move(q->data_fd, id, from, STAGE_PENDING);
    if (r < 0)
        return r;
    return pending_load(q, id);
}

static int scan_pending(const char *id, void *userdata)
{
    int r = pending_load(userdata, id);

    if (r < 0)
        log_task(LOG_ERR, id, "cannot queue: %s", strerror(-r));
    return 0;
}

static void on_recover(const char *name, Stage from, Stage to, int error, void *userdata)
{
    (void)userdata;
    if (error < 0)
        log_task(LOG_ERR, name, "recovery of %s/ failed: %s", stage_dir(from), strerror(-error));
    else
        log_task(LOG_NOTICE, name, "recovered from=%s to=%s", stage_dir(from), stage_dir(to));
}

static int count_one(const char *id, void *userdata)
{
    (void)id;
    (*(unsigned *)userdata)++;
    return 0;
}

int sched_scan(Queue *q)
{
    int r;

    /* Nobody works on anything before the queue starts: whatever is in in_progress/ was
     * interrupted, and whatever complete upload sits in request/ was never announced. */
    if ((r = jobdir_recover(q->data_fd, 0, on_recover, q, NULL)) < 0 ||
        (r = jobdir_each(q->data_fd, STAGE_PENDING, scan_pending, q)) < 0 ||
        (r = jobdir_each(q->data_fd, STAGE_DONE, count_one, &q->n_done)) < 0 ||
        (r = jobdir_each(q->data_fd, STAGE_FAILED, count_one, &q->n_failed)) < 0)
        return r;
    log_info("queue rebuilt from disk: %zu pending, %u done, %u failed", q->n_pending, q->n_done,
             q->n_failed);
    return 0;
}

int sched_submit(Queue *q, const char *id, char *err, size_t errlen)
{
    int fd, r = jobdir_open(q->data_fd, STAGE_REQUEST, id, &fd);
    Stage s;

    if (r == -ENOENT && jobdir_find(q->data_fd, id, &s) == 0)
        return 0; /* already taken in (by the start-up scan): nothing to do */
    if (r < 0) {
        snprintf(err, errlen, "not in request/: %s", strerror(-r));
        return r;
    }
    /* request.json is written last by rest: without it the upload is not complete. */
    r = faccessat(fd, "request.json", F_OK, 0) < 0 ? -errno : 0;
    close(fd);
    if (r < 0) {
        snprintf(err, errlen, "upload not complete");
        return r;
    }
    r = jobdir_move(q->data_fd, id, STAGE_REQUEST, STAGE_PENDING);
    if (r == 0)
        r = pending_load(q, id);
    if (r < 0) {
        snprintf(err, errlen, "cannot move to pending: %s", strerror(-r));
        return r;
    }
    log_task(LOG_INFO, id, "moved from=request to=pending");
    sched_dispatch(q);
    return 0;
}

/* claim.json counts a job's attempts and, apart from them, its interruptions; started_ns is
 * when the current attempt began. One reader-writer for all changes to it. */
static int claim_update(Queue *q, Stage s, const char *id, json_int_t d_attempts,
                        json_int_t d_interruptions, bool start, json_int_t *ret_attempts)
{
    json_t *old = NULL, *claim;
    json_int_t a = 0, i = 0, started = 0;
    int fd, r = jobdir_open(q->data_fd, s, id, &fd);

    if (r < 0)
        return r;
    if (json_read_at(fd, "claim.json", &old) == 0)
        json_unpack(old, "{s?I, s?I, s?I}", "attempts", &a, "interruptions", &i, "started_ns",
                    &started);
    json_decref(old);
    a += d_attempts;
    i += d_interruptions;
    if (start) {
        jobdir_reset(fd); /* a new attempt starts from nothing */
        started = now_ns();
    }
    if (d_attempts || d_interruptions || start) {
        claim =
            json_pack("{s:I, s:I, s:I}", "attempts", a, "interruptions", i, "started_ns", started);
        r = json_write_at(fd, "claim.json", claim);
        json_decref(claim);
    }
    close(fd);
    if (ret_attempts)
        *ret_attempts = a;
    return r;
}

static bool dispatch_one(Queue *q)
{
    Claim *c = q->claims;
    ssize_t best = pending_best(q);
    Pending job;
    Running *run;
    int r;

    if (!c || best < 0)
        return false;
    job = q->pending[best];
    pending_del(q, (size_t)best);
    r = jobdir_move(q->data_fd, job.id, STAGE_PENDING, STAGE_IN_PROGRESS);
    if (r == 0)
        r = claim_update(q, STAGE_IN_PROGRESS, job.id, 1, 0, true, NULL);
    if (r < 0) {
        log_task(LOG_ERR, job.id, "cannot start: %s", strerror(-r));
        return true;
    }
    run = calloc(1, sizeof(*run));
    memcpy(run->id, job.id, sizeof(run->id));
    run->peer = c->peer;
    run->next = q->running;
    q->running = run;
    q->claims = c->next;
    if (!q->claims)
        q->claims_tail = &q->claims;
    ipc_send_new(c->peer->fd, ipc_msg("work.assign", c->rid, json_pack("{s:s}", "id", job.id)));
    log_task(LOG_INFO, job.id, "moved from=pending to=in_progress worker=%d priority=%d",
             c->peer->fd, job.priority);
    free(c);
    return true;
}

void sched_dispatch(Queue *q)
{
    while (dispatch_one(q))
        ;
    sched_update_status(q);
}

int sched_claim(Queue *q, Peer *p, int64_t rid)
{
    Claim *c = calloc(1, sizeof(*c));

    if (!c)
        return -ENOMEM;
    c->peer = p;
    c->rid = rid;
    *q->claims_tail = c;
    q->claims_tail = &c->next;
    sched_dispatch(q);
    return 0;
}

/* The input goes once the verified output is in done/ (unless [convert] keep_input). */
static void drop_input(Queue *q, const char *id)
{
    char err[256];
    Task t;
    int fd;

    if (q->conf->keep_input || jobdir_open(q->data_fd, STAGE_DONE, id, &fd) < 0)
        return;
    if (task_load(fd, &t, err, sizeof(err)) == 0) {
        if (unlinkat(fd, t.input_name, 0) == 0)
            fsync(fd);
        task_free(&t);
    }
    close(fd);
}

static void finish_move(Queue *q, Running *run, Stage to)
{
    int r = jobdir_move(q->data_fd, run->id, STAGE_IN_PROGRESS, to);

    if (r < 0) {
        log_task(LOG_ERR, run->id, "cannot move to %s: %s", stage_dir(to), strerror(-r));
        return;
    }
    if (to == STAGE_DONE) {
        drop_input(q, run->id);
        q->n_done++;
    } else
        q->n_failed++;
    log_task(to == STAGE_DONE ? LOG_INFO : LOG_WARNING, run->id, "moved from=in_progress to=%s",
             stage_dir(to));
    proto_notify_finished(q, run->id, stage_state(to));
}

int sched_finish(Queue *q, Peer *p, const char *id, const char *outcome)
{
    Running *run = running_find(q, id);
    json_int_t attempts = 0;

    if (!run || run->peer != p)
        return -ENOENT;
    if (run->deleting) /* deleted while it ran: the result is not wanted */
        return sched_release(q, p, id);
    if (!strcmp(outcome, "done")) {
        finish_move(q, run, STAGE_DONE);
    } else if (!strcmp(outcome, "crashed") &&
               claim_update(q, STAGE_IN_PROGRESS, id, 0, 0, false, &attempts) == 0 &&
               attempts < q->conf->max_attempts) {
        log_task(LOG_WARNING, id, "worker crashed on attempt %lld of %d, retrying",
                 (long long)attempts, q->conf->max_attempts);
        job_requeue(q, id, STAGE_IN_PROGRESS);
    } else {
        finish_move(q, run, STAGE_FAILED);
    }
    running_del(q, run);
    sched_dispatch(q);
    return 0;
}

static void release_one(Queue *q, Running *run)
{
    int r;

    if (run->deleting) {
        r = jobdir_remove(q->data_fd, STAGE_IN_PROGRESS, run->id);
        log_task(LOG_INFO, run->id, "deleted while running%s", r < 0 ? " (removal failed)" : "");
        if (run->delete_peer)
            ipc_send_new(run->delete_peer->fd,
                         r < 0 ? ipc_msg("error", run->delete_rid,
                                         json_pack("{s:s, s:s}", "code", "io_error", "message",
                                                   strerror(-r)))
                               : ipc_msg("ok", run->delete_rid, NULL));
        return;
    }
    claim_update(q, STAGE_IN_PROGRESS, run->id, -1, 1, false, NULL);
    r = job_requeue(q, run->id, STAGE_IN_PROGRESS);
    log_task(r < 0 ? LOG_ERR : LOG_NOTICE, run->id, "interrupted, %s",
             r < 0 ? strerror(-r) : "moved from=in_progress to=pending");
}

int sched_release(Queue *q, Peer *p, const char *id)
{
    Running *run = running_find(q, id);

    if (!run || run->peer != p)
        return -ENOENT;
    release_one(q, run);
    running_del(q, run);
    sched_dispatch(q);
    return 0;
}

int sched_delete(Queue *q, Peer *p, int64_t rid, const char *id)
{
    Running *run = running_find(q, id);
    ssize_t i;
    Stage s;
    int r;

    if (run) {
        run->deleting = true;
        run->delete_peer = p;
        run->delete_rid = rid;
        ipc_send_new(run->peer->fd, ipc_msg("work.cancel", 0, json_pack("{s:s}", "id", id)));
        return 1;
    }
    r = jobdir_find(q->data_fd, id, &s);
    if (r < 0)
        return r;
    if ((i = pending_find(q, id)) >= 0)
        pending_del(q, (size_t)i);
    r = jobdir_remove(q->data_fd, s, id);
    if (r == 0 && s == STAGE_DONE)
        q->n_done--;
    else if (r == 0 && s == STAGE_FAILED)
        q->n_failed--;
    log_task(LOG_INFO, id, "deleted from=%s", stage_dir(s));
    sched_update_status(q);
    return r;
}

void sched_peer_gone(Queue *q, Peer *p)
{
    Claim **cp = &q->claims;

    while (*cp) {
        Claim *c = *cp;
        if (c->peer == p) {
            *cp = c->next;
            free(c);
        } else {
            cp = &c->next;
        }
    }
    q->claims_tail = &q->claims;
    while (*q->claims_tail)
        q->claims_tail = &(*q->claims_tail)->next;
    for (Running *run = q->running, *next; run; run = next) {
        next = run->next;
        if (run->delete_peer == p)
            run->delete_peer = NULL;
        if (run->peer != p)
            continue;
        release_one(q, run);
        running_del(q, run);
    }
    sched_dispatch(q);
}

/* When a finished job finished: finished_ns of result.json or error.json, else 0. */
static int64_t finished_at(Queue *q, Stage s, const char *id)
{
    json_t *j = NULL;
    int64_t ns = 0;
    int fd;

    if (jobdir_open(q->data_fd, s, id, &fd) < 0)
        return 0;
    if (json_read_at(fd, s == STAGE_DONE ? "result.json" : "error.json", &j) == 0)
        ns = json_integer_value(json_object_get(j, "finished_ns"));
    json_decref(j);
    close(fd);
    return ns;
}

typedef struct Expire {
    Queue *q;
    Stage stage;
    int64_t before_ns;
} Expire;

static int expire_one(const char *id, void *userdata)
{
    Expire *e = userdata;
    int64_t ns = finished_at(e->q, e->stage, id);

    if (ns <= 0 || ns >= e->before_ns || jobdir_remove(e->q->data_fd, e->stage, id) < 0)
        return 0;
    if (e->stage == STAGE_DONE)
        e->q->n_done--;
    else
        e->q->n_failed--;
    log_task(LOG_INFO, id, "expired from=%s after [queue] result_ttl", stage_dir(e->stage));
    return 0;
}

void sched_expire(Queue *q)
{
    Expire e = {.q = q, .before_ns = now_ns() - (int64_t)q->conf->result_ttl * 1000000000};

    if (q->conf->result_ttl == 0)
        return;
    for (e.stage = STAGE_DONE; e.stage <= STAGE_FAILED; e.stage++)
        jobdir_each(q->data_fd, e.stage, expire_one, &e);
    sched_update_status(q);
}
