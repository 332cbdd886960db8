/* queue.h - state shared by the parts of the queue daemon.
 *
 * The queue is the only process that moves jobs between stages. Its memory holds hints only
 * (the pending order, which worker holds which job); the folders are the truth and the whole
 * view is rebuilt from them at start. */
#ifndef TASKMILL_QUEUE_H
#define TASKMILL_QUEUE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "taskmill/conf.h"
#include "taskmill/daemon.h"
#include "taskmill/ipc.h"
#include "taskmill/task.h"
#include "taskmill/jobdir.h"

typedef struct Peer {
    int fd;
    IpcRole role; /* from its hello */
    int workers;  /* slots a converter announced */
    struct Peer *next;
} Peer;

typedef struct Pending {
    char id[TASK_ID_LEN + 1];
    int priority;
    int64_t created_ns;
} Pending;

/* A peer waiting for an answer: a work.claim of a converter, or a job.delete of rest. */
typedef struct Waiter {
    Peer *peer;
    int64_t rid;
    struct Waiter *next;
} Waiter;

/* A job handed to a converter. deleting is set when a client asked to delete it meanwhile;
 * every such client waits in delete_waiters for the converter to let go. */
typedef struct Running {
    char id[TASK_ID_LEN + 1];
    Peer *peer;
    bool deleting;
    Waiter *delete_waiters;
    struct Running *next;
} Running;

typedef struct Queue {
    Daemon *daemon;
    const Conf *conf;
    int data_fd, listen_fd, lock_fd;
    Peer *peers;
    Pending *pending;
    size_t n_pending, cap_pending;
    Running *running;
    Waiter *claims, **claims_tail; /* work.claims in arrival order */
    unsigned n_done, n_failed;
    unsigned ticks;
} Queue;

/* queue_sched.c */
int sched_scan(Queue *q);
int sched_submit(Queue *q, const char *id, char *err, size_t errlen);
int sched_finish(Queue *q, Peer *p, const char *id, const char *outcome);
int sched_release(Queue *q, Peer *p, const char *id);
/* 0: deleted now; 1: a running job was asked to stop, reply follows; <0: error */
int sched_delete(Queue *q, Peer *p, int64_t rid, const char *id);
int sched_claim(Queue *q, Peer *p, int64_t rid);
void sched_peer_gone(Queue *q, Peer *p);
/* Frees the in-memory view (at shutdown; the folders keep every job). */
void sched_free(Queue *q);
void sched_dispatch(Queue *q);
unsigned sched_working(const Queue *q);
unsigned sched_max_workers(const Queue *q);
void sched_update_status(Queue *q);
/* Removes finished jobs older than [queue] result_ttl. */
void sched_expire(Queue *q);

/* queue_proto.c */
/* Reads and handles one message of p (ipc_dispatch): 0, -EAGAIN, or <0 when p is gone. */
int proto_receive(Queue *q, Peer *p);
void proto_notify_finished(Queue *q, const char *id, const char *state);

#endif
