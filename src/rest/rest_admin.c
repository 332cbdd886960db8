/* rest_admin.c - the operator's endpoints: the workers' slots, the history of attempts and the
 * throughput it gives, drain and resume, and the consistency check. They need a token of role admin
 * (or the open API).
 *
 * Everything but the history is a question to the queue, which knows the slots (each pool
 * reports its own) and owns the folders. The history is read straight from data/history.jsonl,
 * which the queue appends one line per finished attempt to: the last lines are read from the
 * end of the file, so a long history costs nothing to ask (the throughput reads back one hour). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rest.h"
#include "taskmill/clock.h"
#include "taskmill/ipc.h"

#define HISTORY_LIMIT_DEFAULT 100
#define HISTORY_LIMIT_MAX     1000
#define HISTORY_BLOCK         65536
#define THROUGHPUT_MINUTES    60
#define MINUTE_NS             (60 * (int64_t)1000000000)

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

/* The end of data/history.jsonl, read backwards a block at a time: buf holds the file from pos
 * to its end. */
typedef struct Tail {
    int fd;
    char *buf;
    size_t len;
    off_t pos;
} Tail;

/* Reads the block before what t holds, as large as what it holds already (so a long read copies
 * each byte a bounded number of times): the line ends it added (>= 0), or -errno. */
static long tail_more(Tail *t)
{
    size_t want = t->len > HISTORY_BLOCK ? t->len : HISTORY_BLOCK;
    size_t n = (size_t)t->pos < want ? (size_t)t->pos : want;
    char *nb = malloc(t->len + n + 1);
    long lines = 0;

    if (!nb)
        return -ENOMEM;
    t->pos -= (off_t)n;
    if (pread(t->fd, nb, n, t->pos) != (ssize_t)n) {
        free(nb);
        return -EIO;
    }
    for (size_t i = 0; i < n; i++)
        lines += nb[i] == '\n';
    if (t->len)
        memcpy(nb + n, t->buf, t->len);
    free(t->buf);
    t->buf = nb;
    t->len += n;
    t->buf[t->len] = '\0';
    return lines;
}

/* Each complete line of t, newest first, parsed and handed to fn until it returns false. */
static void tail_each(const Tail *t, bool (*fn)(json_t *entry, void *ctx), void *ctx)
{
    size_t start;

    for (size_t e = t->len; e > 0; e = start) {
        size_t stop = e;
        while (stop > 0 && t->buf[stop - 1] == '\n')
            stop--;
        for (start = stop; start > 0 && t->buf[start - 1] != '\n'; start--)
            ;
        if (stop == 0 || (start == 0 && t->pos > 0)) /* the first may be cut off */
            break;
        json_t *j = json_loadb(t->buf + start, stop - start, 0, NULL);
        bool more = !json_is_object(j) || fn(j, ctx);
        json_decref(j);
        if (!more)
            break;
    }
}

/* Opens data/history.jsonl: 1, 0 when there is none yet, -errno. */
static int tail_open(Rest *rest, Tail *t)
{
    struct stat st;

    *t = (Tail){.fd = openat(rest->data_fd, "history.jsonl", O_RDONLY | O_CLOEXEC | O_NOFOLLOW)};
    if (t->fd < 0)
        return errno == ENOENT ? 0 : -errno;
    if (fstat(t->fd, &st) < 0) {
        int r = -errno;
        close(t->fd);
        t->fd = -1; /* tail_close must not close that number again */
        return r;
    }
    t->pos = st.st_size;
    return 1;
}

static void tail_close(Tail *t)
{
    if (t->fd >= 0)
        close(t->fd);
    free(t->buf);
}

typedef struct Last {
    long limit;
    json_t *out;
} Last;

static bool take_last(json_t *entry, void *ctx)
{
    Last *l = ctx;

    json_array_append(l->out, entry);
    return (long)json_array_size(l->out) < l->limit;
}

/* The last `limit` lines, newest first: blocks are read until they hold limit + 1 line ends (or
 * the whole file); only that part is parsed. */
static int history_tail(Rest *rest, long limit, json_t *out)
{
    Last l = {limit, out};
    Tail t;
    long lines = 0, n = 0;
    int r = tail_open(rest, &t);

    while (r > 0 && t.pos > 0 && lines <= limit && (n = tail_more(&t)) >= 0)
        lines += n;
    if (r > 0 && n >= 0)
        tail_each(&t, take_last, &l);
    tail_close(&t);
    return r < 0 ? r : n < 0 ? (int)n : 0;
}

enum MHD_Result admin_history(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg)
{
    enum MHD_Result answer;
    long limit;
    json_t *out;
    int r;

    (void)a, (void)arg;
    if (!http_limit(c, HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX, &limit, &answer))
        return answer;
    out = json_array();
    if ((r = history_tail(rest, limit, out)) < 0) {
        json_decref(out);
        return http_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error",
                          "cannot read the history: %s", strerror(-r));
    }
    return http_json(c, MHD_HTTP_OK, json_pack("{s:o}", "attempts", out));
}

/* --- GET /v1/workers/throughput: attempts finished per minute over the last hour ------------
 */

typedef struct Minutes {
    int64_t since_ns; /* the start of the oldest minute */
    unsigned count[THROUGHPUT_MINUTES][4];
} Minutes;

static const char *const outcomes[4] = {"done", "failed", "retry", "crashed"};

static int64_t entry_finished(json_t *entry)
{
    int64_t ns;

    return parse_time(json_string_value(json_object_get(entry, "finished_at")) ?: "", &ns) < 0 ? -1
                                                                                               : ns;
}

static bool count_minute(json_t *entry, void *ctx)
{
    Minutes *m = ctx;
    int64_t at = entry_finished(entry);
    const char *outcome = json_string_value(json_object_get(entry, "outcome")) ?: "";

    if (at < 0)
        return true;
    if (at < m->since_ns) /* appended as they finish: what comes next is older still */
        return false;
    int64_t i = (at - m->since_ns) / MINUTE_NS;
    for (int k = 0; k < 4 && i < THROUGHPUT_MINUTES; k++)
        m->count[i][k] += !strcmp(outcome, outcomes[k]);
    return true;
}

/* Whether the oldest complete line t holds finished before since_ns (or t holds the whole file). */
static bool tail_reaches(const Tail *t, int64_t since_ns)
{
    const char *line = t->buf, *nl;
    json_t *j;
    int64_t at;

    if (t->pos == 0)
        return true;
    if (!t->buf || !(line = strchr(t->buf, '\n')))
        return false;
    line++;
    nl = strchr(line, '\n');
    j = json_loadb(line, nl ? (size_t)(nl - line) : strlen(line), 0, NULL);
    at = entry_finished(j);
    json_decref(j);
    return nl && at >= 0 && at < since_ns;
}

static json_t *minutes_json(const Minutes *m)
{
    json_t *a = json_array();
    char at[40];

    for (int i = 0; i < THROUGHPUT_MINUTES; i++) {
        format_time(m->since_ns + i * MINUTE_NS, at, sizeof(at));
        json_array_append_new(a, json_pack("{s:s, s:I, s:I, s:I, s:I}", "start", at, outcomes[0],
                                           (json_int_t)m->count[i][0], outcomes[1],
                                           (json_int_t)m->count[i][1], outcomes[2],
                                           (json_int_t)m->count[i][2], outcomes[3],
                                           (json_int_t)m->count[i][3]));
    }
    return a;
}

enum MHD_Result admin_throughput(Rest *rest, struct MHD_Connection *c, const Auth *a,
                                 const char *arg)
{
    int64_t now = now_ns();
    Minutes m = {.since_ns = (now / MINUTE_NS + 1 - THROUGHPUT_MINUTES) * MINUTE_NS};
    Tail t;
    long n = 0;
    int r = tail_open(rest, &t);

    (void)a, (void)arg;
    while (r > 0 && !tail_reaches(&t, m.since_ns) && (n = tail_more(&t)) >= 0)
        ;
    if (r > 0 && n >= 0)
        tail_each(&t, count_minute, &m);
    tail_close(&t);
    if (r < 0 || n < 0)
        return http_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error",
                          "cannot read the history: %s", strerror(r < 0 ? -r : (int)-n));
    return http_json(c, MHD_HTTP_OK, json_pack("{s:o}", "minutes", minutes_json(&m)));
}
