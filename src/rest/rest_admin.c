/* rest_admin.c - the operator's endpoints: the workers' slots, the history of attempts, drain
 * and resume, and the consistency check. They need a token of role admin (or the open API).
 *
 * Everything but the history is a question to the queue, which knows the slots (each pool
 * reports its own) and owns the folders. The history is read straight from data/history.jsonl,
 * which the queue appends one line per finished attempt to: the last lines are read from the
 * end of the file, so a long history costs nothing to ask. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rest.h"
#include "taskmill/ipc.h"

#define HISTORY_LIMIT_DEFAULT 100
#define HISTORY_LIMIT_MAX     1000
#define HISTORY_BLOCK         65536

json_t *queue_reply_body(json_t *reply)
{
    if (!reply || strcmp(ipc_type(reply), "ok")) {
        json_decref(reply);
        return NULL;
    }
    json_object_del(reply, "v");
    json_object_del(reply, "type");
    json_object_del(reply, "rid");
    return reply;
}

/* Asks the queue; the answer's body, or the error the client gets. */
static enum MHD_Result ask_queue(Rest *rest, struct MHD_Connection *c, const char *type,
                                 json_t *body, json_t **ret)
{
    json_t *reply = NULL;
    int r = rest_queue_call(rest, type, body, 5000, &reply);

    if (r < 0)
        return http_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "queue_unavailable",
                          "the queue daemon does not answer: %s", strerror(-r));
    if (!(*ret = queue_reply_body(reply)))
        return http_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error",
                          "the queue could not answer %s", type);
    return MHD_YES;
}

/* The queue's answer to type, as the response; or the error the client gets. */
static enum MHD_Result relay(Rest *rest, struct MHD_Connection *c, const char *type, json_t *body)
{
    json_t *answer = NULL;
    enum MHD_Result q = ask_queue(rest, c, type, body, &answer);

    return answer ? http_json(c, MHD_HTTP_OK, answer) : q;
}

enum MHD_Result admin_workers(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg)
{
    (void)a, (void)arg;
    return relay(rest, c, "workers.get", NULL);
}

enum MHD_Result admin_drain(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg)
{
    (void)a, (void)arg;
    return relay(rest, c, "admin.drain", json_pack("{s:b}", "on", 1));
}

enum MHD_Result admin_resume(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg)
{
    (void)a, (void)arg;
    return relay(rest, c, "admin.drain", json_pack("{s:b}", "on", 0));
}

enum MHD_Result admin_check(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg)
{
    (void)a, (void)arg;
    return relay(rest, c, "admin.check", NULL);
}

/* The last `limit` lines of fd, newest first. The file is read backwards in blocks until the
 * part read holds limit + 1 line ends (or is the whole file); only that part is parsed. */
static int history_tail(int fd, long limit, json_t *out)
{
    struct stat st;
    char *buf = NULL, *nb;
    size_t len = 0, lines = 0, start, i;
    off_t pos;

    if (fstat(fd, &st) < 0)
        return -errno;
    pos = st.st_size;
    while (pos > 0 && lines <= (size_t)limit) {
        size_t n = (size_t)(pos < HISTORY_BLOCK ? pos : HISTORY_BLOCK);
        if (!(nb = malloc(len + n))) {
            free(buf);
            return -ENOMEM;
        }
        pos -= (off_t)n;
        if (pread(fd, nb, n, pos) != (ssize_t)n) {
            free(nb);
            free(buf);
            return -EIO;
        }
        for (i = 0; i < n; i++)
            lines += nb[i] == '\n';
        if (len)
            memcpy(nb + n, buf, len);
        free(buf);
        buf = nb;
        len += n;
    }
    /* From the end: each line between two line ends (the first may be cut off unless pos is 0). */
    for (size_t e = len; e > 0 && (long)json_array_size(out) < limit; e = start) {
        size_t stop = e;
        while (stop > 0 && buf[stop - 1] == '\n')
            stop--;
        for (start = stop; start > 0 && buf[start - 1] != '\n'; start--)
            ;
        if (stop == 0 || (start == 0 && pos > 0))
            break;
        json_t *j = json_loadb(buf + start, stop - start, 0, NULL);
        if (json_is_object(j))
            json_array_append(out, j);
        json_decref(j);
    }
    free(buf);
    return 0;
}

enum MHD_Result admin_history(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg)
{
    const char *lim = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
    long limit = HISTORY_LIMIT_DEFAULT;
    json_t *out;
    char *end;
    int fd, r = 0;

    (void)a, (void)arg;
    if (lim &&
        ((limit = strtol(lim, &end, 10)) < 1 || limit > HISTORY_LIMIT_MAX || *end || end == lim))
        return http_error(c, MHD_HTTP_BAD_REQUEST, "bad_limit", "limit must be 1 to %d",
                          HISTORY_LIMIT_MAX);
    out = json_array();
    fd = openat(rest->data_fd, "history.jsonl", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
        r = history_tail(fd, limit, out);
        close(fd);
    } else if (errno != ENOENT) {
        r = -errno;
    }
    if (r < 0) {
        json_decref(out);
        return http_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error",
                          "cannot read the history: %s", strerror(-r));
    }
    return http_json(c, MHD_HTTP_OK, json_pack("{s:o}", "attempts", out));
}
