/* natslink.h - the NATS connection of the cluster bridge and of a conversion node
 * (docs/cluster.md), over libnats.
 *
 * One connection per program, made from the nats_* keys of the config (user and password, a
 * .creds file or an nkey seed, TLS), reconnecting for ever. libnats delivers messages on its
 * own threads; natslink hands them to the daemon's epoll loop instead: every subscribed message
 * is queued and an eventfd turns readable, so all of taskmill's logic stays single-threaded.
 *
 * The names both sides agree on: the JetStream stream TASKMILL (work-queue retention, file
 * storage) holding one message per dispatched task on subject taskmill.work, read through one
 * durable pull consumer "workers"; and core subjects for the bridge (start, finish, report,
 * cancel). */
#ifndef TASKMILL_NATSLINK_H
#define TASKMILL_NATSLINK_H

#include <jansson.h>
#include <nats/nats.h>
#include <stdbool.h>

#include "taskmill/conf.h"

#define NATS_STREAM       "TASKMILL"
#define NATS_WORK_SUBJECT "taskmill.work"
#define NATS_CONSUMER     "workers"
#define NATS_START        "taskmill.start"  /* node -> bridge, request: may I run this delivery? */
#define NATS_FINISH       "taskmill.finish" /* node -> bridge, request: the verdict */
#define NATS_REPORT       "taskmill.report" /* node -> bridge, every second: its slots */
#define NATS_CANCEL       "taskmill.cancel" /* bridge -> nodes: stop this task (deleted) */

typedef struct NatsLink NatsLink;

/* Connects (the first connection may fail: libnats keeps trying in the background). name is
 * the client name the NATS server shows. 0, or -EINVAL with the reason in err. */
int natslink_open(const Conf *c, const char *name, NatsLink **ret, char *err, size_t errlen);
void natslink_close(NatsLink *l);
natsConnection *natslink_conn(NatsLink *l);
jsCtx *natslink_js(NatsLink *l);
/* Readable when messages or connection events wait: watch it in the epoll loop. */
int natslink_fd(NatsLink *l);
/* Subscribes to subject; its messages come out of natslink_next. */
int natslink_subscribe(NatsLink *l, const char *subject, char *err, size_t errlen);
/* The next queued message (the caller destroys it), or NULL; also drains the eventfd. */
natsMsg *natslink_next(NatsLink *l);
/* Connected now. */
bool natslink_up(NatsLink *l);
/* libnats closed the connection for good (it refused our credentials or certificate, say):
 * true, with its last error in why. The daemon then exits non-zero and systemd restarts it. */
bool natslink_gave_up(NatsLink *l, char *why, size_t len);
/* Connected now; *ret_reconnected is set once after each reconnection (then cleared). */
bool natslink_connected(NatsLink *l, bool *ret_reconnected);
/* Hands a message from another thread to the loop (the message handlers' own use). */
void natslink_push(NatsLink *l, natsMsg *m);

/* A message's body as JSON (NULL when it is not an object). */
json_t *natslink_json(natsMsg *m);
/* Publishes j (stolen) on subject; 0 or -EIO. */
int natslink_publish(NatsLink *l, const char *subject, json_t *j);
/* Answers a request m with j (stolen). */
void natslink_reply(NatsLink *l, natsMsg *m, json_t *j);
/* A request with j (stolen) as body; the answer's JSON or NULL (no answer within timeout_ms). */
json_t *natslink_request(NatsLink *l, const char *subject, json_t *j, int timeout_ms);

/* Creates (or updates) the stream and its consumer with the bridge's ack_wait and
 * max_deliver. 0 or -EIO with the reason in err. */
int natslink_ensure_stream(NatsLink *l, const Conf *c, char *err, size_t errlen);

#endif
