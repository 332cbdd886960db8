/* fuzz_ipc.c - libFuzzer target for the IPC decoding path (src/common/ipc.c).
 *
 * Any process of our uid may send the queue a datagram; a bad one must get an error reply,
 * never stop a daemon. The input is sent as one datagram over a fresh socketpair(AF_UNIX,
 * SOCK_SEQPACKET), read with ipc_recv, and a decoded message goes through ipc_type, ipc_rid and
 * ipc_unpack with each strict format the daemons use. Checked: a decoded message is an object
 * with "v":1 and a string "type"; exactly one datagram is consumed; a format accepts only its
 * own fields; unpacked strings are the message's own (they outlive ipc_unpack); the replies the
 * queue would send are decoded by ipc_recv again with the same type and rid. */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "taskmill/ipc.h"
#include "taskmill/task.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* abort() unless every field of msg is an envelope field or one of the NULL-terminated keys. */
static void only_fields(json_t *msg, const char *const *keys)
{
    const char *key;
    json_t *v;

    json_object_foreach(msg, key, v)
    {
        bool known = !strcmp(key, "v") || !strcmp(key, "type") || !strcmp(key, "rid");
        for (const char *const *k = keys; *k && !known; k++)
            known = !strcmp(key, *k);
        if (!known)
            abort();
    }
}

/* An unpacked string must be the message's own value, still alive after ipc_unpack. */
static void check_str(json_t *msg, const char *key, const char *s)
{
    if (s != json_string_value(json_object_get(msg, key)) || strlen(s) > IPC_MSG_MAX)
        abort();
}

/* The reply must go out and come back through the codec with the request's rid. */
static void check_reply(int fd_out, int fd_in, json_t *req, json_t *reply, const char *type)
{
    json_t *back = NULL;

    if (!reply || ipc_send_new(fd_out, reply) < 0 || ipc_recv(fd_in, &back) < 0)
        abort();
    if (strcmp(ipc_type(back), type) || ipc_rid(back) != ipc_rid(req))
        abort();
    if (!strcmp(type, "error") && (!json_is_string(json_object_get(back, "code")) ||
                                   !json_is_string(json_object_get(back, "message"))))
        abort(); /* docs/ipc.md: an error reply carries code and message */
    json_decref(back);
}

static void unpack_all(json_t *msg, int fd_out, int fd_in)
{
    static const char *const id[] = {"id", NULL};
    static const char *const done[] = {"id", "outcome", NULL};
    static const char *const finished[] = {"id", "state", NULL};
    static const char *const hello[] = {"role", "workers", NULL};
    static const char *const none[] = {NULL};
    const char *a = NULL, *b = NULL;
    int n = 0;
    char err[256] = "";

    if (ipc_unpack(msg, err, sizeof(err), "{s:s}", "id", &a) == 0) {
        only_fields(msg, id);
        check_str(msg, "id", a);
        (void)task_id_valid(a);
    }
    if (ipc_unpack(msg, err, sizeof(err), "{s:s, s:s}", "id", &a, "outcome", &b) == 0) {
        only_fields(msg, done);
        check_str(msg, "id", a);
        check_str(msg, "outcome", b);
    }
    if (ipc_unpack(msg, err, sizeof(err), "{s:s, s:s}", "id", &a, "state", &b) == 0) {
        only_fields(msg, finished);
        check_str(msg, "state", b);
    }
    if (ipc_unpack(msg, err, sizeof(err), "{s:s, s?i}", "role", &a, "workers", &n) == 0) {
        only_fields(msg, hello);
        check_str(msg, "role", a);
    }
    if (ipc_unpack(msg, err, sizeof(err), "{}") == 0) {
        only_fields(msg, none);
        check_reply(fd_out, fd_in, msg, ipc_reply_ok(msg, NULL), "ok");
    } else {
        check_reply(fd_out, fd_in, msg, ipc_reply_error(msg, "bad_request", err), "error");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *msg = NULL, *extra = NULL;
    int sv[2], r;

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
        abort();
    if (send(sv[0], data, size, MSG_NOSIGNAL) != (ssize_t)size)
        goto done; /* larger than the socket buffer: the kernel refuses it, not our code */
    r = ipc_recv(sv[1], &msg);
    if (r == 0) {
        json_t *v = json_object_get(msg, "v");
        if (!json_is_object(msg) || !json_is_integer(v) || json_integer_value(v) != IPC_VERSION ||
            !ipc_type(msg))
            abort();
        (void)ipc_rid(msg);
        unpack_all(msg, sv[1], sv[0]);
        json_decref(msg);
    }
    if (ipc_recv(sv[1], &extra) != -EAGAIN) /* one datagram in, one datagram consumed */
        abort();
done:
    close(sv[0]);
    close(sv[1]);
    return 0;
}
