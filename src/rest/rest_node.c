/* rest_node.c - the endpoints of conversion nodes (docs/cluster.md): GET /v1/node (who am I),
 * GET /v1/node/tasks/<id>/input and PUT /v1/node/tasks/<id>/output.
 *
 * The cluster bridge (taskmill-cluster) records who runs a task in in_progress/<id>/node.json:
 * the node's token name and the delivery (the JetStream delivery count of the task's message).
 * A node token may read the input only of a task assigned to it, and write only
 * output.node-<delivery>.partial inside that task's folder: the body is hashed as it streams and
 * renamed to output.node-<delivery> only when its size and SHA-256 match what the node announced
 * and the delivery is still the current one. The bridge takes it from there. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rest.h"
#include "taskmill/files.h"
#include "taskmill/jobdir.h"
#include "taskmill/log.h"
#include "taskmill/task.h"

struct NodePut {
    Rest *rest;
    int job_fd, fd;
    int64_t delivery;
    uint64_t expect, got;
    EVP_MD_CTX *md;
    char id[TASK_ID_LEN + 1];
    char sha256[SHA256_HEX_LEN + 1];
    char partial[64];
    bool stored;     /* renamed to output.node-<delivery> */
    unsigned status; /* an error decided on the way: answered at the end */
    char code[40], message[256];
};

/* The task's folder when it runs on the asking node: 0 with the job's fd and the delivery
 * node.json names; -ENOENT when it is not in progress on a node, or on another one. */
static int assignment(Rest *rest, const Auth *a, const char *id, int *ret_fd, int64_t *ret_delivery)
{
    json_t *j = NULL;
    const char *node;
    int fd, r = jobdir_open(rest->data_fd, STAGE_IN_PROGRESS, id, &fd);

    if (r < 0)
        return -ENOENT;
    if (json_read_at(fd, "node.json", &j) < 0 ||
        !(node = json_string_value(json_object_get(j, "node"))) ||
        !json_is_integer(json_object_get(j, "delivery")) || (!a->open && strcmp(node, a->name))) {
        json_decref(j);
        close(fd);
        return -ENOENT;
    }
    *ret_delivery = json_integer_value(json_object_get(j, "delivery"));
    json_decref(j);
    *ret_fd = fd;
    return 0;
}

static enum MHD_Result not_assigned(struct MHD_Connection *c, const char *id)
{
    return http_error(c, MHD_HTTP_NOT_FOUND, "not_assigned", "task %s is not running on this node",
                      id);
}

enum MHD_Result node_whoami(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg)
{
    (void)rest, (void)arg;
    return http_json(c, MHD_HTTP_OK, json_pack("{s:s, s:s}", "name", a->name, "role", "node"));
}

enum MHD_Result node_input(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *id)
{
    char err[128];
    int64_t delivery;
    Task t;
    int job_fd, fd;
    enum MHD_Result ret;

    if (assignment(rest, a, id, &job_fd, &delivery) < 0)
        return not_assigned(c, id);
    if (task_load(job_fd, &t, err, sizeof(err)) < 0 || !t.input_name) {
        close(job_fd);
        if (err[0])
            task_free(&t);
        return http_error(c, MHD_HTTP_CONFLICT, "no_input", "task %s has no input file", id);
    }
    fd = openat(job_fd, t.input_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    close(job_fd);
    if (fd < 0) {
        task_free(&t);
        return http_error(c, MHD_HTTP_CONFLICT, "no_input", "the input of task %s is gone", id);
    }
    ret = tasks_send_file(c, fd, t.file_name, NULL);
    task_free(&t);
    return ret;
}

static int put_fail(NodePut *p, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int put_fail(NodePut *p, unsigned status, const char *code, const char *fmt, ...)
{
    va_list ap;

    if (p->status)
        return 1;
    p->status = status;
    snprintf(p->code, sizeof(p->code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(p->message, sizeof(p->message), fmt, ap);
    va_end(ap);
    return 1;
}

static bool hex64(const char *s)
{
    return s && strlen(s) == SHA256_HEX_LEN && strspn(s, "0123456789abcdef") == SHA256_HEX_LEN;
}

/* The checks a PUT passes before its body is read; 1 with p->status set when it fails. */
static int put_check(NodePut *p, struct MHD_Connection *c, const Auth *a)
{
    const char *len = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    const char *sha = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Taskmill-Sha256");
    const char *dv = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "delivery");
    uint64_t limit =
        p->rest->conf->max_output_bytes ? p->rest->conf->max_output_bytes : UINT64_C(64) << 30;
    char *end = NULL;
    long long d = dv ? strtoll(dv, &end, 10) : 0;

    if (!dv || !*dv || *end || d < 1)
        return put_fail(p, MHD_HTTP_BAD_REQUEST, "bad_delivery",
                        "?delivery= must name the delivery the node runs (1 or more)");
    if (!hex64(sha))
        return put_fail(p, MHD_HTTP_BAD_REQUEST, "bad_sha256",
                        "X-Taskmill-Sha256 must be the result's SHA-256 in lower-case hex");
    if (!len)
        return put_fail(p, MHD_HTTP_LENGTH_REQUIRED, "length_required",
                        "the result needs a Content-Length");
    p->expect = strtoull(len, NULL, 10);
    if (p->expect > limit)
        return put_fail(p, MHD_HTTP_CONTENT_TOO_LARGE, "result_too_large",
                        "the result is larger than %" PRIu64 " bytes", limit);
    if (assignment(p->rest, a, p->id, &p->job_fd, &p->delivery) < 0)
        return put_fail(p, MHD_HTTP_NOT_FOUND, "not_assigned",
                        "task %s is not running on this node", p->id);
    if (p->delivery != d)
        return put_fail(p, MHD_HTTP_CONFLICT, "stale_delivery",
                        "delivery %lld of task %s is over: the task runs as delivery %" PRId64, d,
                        p->id, p->delivery);
    memcpy(p->sha256, sha, sizeof(p->sha256));
    snprintf(p->partial, sizeof(p->partial), "output.node-%" PRId64 ".partial", p->delivery);
    p->fd =
        openat(p->job_fd, p->partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (p->fd < 0 || !(p->md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(p->md, EVP_sha256(), NULL))
        return put_fail(p, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error",
                        "cannot store the result: %s", strerror(errno));
    return 0;
}

int node_put_begin(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *id,
                   NodePut **ret)
{
    NodePut *p = calloc(1, sizeof(*p));

    if (!p)
        return -ENOMEM;
    *p = (NodePut){.rest = rest, .job_fd = -1, .fd = -1};
    snprintf(p->id, sizeof(p->id), "%s", id);
    *ret = p;
    return put_check(p, c, a);
}

enum MHD_Result node_put_feed(NodePut *p, const char *data, size_t *size)
{
    size_t n = *size;

    *size = 0;
    p->got += n;
    metrics_bytes(n, 0);
    if (p->status)
        return MHD_YES; /* read and dropped: the answer at the end says why */
    if (p->got > p->expect)
        put_fail(p, MHD_HTTP_BAD_REQUEST, "length_mismatch", "more bytes than Content-Length");
    else if (fd_write_all(p->fd, data, n) < 0)
        put_fail(p,
                 errno == ENOSPC ? MHD_HTTP_INSUFFICIENT_STORAGE : MHD_HTTP_INTERNAL_SERVER_ERROR,
                 "io_error", "cannot store the result: %s", strerror(errno));
    else if (!EVP_DigestUpdate(p->md, data, n))
        put_fail(p, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error", "cannot hash the result");
    return MHD_YES;
}

/* The body is complete: size, hash, still the current delivery, then the rename. */
static void put_settle(NodePut *p)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    char hex[SHA256_HEX_LEN + 1], done[64];
    unsigned mdlen = 0;
    int64_t now_delivery = p->delivery;
    int job_fd;

    if (p->got != p->expect) {
        put_fail(p, MHD_HTTP_BAD_REQUEST, "length_mismatch", "the body ended early");
        return;
    }
    if (!EVP_DigestFinal_ex(p->md, md, &mdlen) || mdlen * 2 != SHA256_HEX_LEN) {
        put_fail(p, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error", "cannot hash the result");
        return;
    }
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (strcmp(hex, p->sha256)) {
        put_fail(p, 422, "checksum_mismatch", "the body's SHA-256 is %s, not %s", hex, p->sha256);
        return;
    }
    if (fsync(p->fd) < 0) {
        put_fail(p, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error", "cannot store the result: %s",
                 strerror(errno));
        return;
    }
    /* The task may have moved on while the body streamed (another delivery, a delete). */
    if (assignment(p->rest, &(Auth){.open = true}, p->id, &job_fd, &now_delivery) == 0)
        close(job_fd);
    if (now_delivery != p->delivery) {
        put_fail(p, MHD_HTTP_CONFLICT, "stale_delivery",
                 "task %s moved on while its result arrived", p->id);
        return;
    }
    snprintf(done, sizeof(done), "output.node-%" PRId64, p->delivery);
    if (renameat(p->job_fd, p->partial, p->job_fd, done) == 0)
        p->stored = true;
    if (!p->stored || fsync(p->job_fd) < 0)
        put_fail(p, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error", "cannot store the result: %s",
                 strerror(errno));
}

enum MHD_Result node_put_finish(NodePut *p, struct MHD_Connection *c)
{
    if (!p->status)
        put_settle(p);
    if (p->status) {
        log_task(LOG_NOTICE, p->id, "refused a node's result: %s", p->message);
        return http_error(c, p->status, p->code, "%s", p->message);
    }
    log_task(LOG_INFO, p->id, "stored a node's result of delivery %" PRId64 " (%" PRIu64 " bytes)",
             p->delivery, p->got);
    return http_json(c, MHD_HTTP_CREATED,
                     json_pack("{s:I, s:s, s:I}", "size", (json_int_t)p->got, "sha256", p->sha256,
                               "delivery", (json_int_t)p->delivery));
}

void node_put_free(NodePut *p)
{
    if (p->fd >= 0 && !p->stored)
        unlinkat(p->job_fd, p->partial, 0); /* refused, or the connection broke */
    if (p->fd >= 0)
        close(p->fd);
    if (p->job_fd >= 0)
        close(p->job_fd);
    EVP_MD_CTX_free(p->md);
    free(p);
}
