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
#include "taskmill/claim.h"
#include "taskmill/clock.h"
#include "taskmill/files.h"
#include "taskmill/ipc.h"
#include "taskmill/log.h"
#include "taskmill/recover.h"

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

/* Drops the waiters of peer p from a list (all of them when p is NULL). */
static void waiters_drop(Waiter **list, Peer *p)
{
    while (*list) {
        Waiter *w = *list;
        if (p && w->peer != p) {
            list = &w->next;
            continue;
        }
        *list = w->next;
        free(w);
    }
}

static void running_del(Queue *q, Running *victim)
{
    for (Running **pp = &q->running; *pp; pp = &(*pp)->next)
        if (*pp == victim) {
            *pp = victim->next;
            waiters_drop(&victim->delete_waiters, NULL);
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
        if (p->role == IPC_ROLE_CONVERT)
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
    if ((r = recover_run(q->data_fd, 0, on_recover, q, NULL)) < 0 ||
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

/* Opens the running job and applies fn (claim_begin/claim_end/claim_interrupt) to it. */
static int claim_apply(Queue *q, const char *id, int (*fn)(int job_fd))
{
    int fd, r = jobdir_open(q->data_fd, STAGE_IN_PROGRESS, id, &fd);

    if (r < 0)
        return r;
    r = fn(fd);
    close(fd);
    return r;
}

static int claim_begin(int job_fd)
{
    return claim_start(job_fd, NULL);
}

static bool dispatch_one(Queue *q)
{
    Waiter *c = q->claims;
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
        r = claim_apply(q, job.id, claim_begin);
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
    Waiter *c = calloc(1, sizeof(*c));

    if (!c)
        return -ENOMEM;
    c->peer = p;
    c->rid = rid;
    *q->claims_tail = c;
    q->claims_tail = &c->next;
    sched_dispatch(q);
    return 0;
}

/* A finished job's input goes, unless the config keeps it: once the verified output is in
 * done/ ([convert] keep_input), and in failed/ ([queue] keep_failed_input, for a retry). */
static void drop_input(Queue *q, Stage s, const char *id)
{
    bool keep = s == STAGE_DONE ? q->conf->keep_input : q->conf->keep_failed_input;
    char err[256];
    Task t;
    int fd;

    if (keep || jobdir_open(q->data_fd, s, id, &fd) < 0)
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
    drop_input(q, to, run->id);
    if (to == STAGE_DONE)
        q->n_done++;
    else
        q->n_failed++;
    log_task(to == STAGE_DONE ? LOG_INFO : LOG_WARNING, run->id, "moved from=in_progress to=%s",
             stage_dir(to));
    proto_notify_finished(q, run->id, stage_state(to));
}

/* Attempts so far of a running job (0 when claim.json cannot be read). */
static int64_t attempts_of(Queue *q, const char *id)
{
    JobClaim c = {0};
    int fd;

    if (jobdir_open(q->data_fd, STAGE_IN_PROGRESS, id, &fd) == 0) {
        claim_read(fd, &c);
        close(fd);
    }
    return c.attempts;
}

int sched_finish(Queue *q, Peer *p, const char *id, const char *outcome)
{
    Running *run = running_find(q, id);
    int64_t attempts;

    if (!run || run->peer != p)
        return -ENOENT;
    if (run->deleting) /* deleted while it ran: the result is not wanted */
        return sched_release(q, p, id);
    if (!strcmp(outcome, "done")) {
        finish_move(q, run, STAGE_DONE);
    } else if (!strcmp(outcome, "crashed") &&
               (attempts = attempts_of(q, id)) < q->conf->max_attempts) {
        log_task(LOG_WARNING, id, "worker crashed on attempt %lld of %d, retrying",
                 (long long)attempts, q->conf->max_attempts);
        claim_apply(q, id, claim_end);
        job_requeue(q, id, STAGE_IN_PROGRESS);
    } else {
        finish_move(q, run, STAGE_FAILED);
    }
    running_del(q, run);
    sched_dispatch(q);
    return 0;
}

/* Answers every client waiting for the deletion of a running job. */
static void answer_waiters(Running *run, int r)
{
    for (Waiter *w = run->delete_waiters; w; w = w->next)
        ipc_send_new(w->peer->fd, r < 0 ? ipc_msg("error", w->rid,
                                                  json_pack("{s:s, s:s}", "code", "io_error",
                                                            "message", strerror(-r)))
                                        : ipc_msg("ok", w->rid, NULL));
}

static void release_one(Queue *q, Running *run)
{
    int r;

    if (run->deleting) {
        r = jobdir_remove(q->data_fd, STAGE_IN_PROGRESS, run->id);
        log_task(LOG_INFO, run->id, "deleted while running%s", r < 0 ? " (removal failed)" : "");
        answer_waiters(run, r);
        return;
    }
    claim_apply(q, run->id, claim_interrupt);
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
        Waiter *w = calloc(1, sizeof(*w));
        if (!w)
            return -ENOMEM;
        *w = (Waiter){.peer = p, .rid = rid, .next = run->delete_waiters};
        run->delete_waiters = w;
        if (!run->deleting) /* the first request stops the converter; later ones wait too */
            ipc_send_new(run->peer->fd, ipc_msg("work.cancel", 0, json_pack("{s:s}", "id", id)));
        run->deleting = true;
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
    waiters_drop(&q->claims, p);
    q->claims_tail = &q->claims;
    while (*q->claims_tail)
        q->claims_tail = &(*q->claims_tail)->next;
    for (Running *run = q->running, *next; run; run = next) {
        next = run->next;
        waiters_drop(&run->delete_waiters, p);
        if (run->peer != p)
            continue;
        release_one(q, run);
        running_del(q, run);
    }
    sched_dispatch(q);
}

void sched_free(Queue *q)
{
    waiters_drop(&q->claims, NULL);
    q->claims_tail = &q->claims;
    while (q->running)
        running_del(q, q->running);
    free(q->pending);
    q->pending = NULL;
    q->n_pending = q->cap_pending = 0;
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
