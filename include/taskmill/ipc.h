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

/* Builds {"v":1,"type":type,"rid":rid} plus the fields of extra (stolen, may be NULL); NULL
 * (logged) when extra has a member named v, type or rid. */
json_t *ipc_msg(const char *type, int64_t rid, json_t *extra);
int ipc_send(int fd, json_t *msg);
/* Sends and steals msg. */
int ipc_send_new(int fd, json_t *msg);
/* Receives one message; -ECONNRESET on EOF, -EBADMSG when it is not a JSON object with v and
 * type. The caller owns *ret. */
int ipc_recv(int fd, json_t **ret);
/* Waits at most timeout_ms for one message. */
int ipc_recv_timeout(int fd, int timeout_ms, json_t **ret);
/* Who a peer is, as it said in its hello. The queue checks every message against the roles
 * that may send it; a connection to the queue only ever hears from the queue. */
typedef enum IpcRole {
    IPC_ROLE_REST = 1 << 0,
    IPC_ROLE_CONVERT = 1 << 1,
    IPC_ROLE_CALLBACK = 1 << 2,
    IPC_ROLE_QUEUE = 1 << 3,
    IPC_ROLE_NONE = 1 << 4, /* has not said hello yet: may only say hello */
} IpcRole;
const char *ipc_role_name(IpcRole role);
IpcRole ipc_role_from_name(const char *name);

/* Connects to the queue as role: sends hello (with the fields of extra, stolen, may be NULL)
 * and waits up to timeout_ms for its "ok". The fd is non-blocking, ready for the epoll loop. */
int ipc_connect_queue(const char *runtime_dir, IpcRole role, json_t *extra, int timeout_ms,
                      int *ret_fd);
/* One request to the queue on a short connection (rest): hello as role, then msg (stolen);
 * waits for the reply with msg's rid. */
int ipc_call(const char *runtime_dir, IpcRole role, json_t *msg, int timeout_ms,
             json_t **ret_reply);

/* The receive side shared by every daemon: a table of handlers, one per message type, each
 * with the roles that may send it. */
typedef void (*IpcHandlerFn)(void *ctx, void *peer, json_t *msg);
typedef struct IpcHandler {
    const char *type;
    unsigned roles; /* IpcRole bits allowed to send it */
    IpcHandlerFn fn;
} IpcHandler;

/* Receives one message from fd and hands it to the handler of its type. A malformed message,
 * an unknown type, or a type this peer's role may not send is logged (naming who) and, when it
 * is a request, answered with an error; the daemon keeps serving. Returns 0 when a message was
 * handled or refused, -EAGAIN when there was nothing to read, and another -errno when the
 * connection is gone. */
int ipc_dispatch(int fd, const IpcHandler *table, size_t n, IpcRole role, void *ctx, void *peer,
                 const char *who);

const char *ipc_type(json_t *msg);
int64_t ipc_rid(json_t *msg);
/* Reply helpers: {"type":"ok"} and {"type":"error","code":..,"message":..}. */
json_t *ipc_reply_ok(json_t *req, json_t *extra);
json_t *ipc_reply_error(json_t *req, const char *code, const char *message);

/* Strict decode of a message body: json_unpack_ex with the JSON_STRICT flag after removing the
 * envelope fields (v, type, rid). Unknown fields are errors. */
int ipc_unpack(json_t *msg, char *err, size_t errlen, const char *fmt, ...);

/* work.assign, the queue's answer to a pool's work.claim (the strings point into the message). */
typedef struct WorkAssign {
    const char *id, *task_type, *kind;
    int timeout; /* seconds the attempt may run */
    int waiting; /* jobs still waiting in the queue: a pool sizes its encoders' threads by it */
} WorkAssign;
json_t *ipc_work_assign(int64_t rid, const WorkAssign *w);
/* 0, or -EINVAL with the problem in err (a field missing or mistyped, the id not a task id). */
int ipc_work_assign_unpack(json_t *msg, WorkAssign *ret, char *err, size_t errlen);

#endif
