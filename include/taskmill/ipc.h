/* ipc.h - messages between the daemons over Unix SOCK_SEQPACKET sockets.
 *
 * One message = one datagram = one JSON object {"v":1,"type":"noun.verb","rid":N,...}; a reply
 * echoes rid. Peers are checked with SO_PEERCRED. Every message is listed in docs/ipc.md. */
#ifndef TASKMILL_IPC_H
#define TASKMILL_IPC_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define IPC_VERSION    1
#define IPC_MSG_MAX    65536
#define IPC_QUEUE_SOCK "queue.sock"

/* Creates runtime_dir/name as a listening socket, mode 0660. */
int ipc_listen(const char *runtime_dir, const char *name, int *ret_fd);
int ipc_connect(const char *runtime_dir, const char *name, int *ret_fd);
/* Accepts one peer and checks it runs as our uid (or root). */
int ipc_accept(int listen_fd, int *ret_fd);

/* Builds {"v":1,"type":type,"rid":rid} plus the fields of extra (stolen, may be NULL). */
json_t *ipc_msg(const char *type, int64_t rid, json_t *extra);
int ipc_send(int fd, json_t *msg);
/* Sends and steals msg. */
int ipc_send_new(int fd, json_t *msg);
/* Receives one message; -ECONNRESET on EOF, -EBADMSG when it is not a JSON object with v and
 * type. The caller owns *ret. */
int ipc_recv(int fd, json_t **ret);
/* Waits at most timeout_ms for one message. */
int ipc_recv_timeout(int fd, int timeout_ms, json_t **ret);
/* Connects to the queue, sends msg (stolen), waits for the reply with the same rid. */
int ipc_call(const char *runtime_dir, json_t *msg, int timeout_ms, json_t **ret_reply);

const char *ipc_type(json_t *msg);
int64_t ipc_rid(json_t *msg);
/* Reply helpers: {"type":"ok"} and {"type":"error","code":..,"message":..}. */
json_t *ipc_reply_ok(json_t *req, json_t *extra);
json_t *ipc_reply_error(json_t *req, const char *code, const char *message);

/* Strict decode of a message body: json_unpack_ex with the JSON_STRICT flag after removing the
 * envelope fields (v, type, rid). Unknown fields are errors. */
int ipc_unpack(json_t *msg, char *err, size_t errlen, const char *fmt, ...);

#endif
