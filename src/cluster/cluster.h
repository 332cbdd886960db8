/* cluster.h - taskmill-cluster, the bridge between the queue and conversion nodes on other
 * machines (docs/cluster.md).
 *
 * To the queue the bridge is one more worker pool (role convert, kind video) whose slots are
 * the nodes' slots: it claims a task for every idle node slot, and publishes each task it is
 * given to the JetStream stream (cluster.c). Nodes pull the messages, ask the bridge before
 * they start (taskmill.start), report their slots every second (taskmill.report) and hand in
 * their verdict (taskmill.finish); the bridge fences every delivery, writes the job's files and
 * tells the queue (cluster_node.c). */
#ifndef TASKMILL_CLUSTER_H
#define TASKMILL_CLUSTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "taskmill/conf.h"
#include "taskmill/daemon.h"
#include "taskmill/natslink.h"
#include "taskmill/task.h"

/* A task the bridge holds from the queue (it is in in_progress/). */
typedef struct Remote {
    char id[TASK_ID_LEN + 1];
    char type[72];
    uint64_t seq;            /* its message in the stream; 0 while not published */
    int64_t delivery;        /* the delivery that runs it (node.json), 0 before the first */
    char node[64], host[64]; /* who runs that delivery */
    int slot;
    int64_t started_ns; /* when that delivery started */
    int64_t heard_ns;   /* published, started, or named in a report of its node */
    double percent;     /* the last progress written to progress.json */
    struct Remote *next;
} Remote;

/* A node as its last report showed it. */
typedef struct Node {
    char host[64], node[64];
    json_t *slots; /* the report's slots (GET /v1/workers), each with host added */
    int idle;      /* slots waiting for work */
    int64_t seen_ns;
    struct Node *next;
} Node;

typedef struct Bridge {
    Daemon *daemon;
    const Conf *conf;
    int data_fd, queue_fd;
    NatsLink *nats;
    bool stream_ready; /* the stream and consumer exist */
    int64_t rid, unacked_rid, stop_ns;
    int claims;
    int64_t pause_until_ns; /* no claims until then: a publish failed */
    Remote *remotes;
    Node *nodes;
    unsigned ticks;
} Bridge;

/* cluster.c: the queue side */
int bridge_send(Bridge *b, const char *type, json_t *body);
/* work.done / work.released / work.restarted: remembered until the queue answers. */
void bridge_report(Bridge *b, const char *type, json_t *body);
void bridge_claim(Bridge *b);
void bridge_report_slots(Bridge *b);
Remote *remote_find(Bridge *b, const char *id);
void remote_drop(Bridge *b, Remote *r);
/* Takes the message out of the stream (it is withdrawn, deleted or given up). */
void remote_unpublish(Bridge *b, Remote *r);

/* cluster_node.c: the nodes' side */
void nodes_on_message(Bridge *b, natsMsg *m);
/* Once a second: nodes that stopped reporting, tasks whose node went silent. */
void nodes_tick(Bridge *b);
/* Idle node slots (of nodes seen lately) not yet spoken for by a published task. */
int nodes_free_slots(Bridge *b);
json_t *nodes_slots_json(Bridge *b);
void nodes_free(Bridge *b);

#endif
