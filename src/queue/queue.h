/* queue.h - state shared by the parts of the queue daemon.
 *
 * The queue is the only process that moves jobs between stages. Its memory holds hints only
 * (the pending order, which worker holds which job, what the pools said about their slots); the
 * folders are the truth and the whole view is rebuilt from them at start. */
#ifndef TASKMILL_QUEUE_H
#define TASKMILL_QUEUE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "taskmill/conf.h"
#include "taskmill/daemon.h"
#include "taskmill/index.h"
#include "taskmill/ipc.h"
#include "taskmill/jobdir.h"
#include "taskmill/metrics.h"
#include "taskmill/task.h"

typedef struct Peer {
    int fd;
    IpcRole role;  /* from its hello */
    int workers;   /* slots a worker pool announced */
    json_t *kinds; /* the task kinds its workers run (array of names) */
    json_t *slots; /* its latest workers.report, or NULL */
    char host[64]; /* where its workers run */
    struct Peer *next;
} Peer;

typedef struct Pending {
    char id[TASK_ID_LEN + 1];
    int priority;
    int64_t created_ns;
    int64_t not_before_ns; /* run_at, or the next attempt after a transient failure */
    char type[72];         /* its kind, limits and default timeout: from the config as it is */
    int timeout;           /* seconds the task asked for, 0 = the type's timeout */
} Pending;

/* A peer waiting for an answer: a work.claim of a worker, or a job.delete of rest. */
typedef struct Waiter {
    Peer *peer;
    int64_t rid;
    struct Waiter *next;
} Waiter;

/* A job handed to a worker. deleting is set when a client asked to delete it meanwhile;
 * every such client waits in delete_waiters for the worker to let go. */
typedef struct Running {
    char id[TASK_ID_LEN + 1];
    char type[72];
    Peer *peer;
    bool deleting;
    Waiter *delete_waiters;
    struct Running *next;
} Running;

typedef struct Queue {
    Daemon *daemon;
    const Conf *conf;
    int data_fd, listen_fd, lock_fd;
    int wake_fd;  /* timerfd: when the earliest scheduled job becomes due */
    Index *index; /* data/index/tasks.db, which the queue alone writes */
    Peer *peers;
    Pending *pending;
    size_t n_pending, cap_pending;
    size_t n_timed; /* pending jobs with a not_before (run_at, a back-off): 0 spares the scans */
    Running *running;
    Waiter *claims, **claims_tail; /* work.claims in arrival order */
    unsigned n_done, n_failed;
    bool draining;        /* no new work starts (data/.draining) */
    size_t history_lines; /* lines in data/history.jsonl; (size_t)-1 until counted */
    /* for GET /metrics (metrics.get), since this start */
    json_t *finished;           /* {type: {done: N, failed: N}} */
    Histogram conversion, wait; /* attempts' wall seconds; pending -> in progress */
    uint64_t callbacks[2];      /* delivered, gave up */
    unsigned ticks;
} Queue;

/* queue_sched.c: the state machine */
int sched_scan(Queue *q);
int sched_submit(Queue *q, const char *id, char *err, size_t errlen);
/* outcome: done, failed (final), retry (transient: tried again later), crashed. attempt is the
 * worker's record of the attempt (may be NULL). */
int sched_finish(Queue *q, Peer *p, const char *id, const char *outcome, json_t *attempt);
int sched_release(Queue *q, Peer *p, const char *id);
/* The attempt in flight ended without a verdict and the pool began another at once (a cluster
 * node vanished and its task went to another node): an interruption, and a new attempt. */
int sched_restart(Queue *q, Peer *p, const char *id);
/* 0: deleted now; 1: a running job was asked to stop, reply follows; <0: error */
int sched_delete(Queue *q, Peer *p, int64_t rid, const char *id);
/* A failed task back to pending, with its kept input: 0, -ENOENT, -EBUSY (not failed),
 * -ENODATA (its input is gone). */
int sched_retry(Queue *q, const char *id);
int sched_claim(Queue *q, Peer *p, int64_t rid);
/* Withdraws every claim of p not yet answered (a pool that may start fewer tasks now). */
void sched_unclaim(Queue *q, Peer *p);
void sched_peer_gone(Queue *q, Peer *p);
/* Frees the in-memory view (at shutdown; the folders keep every job). */
void sched_free(Queue *q);
void sched_dispatch(Queue *q);
unsigned sched_working(const Queue *q);
unsigned sched_max_workers(const Queue *q);
unsigned sched_scheduled(const Queue *q); /* pending jobs waiting for their time */
void sched_update_status(Queue *q);
/* Removes finished jobs older than [queue] result_ttl. */
void sched_expire(Queue *q);
/* Sets the wake timer to the earliest not_before of the pending jobs. */
void sched_arm(Queue *q);

/* queue_admin.c: drain, the workers' view, history, the consistency check */
int admin_drain(Queue *q, bool on);
bool admin_draining_saved(Queue *q);
json_t *admin_workers(Queue *q);
/* {held_slots, held_because}: free slots the pools hold back (load, cooldown), and why. */
json_t *admin_held(Queue *q);
/* Appends a finished attempt to the job's history.json and to data/history.jsonl. */
void admin_history_add(Queue *q, Stage s, const char *id, json_t *attempt);
json_t *admin_check(Queue *q);

/* queue_proto.c */
/* Reads and handles one message of p (ipc_dispatch): 0, -EAGAIN, or <0 when p is gone. */
int proto_receive(Queue *q, Peer *p);
void proto_notify_finished(Queue *q, const char *id, const char *state);

#endif
