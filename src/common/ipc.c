/* ipc.c - the message codec and socket plumbing shared by all daemons.
 *
 * SOCK_SEQPACKET keeps message boundaries, so there is no framing code: one send() is one
 * message. Peers must run as our uid (or root), checked with SO_PEERCRED. Decoding never
 * aborts: a malformed message is an error value for the caller to answer and log. */
#define _GNU_SOURCE
#include "taskmill/ipc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "taskmill/log.h"
#include "taskmill/task.h"
#include "taskmill/text.h"

static int sock_addr(const char *dir, const char *name, struct sockaddr_un *sa)
{
    *sa = (struct sockaddr_un){.sun_family = AF_UNIX};
    if (snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/%s", dir, name) >=
        (int)sizeof(sa->sun_path))
        return -ENAMETOOLONG;
    return 0;
}

int ipc_listen(const char *runtime_dir, const char *name, int *ret_fd)
{
    struct sockaddr_un sa;
    int fd, r = sock_addr(runtime_dir, name, &sa);

    if (r < 0)
        return r;
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    unlink(sa.sun_path); /* a stale socket of an earlier run */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(sa.sun_path, 0660) < 0 ||
        listen(fd, 64) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}

int ipc_connect(const char *runtime_dir, const char *name, int *ret_fd)
{
    struct sockaddr_un sa;
    int fd, r = sock_addr(runtime_dir, name, &sa);

    if (r < 0)
        return r;
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}

int ipc_accept(int listen_fd, int *ret_fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (fd < 0)
        return -errno;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
        (cred.uid != getuid() && cred.uid != 0)) {
        close(fd);
        return -EPERM;
    }
    *ret_fd = fd;
    return 0;
}

json_t *ipc_msg(const char *type, int64_t rid, json_t *extra)
{
    static const char *const envelope[] = {"v", "type", "rid"};
    json_t *m;

    /* A body member named like the envelope would silently replace it (a work.assign with a
     * task's "type" became a message of that type): refused, loudly. */
    for (size_t i = 0; extra && i < sizeof(envelope) / sizeof(envelope[0]); i++)
        if (json_object_get(extra, envelope[i])) {
            log_err("bug: the body of a %s message has an envelope member '%s'", type, envelope[i]);
            json_decref(extra);
            return NULL;
        }
    m = json_pack("{s:i, s:s, s:I}", "v", IPC_VERSION, "type", type, "rid", (json_int_t)rid);
    if (m && extra)
        json_object_update(m, extra);
    json_decref(extra);
    return m;
}

int ipc_send(int fd, json_t *msg)
{
    char *s = json_dumps(msg, JSON_COMPACT);
    size_t len;
    ssize_t n;

    if (!s)
        return -ENOMEM;
    len = strlen(s);
    if (len > IPC_MSG_MAX) {
        free(s);
        return -EMSGSIZE;
    }
    do
        n = send(fd, s, len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    free(s);
    return n < 0 ? -errno : 0;
}

int ipc_send_new(int fd, json_t *msg)
{
    int r = msg ? ipc_send(fd, msg) : -ENOMEM;

    json_decref(msg);
    return r;
}

int ipc_recv(int fd, json_t **ret)
{
    char buf[IPC_MSG_MAX + 1];
    ssize_t n;
    json_t *j;

    do
        n = recv(fd, buf, sizeof(buf) - 1, MSG_TRUNC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (n == 0)
        return -ECONNRESET;
    if (n > IPC_MSG_MAX)
        return -EMSGSIZE;
    j = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(j) || !json_is_integer(json_object_get(j, "v")) ||
        json_integer_value(json_object_get(j, "v")) != IPC_VERSION ||
        !json_is_string(json_object_get(j, "type"))) {
        json_decref(j);
        return -EBADMSG;
    }
    *ret = j;
    return 0;
}

int ipc_recv_timeout(int fd, int timeout_ms, json_t **ret)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;

    do
        n = poll(&p, 1, timeout_ms);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (n == 0)
        return -ETIMEDOUT;
    return ipc_recv(fd, ret);
}

static const char *const role_names[] = {"rest", "convert", "callback", "queue", "none"};

const char *ipc_role_name(IpcRole role)
{
    for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++)
        if (role == (IpcRole)(1u << i))
            return role_names[i];
    return "unknown";
}

IpcRole ipc_role_from_name(const char *name)
{
    for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++)
        if (name && !strcmp(name, role_names[i]))
            return (IpcRole)(1u << i);
    return IPC_ROLE_NONE;
}

static json_t *hello_msg(IpcRole role, int64_t rid, json_t *extra)
{
    json_t *body = extra ? extra : json_object();

    json_object_set_new(body, "role", json_string(ipc_role_name(role)));
    return ipc_msg("hello", rid, body);
}

int ipc_connect_queue(const char *runtime_dir, IpcRole role, json_t *extra, int timeout_ms,
                      int *ret_fd)
{
    json_t *reply = NULL;
    int fd, r = ipc_connect(runtime_dir, IPC_QUEUE_SOCK, &fd);

    if (r < 0) {
        json_decref(extra);
        return r;
    }
    r = ipc_send_new(fd, hello_msg(role, 1, extra));
    if (r == 0)
        r = ipc_recv_timeout(fd, timeout_ms, &reply);
    if (r == 0 && (strcmp(ipc_type(reply), "ok") || ipc_rid(reply) != 1))
        r = -EPROTO;
    json_decref(reply);
    if (r == 0 && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
        r = -errno;
    if (r < 0) {
        close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}

int ipc_call(const char *runtime_dir, IpcRole role, json_t *msg, int timeout_ms, json_t **ret_reply)
{
    json_t *reply = NULL;
    int64_t rid = ipc_rid(msg);
    int fd, r = ipc_connect(runtime_dir, IPC_QUEUE_SOCK, &fd);

    if (r < 0) {
        json_decref(msg);
        return r;
    }
    /* The hello is a notification (rid 0): no answer, no extra round trip. */
    r = ipc_send_new(fd, hello_msg(role, 0, NULL));
    if (r == 0)
        r = ipc_send_new(fd, msg);
    else
        json_decref(msg);
    while (r == 0) {
        r = ipc_recv_timeout(fd, timeout_ms, &reply);
        if (r == 0 && ipc_rid(reply) == rid)
            break;
        json_decref(reply); /* not ours: an answer to something else */
        reply = NULL;
    }
    close(fd);
    if (r < 0)
        return r;
    *ret_reply = reply;
    return 0;
}

static bool is_answer(json_t *msg)
{
    const char *type = ipc_type(msg);

    return !strcmp(type, "ok") || !strcmp(type, "error");
}

/* A request gets an error back; an answer or a notification (rid 0) never does, so two peers
 * can never answer each other's answers forever. */
static void refuse(int fd, json_t *msg, const char *code, const char *message)
{
    if (!is_answer(msg) && ipc_rid(msg) != 0)
        ipc_send_new(fd, ipc_reply_error(msg, code, message));
}

int ipc_dispatch(int fd, const IpcHandler *table, size_t n, IpcRole role, void *ctx, void *peer,
                 const char *who)
{
    json_t *msg = NULL;
    const char *type;
    int r = ipc_recv(fd, &msg);

    if (r == -EBADMSG || r == -EMSGSIZE) {
        log_warning("%s sent a malformed message (%s)", who, strerror(-r));
        ipc_send_new(fd, ipc_msg("error", 0,
                                 json_pack("{s:s, s:s}", "code", "bad_message", "message",
                                           "not a taskmill IPC message")));
        return 0;
    }
    if (r < 0)
        return r;
    type = ipc_type(msg);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(table[i].type, type))
            continue;
        if (!(table[i].roles & role)) {
            log_warning("%s (role %s) may not send '%s'", who, ipc_role_name(role), type);
            refuse(fd, msg, "forbidden", "this peer's role may not send this message");
        } else {
            table[i].fn(ctx, peer, msg);
        }
        json_decref(msg);
        return 0;
    }
    log_warning("%s sent an unknown message type '%.64s'", who, type);
    refuse(fd, msg, "unknown_type", "unknown message type");
    json_decref(msg);
    return 0;
}

const char *ipc_type(json_t *msg)
{
    return json_string_value(json_object_get(msg, "type"));
}

int64_t ipc_rid(json_t *msg)
{
    return json_integer_value(json_object_get(msg, "rid"));
}

json_t *ipc_reply_ok(json_t *req, json_t *extra)
{
    return ipc_msg("ok", ipc_rid(req), extra);
}

json_t *ipc_reply_error(json_t *req, const char *code, const char *message)
{
    json_t *body = json_pack("{s:s, s:s}", "code", code, "message", message);

    if (!body) /* message was not UTF-8: the code still says what went wrong */
        body = json_pack("{s:s, s:s}", "code", code, "message", "(unprintable message)");
    return ipc_msg("error", ipc_rid(req), body);
}

int ipc_unpack(json_t *msg, char *err, size_t errlen, const char *fmt, ...)
{
    json_t *body = json_copy(msg);
    json_error_t e;
    va_list ap;
    int r;

    if (!body)
        return -ENOMEM;
    json_object_del(body, "v");
    json_object_del(body, "type");
    json_object_del(body, "rid");
    va_start(ap, fmt);
    r = json_vunpack_ex(body, &e, JSON_STRICT, fmt, ap);
    va_end(ap);
    if (r < 0) {
        snprintf(err, errlen, "%s", e.text);
        utf8_clip(err); /* jansson cuts its text at 160 bytes, maybe inside a character */
    }
    /* json_copy is shallow: the values unpacked are shared with msg and outlive body. */
    json_decref(body);
    return r < 0 ? -EBADMSG : 0;
}

json_t *ipc_work_assign(int64_t rid, const WorkAssign *w)
{
    return ipc_msg("work.assign", rid,
                   json_pack("{s:s, s:s, s:s, s:i, s:i}", "id", w->id, "task_type", w->task_type,
                             "kind", w->kind, "timeout", w->timeout, "waiting", w->waiting));
}

int ipc_work_assign_unpack(json_t *msg, WorkAssign *ret, char *err, size_t errlen)
{
    WorkAssign w = {0};

    if (ipc_unpack(msg, err, errlen, "{s:s, s:s, s:s, s:i, s:i}", "id", &w.id, "task_type",
                   &w.task_type, "kind", &w.kind, "timeout", &w.timeout, "waiting", &w.waiting) < 0)
        return -EINVAL;
    if (!task_id_valid(w.id)) {
        snprintf(err, errlen, "id is not a task id");
        return -EINVAL;
    }
    *ret = w;
    return 0;
}
