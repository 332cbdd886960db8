/* rest_tasks.c - reading tasks, downloading results, deleting, and the status endpoints.
 *
 * Reads go straight to the job directories (read-only); deletes and status questions go to
 * the queue daemon. Results are streamed from the open file with sendfile, never copied into
 * memory, with single-range Range support. */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rest.h"
#include "taskmill/clock.h"
#include "taskmill/index.h"
#include "taskmill/ipc.h"
#include "taskmill/jobdir.h"
#include "taskmill/log.h"
#include "taskmill/result.h"
#include "taskmill/task.h"
#include "taskmill/taskview.h"
#include "taskmill/files.h"

#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX     1000

static enum MHD_Result not_found(struct MHD_Connection *c, const char *id)
{
    return http_error(c, MHD_HTTP_NOT_FOUND, "task_not_found", "no task %s", id);
}

/* Who owns a job whose request.json task_load refuses (a job the queue failed with
 * bad_request_file): the owner member if it is a string, else nobody (the open API and admins
 * still see it). Such a task can still be shown and deleted. */
static int owner_of_broken(int fd, Task *ret)
{
    json_t *req = NULL;
    const char *owner, *key;
    int r = json_read_at(fd, "request.json", &req);

    *ret = (Task){0};
    if (r == 0 && (owner = json_string_value(json_object_get(req, "owner"))))
        ret->owner = strdup(owner);
    if (r == 0 && (key = json_string_value(json_object_get(req, "idempotency_key"))))
        ret->idempotency_key = strdup(key);
    json_decref(req);
    return r;
}

/* The task's request.json, when a is allowed to see the task; another token's task is "not
 * found", exactly like a task that does not exist. */
static int find_visible(Rest *rest, const Auth *a, const char *id, Stage *ret_stage, Task *ret)
{
    char err[128];
    Task t;
    int fd, r = jobdir_find_open(rest->data_fd, id, ret_stage, &fd);

    if (r < 0)
        return r;
    r = task_load(fd, &t, err, sizeof(err));
    if (r < 0 && r != -ENOENT)
        r = owner_of_broken(fd, &t);
    if (r == 0 && !auth_sees(a, t.owner)) {
        task_free(&t);
        r = -ENOENT;
    }
    close(fd);
    if (r < 0)
        return r;
    if (ret)
        *ret = t;
    else
        task_free(&t);
    return 0;
}

/* One read of the job's files gives both the view and the owner it is shown to. */
enum MHD_Result tasks_get(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *id)
{
    json_t *view = NULL;
    char *owner = NULL;
    Stage s;
    int fd, r = jobdir_find_open(rest->data_fd, id, &s, &fd);

    if (r == 0) {
        r = task_view_owner_at(fd, s, &owner, &view);
        close(fd);
    }
    if (r == 0 && !auth_sees(a, owner)) {
        json_decref(view);
        r = -ENOENT;
    }
    free(owner);
    if (r < 0)
        return not_found(c, id);
    return http_json(c, MHD_HTTP_OK, view);
}

/* 0: whole file or one satisfiable range; -ERANGE: unsatisfiable; -EINVAL: ignored (RFC 9110
 * lets a server ignore a Range it does not understand and send the whole file). */
/* One or more digits, nothing else: no sign, no space (RFC 9110's 1*DIGIT). */
static const char *digits(const char *s, unsigned long long *ret)
{
    unsigned long long v = 0;
    const char *p = s;

    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (ULLONG_MAX - (unsigned)(*p - '0')) / 10)
            return NULL;
        v = v * 10 + (unsigned)(*p - '0');
    }
    *ret = v;
    return p > s ? p : NULL;
}

int tasks_range_parse(const char *h, uint64_t size, Range *ret)
{
    unsigned long long a, b;
    const char *p;

    *ret = (Range){0, size ? size - 1 : 0, false};
    if (!h)
        return 0;
    if (strncasecmp(h, "bytes=", 6))
        return -EINVAL;
    h += 6;
    if (*h == '-') { /* the last b bytes */
        if (!(p = digits(h + 1, &b)) || *p)
            return -EINVAL;
        if (b == 0 || size == 0)
            return -ERANGE;
        *ret = (Range){b >= size ? 0 : size - b, size - 1, true};
        return 0;
    }
    if (!(p = digits(h, &a)) || *p++ != '-')
        return -EINVAL;
    if (!*p)
        b = size ? size - 1 : 0;
    else if (!(p = digits(p, &b)) || *p || b < a)
        return -EINVAL;
    if (a >= size)
        return -ERANGE;
    *ret = (Range){a, b >= size ? size - 1 : b, true};
    return 0;
}

/* RFC 6266 filename plus an RFC 5987 filename* for names that are not plain ASCII. */
static void disposition(const char *name, char *buf, size_t len)
{
    size_t o = (size_t)snprintf(buf, len, "attachment; filename=\"");

    for (const unsigned char *p = (const unsigned char *)name; *p && o + 4 < len; p++)
        buf[o++] = (*p < 0x20 || *p >= 0x7f || *p == '"' || *p == '\\') ? '_' : (char)*p;
    o += (size_t)snprintf(buf + o, len - o, "\"; filename*=UTF-8''");
    for (const unsigned char *p = (const unsigned char *)name; *p && o + 4 < len; p++)
        if (isalnum(*p) || strchr("!#$&+-.^_`|~", *p))
            buf[o++] = (char)*p;
        else
            o += (size_t)snprintf(buf + o, len - o, "%%%02X", *p);
    buf[o < len ? o : len - 1] = '\0';
}

static int result_open(Rest *rest, const char *id, json_t **ret_result, int *ret_fd)
{
    json_t *result;
    const char *disk;
    int job_fd, fd, r = jobdir_open(rest->data_fd, STAGE_DONE, id, &job_fd);

    if (r < 0)
        return r;
    r = json_read_at(job_fd, "result.json", &result);
    if (r < 0) {
        close(job_fd);
        return r;
    }
    disk = json_string_value(json_object_get(result, "disk_name"));
    if (!disk || task_file_name_problem(disk))
        r = -EBADMSG; /* result.json names no file we would open */
    else if ((fd = openat(job_fd, disk, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
        r = -errno;
    close(job_fd);
    if (r < 0) {
        json_decref(result);
        return r;
    }
    *ret_result = result;
    *ret_fd = fd;
    return 0;
}

static enum MHD_Result send_range(struct MHD_Connection *c, int fd, uint64_t size, const Range *rg,
                                  const char *name, const char *sha256)
{
    uint64_t len = rg->last - rg->first + 1;
    struct MHD_Response *resp;
    char buf[1024];
    enum MHD_Result ret;

    resp = MHD_create_response_from_fd_at_offset64(size ? len : 0, fd, (int64_t)rg->first);
    if (!resp) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, result_media_type(name));
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    disposition(name ? name : "result", buf, sizeof(buf));
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_DISPOSITION, buf);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    if (sha256) {
        snprintf(buf, sizeof(buf), "\"%.64s\"", sha256);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, buf);
    }
    if (rg->partial) {
        snprintf(buf, sizeof(buf), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, rg->first, rg->last,
                 size);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, buf);
    }
    ret = http_queue(c, rg->partial ? MHD_HTTP_PARTIAL_CONTENT : MHD_HTTP_OK, resp);
    if (ret == MHD_YES)
        metrics_bytes(0, size ? len : 0);
    MHD_destroy_response(resp); /* closes fd once sent */
    return ret;
}

enum MHD_Result tasks_send_file(struct MHD_Connection *c, int fd, const char *name,
                                const char *sha256)
{
    struct stat st;
    Range rg;
    int r;

    if (fstat(fd, &st) < 0) {
        close(fd);
        return http_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error", "cannot read the file");
    }
    r = tasks_range_parse(MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE),
                          (uint64_t)st.st_size, &rg);
    if (r == -EINVAL)
        r = tasks_range_parse(NULL, (uint64_t)st.st_size, &rg);
    if (r == -ERANGE) {
        char buf[64];
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
        snprintf(buf, sizeof(buf), "bytes */%" PRIu64, (uint64_t)st.st_size);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, buf);
        close(fd);
        enum MHD_Result ret = http_queue(c, MHD_HTTP_RANGE_NOT_SATISFIABLE, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    return send_range(c, fd, (uint64_t)st.st_size, &rg, name, sha256);
}

enum MHD_Result tasks_result(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *id)
{
    enum MHD_Result ret;
    json_t *result;
    Stage s;
    int fd, r;

    if (find_visible(rest, a, id, &s, NULL) < 0)
        return not_found(c, id);
    if (s != STAGE_DONE)
        return http_error(c, MHD_HTTP_CONFLICT, "not_done", "task %s is %s, not done", id,
                          stage_state(s));
    if ((r = result_open(rest, id, &result, &fd)) == -ENOENT)
        return not_found(c, id); /* deleted meanwhile */
    if (r < 0)
        return http_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error",
                          "the result of task %s cannot be read: %s", id, strerror(-r));
    ret = tasks_send_file(c, fd, json_string_value(json_object_get(result, "file_name")),
                          json_string_value(json_object_get(result, "sha256")));
    json_decref(result);
    return ret;
}

enum MHD_Result tasks_delete(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *id)
{
    json_t *reply;
    const char *code;
    Task t;
    Stage s;
    int r;

    if (find_visible(rest, a, id, &s, &t) < 0)
        return not_found(c, id);
    r = rest_queue_call(rest, "job.delete", json_pack("{s:s}", "id", id), 30000, &reply);
    if (r == 0 && t.idempotency_key && !strcmp(ipc_type(reply), "ok"))
        idem_forget(rest, t.owner, t.idempotency_key, id);
    task_free(&t);
    if (r < 0)
        return http_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "queue_unavailable",
                          "the queue daemon does not answer: %s", strerror(-r));
    code = json_string_value(json_object_get(reply, "code"));
    if (!strcmp(ipc_type(reply), "ok")) {
        json_decref(reply);
        return http_empty(c, MHD_HTTP_NO_CONTENT);
    }
    r = code && !strcmp(code, "not_found");
    json_decref(reply);
    if (r)
        return not_found(c, id);
    return http_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error",
                      "the task could not be deleted");
}

enum MHD_Result tasks_retry(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *id)
{
    json_t *reply;
    const char *code;
    Stage s;
    int r;

    if (find_visible(rest, a, id, &s, NULL) < 0)
        return not_found(c, id);
    r = rest_queue_call(rest, "job.retry", json_pack("{s:s}", "id", id), 10000, &reply);
    if (r < 0)
        return http_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "queue_unavailable",
                          "the queue daemon does not answer: %s", strerror(-r));
    code = strcmp(ipc_type(reply), "ok") ? json_string_value(json_object_get(reply, "code")) : "";
    r = !code                         ? -EIO
        : !strcmp(code, "not_found")  ? -ENOENT
        : !strcmp(code, "not_failed") ? -EBUSY
        : !strcmp(code, "input_gone") ? -ENODATA
        : *code                       ? -EIO
                                      : 0;
    json_decref(reply);
    if (r == -ENOENT)
        return not_found(c, id);
    if (r == -EBUSY)
        return http_error(c, MHD_HTTP_CONFLICT, "not_failed",
                          "only a failed task can be retried; this one is %s", stage_state(s));
    if (r == -ENODATA)
        return http_error(c, MHD_HTTP_GONE, "input_gone",
                          "the task's input is no longer kept on the server ([queue] "
                          "keep_failed_input); submit it again");
    if (r < 0)
        return http_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error",
                          "the task could not be put back");
    return tasks_show(rest, c, id, MHD_HTTP_OK, false);
}

enum MHD_Result tasks_show(Rest *rest, struct MHD_Connection *c, const char *id, unsigned status,
                           bool location)
{
    char where[64];
    json_t *view;
    Stage s;
    int fd, r = jobdir_find_open(rest->data_fd, id, &s, &fd);

    if (r == 0) { /* the queue may be moving the job on right now: read it through its fd */
        r = task_view_at(fd, s, &view);
        close(fd);
    }
    if (r < 0)
        return http_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error",
                          "task %s is stored but cannot be shown", id);
    snprintf(where, sizeof(where), "/v1/tasks/%s", id);
    return http_json_with(c, status, view, location ? where : NULL);
}

/* The task index, opened on first use (the queue creates it at its first start) and again
 * when the queue replaced it; a query holds the lock, so the index is never reopened under a
 * reader. Queries take a millisecond or two at most: one at a time is fine. */
static pthread_mutex_t index_lock = PTHREAD_MUTEX_INITIALIZER;

static Index *index_lock_open(Rest *rest)
{
    int r;

    pthread_mutex_lock(&index_lock);
    if ((r = index_keep_open(&rest->index, rest->conf->root)) < 0) {
        log_warning("cannot open the task index: %s", strerror(-r));
        pthread_mutex_unlock(&index_lock);
        return NULL;
    }
    return rest->index;
}

static enum MHD_Result no_index(struct MHD_Connection *c)
{
    return http_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "queue_unavailable",
                      "the task index cannot be read (has taskmill-queue started on this data "
                      "root?)");
}

int tasks_cursor_parse(const char *s, int64_t *ret_ns, char ret_id[TASK_ID_LEN + 1])
{
    char *end;
    long long ns;

    if (!s)
        return 0;
    if (*s < '0' || *s > '9') /* strtoll would skip spaces and take a sign */
        return -EINVAL;
    errno = 0;
    ns = strtoll(s, &end, 10);
    if (errno || end == s || *end != '.' || !task_id_valid(end + 1))
        return -EINVAL;
    *ret_ns = ns;
    memcpy(ret_id, end + 1, TASK_ID_LEN + 1);
    return 0;
}

/* The page of rows the index gave (one more than limit when there is a next page), each shown
 * as its folder says now. */
static json_t *list_page(Rest *rest, const IndexRow *v, size_t n, bool one_state, unsigned limit)
{
    json_t *tasks = json_array(), *view;
    char cursor[80];
    size_t shown = n < limit ? n : limit;

    for (size_t i = 0; i < shown; i++) {
        int fd, r = task_view(rest->data_fd, v[i].stage, v[i].id, &view);
        Stage s;

        /* Moved on since the index said where: in a list of all states it is shown where it
         * is now. */
        if (r == -ENOENT && !one_state && jobdir_find_open(rest->data_fd, v[i].id, &s, &fd) == 0) {
            r = task_view_at(fd, s, &view);
            close(fd);
        }
        if (r == 0)
            json_array_append_new(tasks, view);
    }
    if (shown < n) {
        snprintf(cursor, sizeof(cursor), "%" PRId64 ".%s", v[shown - 1].created_ns,
                 v[shown - 1].id);
        return json_pack("{s:o, s:s}", "tasks", tasks, "next_cursor", cursor);
    }
    return json_pack("{s:o, s:n}", "tasks", tasks, "next_cursor");
}

int tasks_usage(Rest *rest, const char *owner, Usage *ret)
{
    Index *ix = index_lock_open(rest);
    int r;

    *ret = (Usage){0};
    if (!ix)
        return -ENOENT;
    r = index_usage(ix, owner, &ret->unfinished, &ret->bytes);
    pthread_mutex_unlock(&index_lock);
    return r;
}

enum MHD_Result tasks_list(Rest *rest, struct MHD_Connection *c, const Auth *a)
{
    const char *state = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "state");
    char after_id[TASK_ID_LEN + 1] = "";
    IndexQuery q = {.owner = a->admin ? NULL : a->name,
                    .context = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "context"),
                    .batch = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "batch"),
                    .now_ns = now_ns(),
                    .after_ns = INT64_MIN,
                    .after_id = after_id};
    const char *order = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "order");
    bool scheduled = state && !strcmp(state, "scheduled");
    enum MHD_Result answer;
    long limit;
    IndexRow *rows;
    Index *ix;
    size_t n;
    int r;
    json_t *page;

    q.stage = scheduled ? STAGE_PENDING : state ? stage_from_state(state) : STAGE_INVALID;
    if (state && q.stage == STAGE_INVALID)
        return http_error(c, MHD_HTTP_BAD_REQUEST, "bad_state",
                          "state must be received, scheduled, pending, in_progress, done or "
                          "failed");
    if (q.stage == STAGE_PENDING)
        q.timing = scheduled ? 2 : 1;
    if (q.batch && !task_id_valid(q.batch))
        return http_error(c, MHD_HTTP_BAD_REQUEST, "bad_id",
                          "batch ids are lower-case UUIDs like "
                          "3f1c2d4e-5b6a-4c7d-8e9f-0a1b2c3d4e5f");
    if (!http_limit(c, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, &limit, &answer))
        return answer;
    if (order && strcmp(order, "oldest") && strcmp(order, "newest"))
        return http_error(c, MHD_HTTP_BAD_REQUEST, "bad_order", "order must be oldest or newest");
    if ((q.newest = order && !strcmp(order, "newest")))
        q.after_ns = INT64_MAX; /* the first page starts from the newest */
    if (tasks_cursor_parse(MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "cursor"),
                           &q.after_ns, after_id) < 0)
        return http_error(c, MHD_HTTP_BAD_REQUEST, "bad_cursor", "cursor is not one we gave out");
    q.limit = (unsigned)limit + 1; /* one more: is there a next page? */
    if (!(ix = index_lock_open(rest)))
        return no_index(c);
    r = index_list(ix, &q, &rows, &n);
    pthread_mutex_unlock(&index_lock);
    if (r < 0)
        return no_index(c);
    page = list_page(rest, rows, n, q.stage != STAGE_INVALID, (unsigned)limit);
    free(rows);
    return http_json(c, MHD_HTTP_OK, page);
}

static int queue_status(Rest *rest, json_t **ret)
{
    json_t *reply;
    int r = rest_queue_call(rest, "status.get", NULL, 3000, &reply);

    if (r < 0)
        return r;
    *ret = queue_reply_body(reply);
    return *ret ? 0 : -EPROTO;
}

enum MHD_Result tasks_status(Rest *rest, struct MHD_Connection *c)
{
    json_t *st;
    int r = queue_status(rest, &st);

    if (r < 0)
        return http_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "queue_unavailable",
                          "the queue daemon does not answer: %s", strerror(-r));
    json_object_del(st, "peers");
    return http_json(c, MHD_HTTP_OK, st);
}

enum MHD_Result tasks_health(Rest *rest, struct MHD_Connection *c)
{
    json_t *st = NULL, *peers;
    bool queue = queue_status(rest, &st) == 0;
    bool convert = false, callback = false;

    peers = st ? json_object_get(st, "peers") : NULL;
    convert = json_integer_value(json_object_get(peers, "convert")) > 0;
    callback = json_integer_value(json_object_get(peers, "callback")) > 0;
    json_decref(st);
    return http_json(c, queue && convert && callback ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                     json_pack("{s:s, s:{s:b, s:b, s:b, s:b}}", "status",
                               queue && convert && callback ? "ok" : "degraded", "daemons", "rest",
                               1, "queue", queue, "convert", convert, "callback", callback));
}
