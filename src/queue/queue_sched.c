/* queue_sched.c - the queue's state machine: which job moves where, and who works on what.
 *
 * request -> pending (sched_submit), pending -> in_progress (sched_dispatch, when a worker that
 * runs the job's kind has claimed work), in_progress -> done|failed (sched_finish) or back to
 * pending (sched_release, an interruption; or a transient failure within the type's attempt
 * limit, which waits an exponential back-off). Pending jobs are handed out by priority (higher
 * first), then creation time, then id: FIFO within a priority; a job whose time has not come
 * (run_at, a back-off) waits, and a timer, not a poll, wakes the queue when it is due. A type's
 * max_parallel caps its running jobs; while draining nothing starts. Every move goes through
 * jobdir_move; a move that fails is logged and leaves the job where it was. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "queue.h"
#include "taskmill/claim.h"
#include "taskmill/clock.h"
#include "taskmill/files.h"
#include "taskmill/index.h"
#include "taskmill/ipc.h"
#include "taskmill/log.h"
#include "taskmill/recover.h"
#include "taskmill/tasktype.h"

/* The task index follows every move the queue makes; a failed update is logged and mended by
 * the rebuild at the next start (the folders are the truth). */
static void index_note(Queue *q, Stage s, const char *id)
{
    if (q->index)
        index_refresh(q->index, q->data_fd, s, id);
}

static void index_drop(Queue *q, const char *id)
{
    if (q->index)
        index_forget(q->index, id);
}

static int pending_add(Queue *q, const Pending *job)
{
    if (q->n_pending == q->cap_pending) {
        size_t cap = q->cap_pending ? q->cap_pending * 2 : 64;
        Pending *p = realloc(q->pending, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        q->pending = p;
        q->cap_pending = cap;
    }
    q->n_timed += job->not_before_ns > 0;
    q->pending[q->n_pending++] = *job;
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

static bool peer_runs(const Peer *p, const char *kind)
{
    size_t i;
    json_t *k;

    json_array_foreach(p->kinds, i, k)
    {
        if (kind && !strcmp(json_string_value(k), kind))
            return true;
    }
    return false;
}

static unsigned running_of_type(const Queue *q, const char *type)
{
    unsigned n = 0;

    for (Running *r = q->running; r; r = r->next)
        n += !strcmp(r->type, type);
    return n;
}

/* May this job start now on a worker of p? Its time has come, its type is in the config (as it
 * is now: SIGHUP may add or change types), p runs its kind, and the type is under its
 * max_parallel. */
static bool startable(const Queue *q, const Pending *job, const Peer *p, int64_t now)
{
    const TaskType *tt = tasktype_find(q->conf, job->type);

    return tt && job->not_before_ns <= now && peer_runs(p, tt->kind->name) &&
           (!tt->max_parallel || running_of_type(q, job->type) < (unsigned)tt->max_parallel);
}

/* A linear scan: a claim costs O(pending) comparisons of priority and age, and the order stays
 * obviously right. The dearer question, whether a job may start (its type, kind and limits), is
 * asked only of a job that would come before the best one found so far. */
static ssize_t pending_best(const Queue *q, const Peer *p, int64_t now)
{
    ssize_t best = -1;

    for (size_t i = 0; i < q->n_pending; i++)
        if ((best < 0 || pending_before(&q->pending[i], &q->pending[best])) &&
            startable(q, &q->pending[i], p, now))
            best = (ssize_t)i;
    return best;
}

unsigned sched_scheduled(const Queue *q)
{
    int64_t now = now_ns();
    unsigned n = 0;

    for (size_t i = 0; q->n_timed > 0 && i < q->n_pending; i++) /* none timed: nothing waits */
        n += q->pending[i].not_before_ns > now;
    return n;
}

void sched_arm(Queue *q)
{
    struct itimerspec its = {{0, 0}, {0, 0}};
    int64_t now = now_ns(), earliest = INT64_MAX;

    for (size_t i = 0; q->n_timed > 0 && i < q->n_pending; i++)
        if (q->pending[i].not_before_ns > now && q->pending[i].not_before_ns < earliest)
            earliest = q->pending[i].not_before_ns;
    if (earliest != INT64_MAX)
        its.it_value = (struct timespec){earliest / 1000000000, earliest % 1000000000};
    if (q->wake_fd >= 0 && timerfd_settime(q->wake_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
        log_err("cannot arm the wake timer: %s", strerror(errno));
}

static void pending_del(Queue *q, size_t i)
{
    q->n_timed -= q->pending[i].not_before_ns > 0;
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
        n += (unsigned)p->workers;
    return n;
}

void sched_update_status(Queue *q)
{
    daemon_status(q->daemon, "%u working, %zu pending (%u scheduled), %u done, %u failed%s",
                  sched_working(q), q->n_pending, sched_scheduled(q), q->n_done, q->n_failed,
                  q->draining ? ", draining" : "");
}

/* What the scheduler needs of a pending job: its priority, age, type, kind, time limit, and
 * when it may start (run_at, or a back-off after a transient failure). */
static int pending_read(Queue *q, int fd, const char *id, Pending *ret, char *err, size_t errlen)
{
    const TaskType *tt;
    JobClaim c = {0};
    Task t;
    int r = task_load(fd, &t, err, errlen);

    if (r < 0)
        return r;
    claim_read(fd, &c);
    tt = tasktype_find(q->conf, t.task_type);
    *ret = (Pending){.priority = t.priority,
                     .created_ns = t.created_ns,
                     .not_before_ns =
                         t.run_at_ns > c.next_attempt_ns ? t.run_at_ns : c.next_attempt_ns,
                     .timeout = t.timeout};
    memcpy(ret->id, id, sizeof(ret->id));
    snprintf(ret->type, sizeof(ret->type), "%s", t.task_type);
    if (!tt)
        log_task(LOG_WARNING, id, "task type '%s' is not in the config: the job waits",
                 t.task_type);
    task_free(&t);
    return 0;
}

/* Puts a job of pending/ on the pending list; an unreadable one goes to corrupt/. */
static int pending_load(Queue *q, const char *id)
{
    char err[256];
    Pending job;
    int fd, r = jobdir_open(q->data_fd, STAGE_PENDING, id, &fd);

    if (r < 0)
        return r;
    r = pending_read(q, fd, id, &job, err, sizeof(err));
    close(fd);
    if (r < 0) {
        log_task(LOG_ERR, id, "unreadable, moved to corrupt/: %s", err);
        r = jobdir_move(q->data_fd, id, STAGE_PENDING, STAGE_CORRUPT);
        if (r == 0)
            index_drop(q, id);
        return r;
    }
    return pending_add(q, &job);
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
    index_note(q, STAGE_PENDING, id);
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
    IndexRebuilt got = {0};
    int r;

    /* Nobody works on anything before the queue starts: whatever is in in_progress/ was
     * interrupted, and whatever complete upload sits in request/ was never announced. */
    if ((r = recover_run(q->data_fd, 0, on_recover, q, NULL)) < 0 ||
        (r = jobdir_each(q->data_fd, STAGE_PENDING, scan_pending, q)) < 0)
        return r;
    /* The rebuild walks done/ and failed/ and counts them; only without it are they walked
     * again here. */
    if (q->index && (r = index_rebuild(q->index, q->data_fd, &got)) == 0) {
        q->n_done = got.jobs[STAGE_DONE];
        q->n_failed = got.jobs[STAGE_FAILED];
    } else if (q->index) {
        log_err("task index not rebuilt (lists may miss tasks until the next start): %s",
                strerror(-r));
    }
    if ((!q->index || r < 0) &&
        ((r = jobdir_each(q->data_fd, STAGE_DONE, count_one, &q->n_done)) < 0 ||
         (r = jobdir_each(q->data_fd, STAGE_FAILED, count_one, &q->n_failed)) < 0))
        return r;
    log_info("queue rebuilt from disk: %zu pending, %u done, %u failed; index: %u rows mended",
             q->n_pending, q->n_done, q->n_failed, got.changed);
    return 0;
}

/* A job now in pending/ (submitted, retried): its event, scheduled when it waits for a time. */
static void log_moved(Queue *q, const char *id, const char *from)
{
    ssize_t i = pending_find(q, id);
    const Pending *p = i >= 0 ? &q->pending[i] : NULL;

    log_event(LOG_INFO, id, p ? p->type : NULL,
              p && p->not_before_ns > now_ns() ? "scheduled" : "pending",
              "%smoved from=%s to=pending", strcmp(from, "failed") ? "" : "retried: ", from);
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
    if (r == 0) {
        index_note(q, STAGE_PENDING, id);
        r = pending_load(q, id);
    }
    if (r < 0) {
        snprintf(err, errlen, "cannot move to pending: %s", strerror(-r));
        return r;
    }
    log_moved(q, id, "request");
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

static Running *running_add(Queue *q, const Pending *job, Peer *p)
{
    Running *run = calloc(1, sizeof(*run));

    if (!run)
        return NULL;
    memcpy(run->id, job->id, sizeof(run->id));
    memcpy(run->type, job->type, sizeof(run->type));
    run->peer = p;
    run->next = q->running;
    q->running = run;
    return run;
}

static void claim_take(Queue *q, Waiter **cp)
{
    Waiter *c = *cp;

    *cp = c->next;
    q->claims_tail = &q->claims;
    while (*q->claims_tail)
        q->claims_tail = &(*q->claims_tail)->next;
    free(c);
}

/* Starts the best job for the first claim that has one; false when none can start. */
static bool dispatch_one(Queue *q)
{
    int64_t now = now_ns();
    ssize_t best = -1;
    const TaskType *tt;
    Waiter **cp;
    Pending job;
    int r;

    if (q->draining)
        return false;
    for (cp = &q->claims; *cp && (best = pending_best(q, (*cp)->peer, now)) < 0; cp = &(*cp)->next)
        ;
    if (best < 0)
        return false;
    job = q->pending[best];
    tt = tasktype_find(q->conf, job.type); /* startable: it is there */
    pending_del(q, (size_t)best);
    r = jobdir_move(q->data_fd, job.id, STAGE_PENDING, STAGE_IN_PROGRESS);
    if (r == 0)
        r = claim_apply(q, job.id, claim_begin);
    if (r < 0 || !running_add(q, &job, (*cp)->peer)) {
        log_task(LOG_ERR, job.id, "cannot start: %s", strerror(r < 0 ? -r : ENOMEM));
        return true;
    }
    ipc_send_new((*cp)->peer->fd,
                 ipc_work_assign((*cp)->rid,
                                 &(WorkAssign){.id = job.id,
                                               .task_type = job.type,
                                               .kind = tt->kind->name,
                                               .timeout = job.timeout ? job.timeout : tt->timeout,
                                               .waiting = (int)q->n_pending}));
    hist_observe(&q->wait,
                 (double)(now_ns() - (job.not_before_ns > job.created_ns ? job.not_before_ns
                                                                         : job.created_ns)) /
                     1e9);
    log_event(LOG_INFO, job.id, job.type, "in_progress",
              "moved from=pending to=in_progress worker=%d type=%s priority=%d", (*cp)->peer->fd,
              job.type, job.priority);
    index_note(q, STAGE_IN_PROGRESS, job.id);
    claim_take(q, cp);
    return true;
}

void sched_dispatch(Queue *q)
{
    while (dispatch_one(q))
        ;
    sched_arm(q);
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
        if (t.input_name && unlinkat(fd, t.input_name, 0) == 0)
            fsync(fd);
        task_free(&t);
    }
    close(fd);
}

/* taskmill_tasks_finished_total{type, outcome} */
static void count_finished(Queue *q, const char *type, const char *outcome)
{
    json_t *by_type = json_object_get(q->finished, type);

    if (!by_type && json_object_set_new(q->finished, type, json_object()) == 0)
        by_type = json_object_get(q->finished, type);
    json_object_set_new(by_type, outcome,
                        json_integer(json_integer_value(json_object_get(by_type, outcome)) + 1));
}

static void finish_move(Queue *q, Running *run, Stage to)
{
    int r;

    claim_apply(q, run->id, claim_end);
    r = jobdir_move(q->data_fd, run->id, STAGE_IN_PROGRESS, to);

    if (r < 0) {
        log_task(LOG_ERR, run->id, "cannot move to %s: %s", stage_dir(to), strerror(-r));
        return;
    }
    drop_input(q, to, run->id);
    index_note(q, to, run->id);
    if (to == STAGE_DONE)
        q->n_done++;
    else
        q->n_failed++;
    count_finished(q, run->type, stage_state(to));
    log_event(to == STAGE_DONE ? LOG_INFO : LOG_WARNING, run->id, run->type, stage_state(to),
              "moved from=in_progress to=%s", stage_dir(to));
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

static int max_attempts_of(const Queue *q, const char *type)
{
    const TaskType *tt = tasktype_find(q->conf, type);

    return tt ? tt->max_attempts : q->conf->max_attempts;
}

/* [queue] retry_backoff seconds, doubled for every attempt after the first, at most an hour. */
static int64_t backoff_ns(const Queue *q, int64_t attempts)
{
    int64_t s = q->conf->retry_backoff;

    for (int64_t i = 1; i < attempts && s < 3600; i++)
        s *= 2;
    return (s < 3600 ? s : 3600) * 1000000000LL;
}

/* A transient failure: another attempt after a back-off, or the end when none is left. */
static void retry_or_fail(Queue *q, Running *run, const char *outcome)
{
    int64_t attempts = attempts_of(q, run->id), next;
    int max = max_attempts_of(q, run->type), fd;

    if (attempts >= max) {
        finish_move(q, run, STAGE_FAILED);
        return;
    }
    next = now_ns() + backoff_ns(q, attempts);
    if (jobdir_open(q->data_fd, STAGE_IN_PROGRESS, run->id, &fd) == 0) {
        claim_retry(fd, next);
        close(fd);
    }
    log_event(LOG_WARNING, run->id, run->type, "scheduled",
              "%s on attempt %lld of %d, next in %llds",
              !strcmp(outcome, "crashed") ? "worker crashed" : "transient failure",
              (long long)attempts, max, (long long)((next - now_ns()) / 1000000000));
    job_requeue(q, run->id, STAGE_IN_PROGRESS);
}

int sched_finish(Queue *q, Peer *p, const char *id, const char *outcome, json_t *attempt)
{
    Running *run = running_find(q, id);

    if (!run || run->peer != p)
        return -ENOENT;
    if (run->deleting) /* deleted while it ran: the result is not wanted */
        return sched_release(q, p, id);
    if (attempt) {
        if (json_is_number(json_object_get(attempt, "wall_seconds")))
            hist_observe(&q->conversion,
                         json_number_value(json_object_get(attempt, "wall_seconds")));
        json_object_set_new(attempt, "outcome", json_string(outcome));
        admin_history_add(q, STAGE_IN_PROGRESS, id, attempt);
    }
    if (!strcmp(outcome, "done"))
        finish_move(q, run, STAGE_DONE);
    else if (!strcmp(outcome, "failed"))
        finish_move(q, run, STAGE_FAILED);
    else
        retry_or_fail(q, run, outcome);
    running_del(q, run);
    sched_dispatch(q);
    return 0;
}

int sched_retry(Queue *q, const char *id)
{
    char err[256];
    Task t;
    int fd, r = jobdir_open(q->data_fd, STAGE_FAILED, id, &fd);
    Stage s;

    if (r == -ENOENT)
        return jobdir_find(q->data_fd, id, &s) == 0 ? -EBUSY : -ENOENT;
    if (r < 0)
        return r;
    r = task_load(fd, &t, err, sizeof(err));
    if (r == 0 && t.input_name && faccessat(fd, t.input_name, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
        r = -ENODATA; /* its input is gone ([queue] keep_failed_input = no, or expired) */
    task_free(&t);
    if (r == 0 && (r = claim_rearm(fd)) == 0)
        r = jobdir_reset(fd) < 0 ? -EIO : 0;
    close(fd);
    if (r < 0)
        return r;
    if ((r = jobdir_move(q->data_fd, id, STAGE_FAILED, STAGE_PENDING)) < 0)
        return r;
    q->n_failed--;
    index_note(q, STAGE_PENDING, id);
    r = pending_load(q, id);
    log_moved(q, id, "failed");
    sched_dispatch(q);
    return r;
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
        if (r == 0)
            index_drop(q, run->id);
        log_event(LOG_INFO, run->id, run->type, "deleted", "deleted while running%s",
                  r < 0 ? " (removal failed)" : "");
        answer_waiters(run, r);
        return;
    }
    claim_apply(q, run->id, claim_interrupt);
    r = job_requeue(q, run->id, STAGE_IN_PROGRESS);
    log_event(r < 0 ? LOG_ERR : LOG_NOTICE, run->id, run->type, r < 0 ? NULL : "pending",
              "interrupted, %s", r < 0 ? strerror(-r) : "moved from=in_progress to=pending");
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

int sched_restart(Queue *q, Peer *p, const char *id)
{
    Running *run = running_find(q, id);
    int r;

    if (!run || run->peer != p)
        return -ENOENT;
    r = claim_apply(q, run->id, claim_restart);
    log_task(r < 0 ? LOG_ERR : LOG_NOTICE, run->id, "interrupted, a new attempt began%s%s",
             r < 0 ? ": " : "", r < 0 ? strerror(-r) : "");
    return r;
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
        log_task(LOG_INFO, id, "delete requested while it runs: waits for its worker to stop");
        return 1;
    }
    r = jobdir_find(q->data_fd, id, &s);
    if (r < 0)
        return r;
    if ((i = pending_find(q, id)) >= 0)
        pending_del(q, (size_t)i);
    r = jobdir_remove(q->data_fd, s, id);
    if (r == 0)
        index_drop(q, id);
    if (r == 0 && s == STAGE_DONE)
        q->n_done--;
    else if (r == 0 && s == STAGE_FAILED)
        q->n_failed--;
    log_event(LOG_INFO, id, NULL, "deleted", "deleted from=%s", stage_dir(s));
    sched_update_status(q);
    return r;
}

void sched_unclaim(Queue *q, Peer *p)
{
    waiters_drop(&q->claims, p);
    q->claims_tail = &q->claims;
    while (*q->claims_tail)
        q->claims_tail = &(*q->claims_tail)->next;
}

void sched_peer_gone(Queue *q, Peer *p)
{
    sched_unclaim(q, p);
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
    q->n_pending = q->cap_pending = q->n_timed = 0;
}

/* A finished job older than [queue] result_ttl goes. The index says which (its finished_ns
 * comes from result.json or error.json); jobdir_remove says whether it still was there. */
static int expire_one(const IndexRow *row, void *userdata)
{
    Queue *q = userdata;

    if (jobdir_remove(q->data_fd, row->stage, row->id) < 0)
        return 0;
    index_drop(q, row->id);
    if (row->stage == STAGE_DONE)
        q->n_done--;
    else
        q->n_failed--;
    log_event(LOG_INFO, row->id, NULL, "expired", "expired from=%s after [queue] result_ttl",
              stage_dir(row->stage));
    return 0;
}

void sched_expire(Queue *q)
{
    if (q->conf->result_ttl == 0 || !q->index)
        return;
    index_each_finished_before(q->index, now_ns() - (int64_t)q->conf->result_ttl * 1000000000,
                               expire_one, q);
    sched_update_status(q);
}
