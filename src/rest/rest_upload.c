/* rest_upload.c - POST /v1/tasks: a multipart upload streamed to disk, then published.
 *
 * The body is parsed by MHD's post processor. The file part goes straight into
 * data/request/.tmp-<uuid>/upload.partial (never held in memory); small fields are kept up to a
 * limit. At the end, in this order: fsync the file, rename it to its server-chosen name, write
 * request.json (temp, fsync, rename), rename .tmp-<uuid> to <uuid>, fsync data/request. Only
 * then is the job published, the queue told and 201 sent. Anything else removes the
 * temporary directory: an incomplete upload is never queued. upload_recover() mends, at start,
 * what a killed rest left in request/. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "rest.h"
#include "taskmill/ipc.h"
#include "taskmill/jobdir.h"
#include "taskmill/log.h"
#include "taskmill/task.h"
#include "taskmill/tasktype.h"
#include "taskmill/clock.h"
#include "taskmill/taskview.h"
#include "taskmill/files.h"

#define FIELD_MAX  4096
#define PARAMS_MAX 16384

typedef enum {
    F_TASK_TYPE,
    F_FILE_NAME,
    F_FILE_PATH,
    F_PRIORITY,
    F_CALLBACK,
    F_PARAMS,
    F_IDEM,
    F_MAX
} Field;
static const char *const field_names[F_MAX] = {
    "task_type", "file_name", "file_path", "priority", "callback_url", "params", "idempotency_key"};

struct Upload {
    Rest *rest;
    const Auth *auth;
    struct MHD_PostProcessor *pp;
    char id[TASK_ID_LEN + 1];
    char tmp[64];    /* ".tmp-<uuid>" under data/request */
    int dir_fd;      /* the temporary job directory */
    int file_fd;     /* upload.partial */
    uint64_t size;   /* bytes of the file part */
    uint64_t body;   /* bytes of the whole body */
    char *part_name; /* filename= of the file part */
    int file_parts;
    char *fields[F_MAX];
    size_t field_len[F_MAX];
    bool published;
    unsigned err_status; /* first error wins */
    char err_code[40];
    char err_msg[300];
};

static void fail(Upload *u, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail(Upload *u, unsigned status, const char *code, const char *fmt, ...)
{
    va_list ap;

    if (u->err_status)
        return;
    u->err_status = status;
    snprintf(u->err_code, sizeof(u->err_code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(u->err_msg, sizeof(u->err_msg), fmt, ap);
    va_end(ap);
}

static int field_append(Upload *u, Field f, const char *data, uint64_t off, size_t size)
{
    size_t max = f == F_PARAMS ? PARAMS_MAX : FIELD_MAX;
    char *p;

    if (off == 0 && u->fields[f]) {
        fail(u, MHD_HTTP_BAD_REQUEST, "repeated_field", "field '%s' appears more than once",
             field_names[f]);
        return -EINVAL;
    }
    if (u->field_len[f] + size > max) {
        fail(u, MHD_HTTP_BAD_REQUEST, "field_too_long", "field '%s' is longer than %zu bytes",
             field_names[f], max);
        return -EINVAL;
    }
    p = realloc(u->fields[f], u->field_len[f] + size + 1);
    if (!p)
        return -ENOMEM;
    memcpy(p + u->field_len[f], data, size);
    u->field_len[f] += size;
    p[u->field_len[f]] = '\0';
    u->fields[f] = p;
    return 0;
}

static int file_open(Upload *u, const char *filename)
{
    if (u->file_parts++ > 0) {
        fail(u, MHD_HTTP_BAD_REQUEST, "repeated_field", "only one file_data part is allowed");
        return -EINVAL;
    }
    if (filename && !(u->part_name = strdup(filename)))
        return -ENOMEM;
    u->file_fd = openat(u->dir_fd, "upload.partial", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (u->file_fd < 0) {
        fail(u, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error", "cannot store the upload: %s",
             strerror(errno));
        return -errno;
    }
    return 0;
}

static int file_write(Upload *u, const char *data, size_t size)
{
    while (size > 0) {
        ssize_t n = write(u->file_fd, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == ENOSPC) {
            fail(u, MHD_HTTP_INSUFFICIENT_STORAGE, "insufficient_storage",
                 "the server has no space left for this upload");
            return -ENOSPC;
        }
        if (n < 0) {
            fail(u, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error", "cannot store the upload: %s",
                 strerror(errno));
            return -errno;
        }
        data += n;
        size -= (size_t)n;
        u->size += (uint64_t)n;
    }
    return 0;
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *filename, const char *content_type,
                               const char *transfer_encoding, const char *data, uint64_t off,
                               size_t size)
{
    Upload *u = cls;

    (void)kind, (void)content_type, (void)transfer_encoding;
    if (u->err_status)
        return MHD_YES; /* keep parsing to the end, discarding */
    if (!strcmp(key, "file_data")) {
        if (off == 0 && u->file_fd < 0 && file_open(u, filename) < 0)
            return MHD_YES;
        if (off == 0 && u->size > 0) {
            fail(u, MHD_HTTP_BAD_REQUEST, "repeated_field", "only one file_data part is allowed");
            return MHD_YES;
        }
        file_write(u, data, size);
        return MHD_YES;
    }
    for (int f = 0; f < F_MAX; f++)
        if (!strcmp(key, field_names[f])) {
            field_append(u, (Field)f, data, off, size);
            return MHD_YES;
        }
    fail(u, MHD_HTTP_BAD_REQUEST, "unknown_field", "unknown form field '%.64s'", key);
    return MHD_YES;
}

/* Free bytes on the data root's filesystem, less the reserve [rest] min_free_bytes. */
static int64_t space_left(const Rest *rest)
{
    struct statvfs sv;

    if (fstatvfs(rest->request_fd, &sv) < 0)
        return INT64_MAX; /* cannot tell: ENOSPC, if it comes, is still caught */
    return (int64_t)(sv.f_bavail * sv.f_frsize) - (int64_t)rest->conf->min_free_bytes;
}

int upload_begin(Rest *rest, struct MHD_Connection *c, const Auth *a, Upload **ret)
{
    const char *len = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    Upload *u = calloc(1, sizeof(*u));

    if (!u)
        return -ENOMEM;
    *u = (Upload){.rest = rest, .auth = a, .dir_fd = -1, .file_fd = -1};
    *ret = u;
    if (!a->open && tasks_count_owned(rest, a->name) >= (unsigned)rest->conf->max_tasks_per_token) {
        fail(u, MHD_HTTP_TOO_MANY_REQUESTS, "too_many_tasks",
             "this token has %d unfinished tasks, the server's limit",
             rest->conf->max_tasks_per_token);
        return 1;
    }
    if (len && strtoull(len, NULL, 10) > rest->conf->max_upload_bytes) {
        fail(u, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large",
             "the body is larger than the server's limit of %" PRIu64 " bytes",
             rest->conf->max_upload_bytes);
        return 1;
    }
    if (len && (int64_t)strtoull(len, NULL, 10) > space_left(rest)) {
        fail(u, MHD_HTTP_INSUFFICIENT_STORAGE, "insufficient_storage",
             "the server has not enough free space for this upload");
        return 1;
    }
    u->pp = MHD_create_post_processor(c, 65536, on_part, u);
    if (!u->pp) {
        fail(u, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "not_multipart",
             "POST /v1/tasks takes multipart/form-data (curl -F)");
        return 1;
    }
    task_id_new(u->id);
    snprintf(u->tmp, sizeof(u->tmp), ".tmp-%s", u->id);
    if (mkdirat(rest->request_fd, u->tmp, 0750) < 0 ||
        (u->dir_fd = openat(rest->request_fd, u->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        fail(u, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error", "cannot store the upload: %s",
             strerror(errno));
        return 1;
    }
    return 0;
}

enum MHD_Result upload_feed(Upload *u, const char *data, size_t *size)
{
    size_t n = *size;

    *size = 0;
    u->body += n;
    if (!u->err_status && u->body > u->rest->conf->max_upload_bytes) {
        /* A body without Content-Length that grows past the limit: cut it. MHD 0.9.75 takes
         * no response in the middle of a body, so the connection is closed. */
        fail(u, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large", "the body is too large");
        return MHD_NO;
    }
    /* A body of unknown length: look at the free space every 16 MiB. */
    if (!u->err_status && u->body / (16 << 20) != (u->body - n) / (16 << 20) &&
        space_left(u->rest) < 0) {
        fail(u, MHD_HTTP_INSUFFICIENT_STORAGE, "insufficient_storage",
             "the server ran out of free space during this upload");
        return MHD_NO;
    }
    if (!u->err_status && MHD_post_process(u->pp, data, n) != MHD_YES)
        fail(u, MHD_HTTP_BAD_REQUEST, "malformed_multipart", "the multipart body is malformed");
    /* After an error the rest of the body (bounded by the limit) is read and dropped, and the
     * error is answered at the end: MHD takes no response in the middle of a body. */
    return MHD_YES;
}

/* Fills t from the form fields, or fails the upload with the first problem found. */
static int form_to_task(Upload *u, Task *t)
{
    const TaskType *tt;
    const char *name = u->fields[F_FILE_NAME] ? u->fields[F_FILE_NAME] : u->part_name;
    const char *why;
    char err[256];
    json_t *client = NULL;
    char *end;

    if (!u->fields[F_TASK_TYPE])
        return fail(u, MHD_HTTP_BAD_REQUEST, "missing_field", "task_type is required"), -EINVAL;
    if (u->file_fd < 0)
        return fail(u, MHD_HTTP_BAD_REQUEST, "missing_field", "file_data is required"), -EINVAL;
    if (!name)
        return fail(u, MHD_HTTP_BAD_REQUEST, "missing_field",
                    "file_name is required when the file part has no filename"),
               -EINVAL;
    tt = tasktype_find(u->fields[F_TASK_TYPE]);
    if (!tt)
        return fail(u, MHD_HTTP_UNPROCESSABLE_CONTENT, "unknown_task_type",
                    "unknown task_type '%.64s' (GET /v1/task-types lists them)",
                    u->fields[F_TASK_TYPE]),
               -EINVAL;
    if ((why = task_file_name_problem(name)))
        return fail(u, MHD_HTTP_BAD_REQUEST, "bad_file_name", "%s", why), -EINVAL;
    if (tasktype_accepts_name(tt, name) < 0)
        return fail(u, MHD_HTTP_UNPROCESSABLE_CONTENT, "unsupported_file_type",
                    "'%.200s' does not have a video extension this task type takes", name),
               -EINVAL;
    if (u->size == 0)
        return fail(u, MHD_HTTP_BAD_REQUEST, "empty_file", "file_data is empty"), -EINVAL;
    t->priority = TASK_PRIORITY_DEFAULT;
    if (u->fields[F_PRIORITY]) {
        long p = strtol(u->fields[F_PRIORITY], &end, 10);
        if (end == u->fields[F_PRIORITY] || *end || p < TASK_PRIORITY_MIN || p > TASK_PRIORITY_MAX)
            return fail(u, MHD_HTTP_BAD_REQUEST, "bad_priority",
                        "priority must be a whole number from 0 to 1000"),
                   -EINVAL;
        t->priority = (int)p;
    }
    if (u->fields[F_CALLBACK] && strncmp(u->fields[F_CALLBACK], "http://", 7) &&
        strncmp(u->fields[F_CALLBACK], "https://", 8))
        return fail(u, MHD_HTTP_BAD_REQUEST, "bad_callback_url",
                    "callback_url must be an http:// or https:// URL"),
               -EINVAL;
    if (u->fields[F_PARAMS]) {
        client = json_loads(u->fields[F_PARAMS], JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(client)) {
            json_decref(client);
            return fail(u, MHD_HTTP_BAD_REQUEST, "bad_params", "params must be a JSON object"),
                   -EINVAL;
        }
    }
    if (tasktype_params(tt, u->rest->conf, client, &t->params, err, sizeof(err)) < 0) {
        json_decref(client);
        return fail(u, MHD_HTTP_UNPROCESSABLE_CONTENT, "invalid_params", "%s", err), -EINVAL;
    }
    json_decref(client);
    memcpy(t->id, u->id, sizeof(t->id));
    t->task_type = strdup(tt->name);
    t->file_name = strdup(name);
    t->file_path = strdup(u->fields[F_FILE_PATH] ? u->fields[F_FILE_PATH] : "");
    t->callback_url = u->fields[F_CALLBACK] ? strdup(u->fields[F_CALLBACK]) : NULL;
    t->idempotency_key = u->fields[F_IDEM] ? strdup(u->fields[F_IDEM]) : NULL;
    t->owner = u->auth->open ? NULL : strdup(u->auth->name);
    t->size = u->size;
    t->created_ns = now_ns();
    return 0;
}

/* "input.<ext>" with the client's extension, lower-cased; the client never names a path. */
static char *input_name_for(const char *file_name)
{
    const char *dot = strrchr(file_name, '.');
    char *s;

    if (asprintf(&s, "input%s", dot ? dot : "") < 0)
        return NULL;
    for (char *p = s; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return s;
}

static int publish(Upload *u, Task *t)
{
    int r = 0;

    if (fsync(u->file_fd) < 0)
        return -errno;
    close(u->file_fd);
    u->file_fd = -1;
    t->input_name = input_name_for(t->file_name);
    if (!t->input_name)
        return -ENOMEM;
    if (renameat(u->dir_fd, "upload.partial", u->dir_fd, t->input_name) < 0)
        return -errno;
    if ((r = task_save(u->dir_fd, t)) < 0) /* fsyncs the job directory too */
        return r;
    if (renameat2(u->rest->request_fd, u->tmp, u->rest->request_fd, u->id, RENAME_NOREPLACE) < 0)
        return -errno;
    u->published = true;
    return fsync(u->rest->request_fd) < 0 ? -errno : 0;
}

/* The task object with Location: 201 for a new task, 200 for the one a key already made. */
static enum MHD_Result respond_task(Rest *rest, struct MHD_Connection *c, const char *id,
                                    unsigned status)
{
    struct MHD_Response *resp;
    json_t *view;
    char location[64], *s;
    enum MHD_Result ret;
    Stage stage;
    int fd, r = jobdir_find_open(rest->data_fd, id, &stage, &fd);

    if (r == 0) { /* the queue may be moving the job on right now: read it through its fd */
        r = task_view_at(fd, stage, &view);
        close(fd);
    }
    if (r < 0)
        return http_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error",
                          "task stored but unreadable");
    s = json_dumps(view, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    json_decref(view);
    if (!s)
        return MHD_NO;
    resp = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
    snprintf(location, sizeof(location), "/v1/tasks/%s", id);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json; charset=utf-8");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location);
    ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* The job is durable in request/; a lost message only delays it to the queue's next start,
 * when it rescans request/. */
static void tell_queue(Upload *u)
{
    json_t *reply = NULL;
    int r =
        rest_queue_call(u->rest, "job.submitted", json_pack("{s:s}", "id", u->id), 5000, &reply);

    if (r < 0 || strcmp(ipc_type(reply), "ok"))
        log_task(LOG_WARNING, u->id, "queue not told (%s); it will pick the job up at start",
                 r < 0 ? strerror(-r) : "error reply");
    json_decref(reply);
}

/* Before publishing: a known key answers with its task (*ret_existing set), a fresh key is
 * recorded. Fails the upload on a bad or contended key. */
static int key_check(Upload *u, char ret_existing[TASK_ID_LEN + 1])
{
    const char *key = u->fields[F_IDEM];
    const char *owner = u->auth->open ? NULL : u->auth->name;
    int r;

    ret_existing[0] = '\0';
    if (!key)
        return 0;
    if (!idem_key_valid(key))
        return fail(u, MHD_HTTP_BAD_REQUEST, "bad_idempotency_key",
                    "idempotency_key must be 1 to 200 printable ASCII characters"),
               -EINVAL;
    if (idem_lookup(u->rest, owner, key, ret_existing) == 0)
        return 0;
    r = idem_record(u->rest, owner, key, u->id);
    if (r == -EEXIST)
        return fail(u, MHD_HTTP_CONFLICT, "duplicate_in_progress",
                    "another upload with this idempotency_key is in progress"),
               r;
    if (r < 0)
        return fail(u, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error", "cannot record the key: %s",
                    strerror(-r)),
               r;
    return 0;
}

static void discard(Upload *u);

enum MHD_Result upload_finish(Upload *u, struct MHD_Connection *c)
{
    char existing[TASK_ID_LEN + 1] = "";
    Task t = {0};
    int r;

    if (u->pp && MHD_destroy_post_processor(u->pp) != MHD_YES)
        fail(u, MHD_HTTP_BAD_REQUEST, "malformed_multipart",
             "the multipart body is incomplete (unterminated boundary?)");
    u->pp = NULL;
    if (!u->err_status && form_to_task(u, &t) == 0 && key_check(u, existing) == 0 && !*existing &&
        (r = publish(u, &t)) < 0)
        fail(u, r == -ENOSPC ? MHD_HTTP_INSUFFICIENT_STORAGE : MHD_HTTP_INTERNAL_SERVER_ERROR,
             r == -ENOSPC ? "insufficient_storage" : "io_error", "cannot store the upload: %s",
             strerror(-r));
    if (u->published)
        log_task(LOG_INFO, u->id, "received file_name='%s' size=%" PRIu64 " priority=%d",
                 t.file_name, t.size, t.priority);
    task_free(&t);
    if (u->err_status) {
        discard(u); /* before answering: a client that saw the error sees no leftover */
        return http_error(c, u->err_status, u->err_code, "%s", u->err_msg);
    }
    if (*existing) {
        log_task(LOG_INFO, existing, "repeated idempotency_key: answered with the existing task");
        return respond_task(u->rest, c, existing, MHD_HTTP_OK);
    }
    tell_queue(u);
    return respond_task(u->rest, c, u->id, MHD_HTTP_CREATED);
}

/* Closes the upload's files and removes its temporary directory unless it was published. */
static void discard(Upload *u)
{
    if (u->file_fd >= 0)
        close(u->file_fd);
    if (u->dir_fd >= 0)
        close(u->dir_fd);
    u->file_fd = u->dir_fd = -1;
    if (!u->published && u->tmp[0])
        rm_rf_at(u->rest->request_fd, u->tmp);
    u->tmp[0] = '\0';
}

void upload_free(Upload *u)
{
    if (u->pp)
        MHD_destroy_post_processor(u->pp);
    discard(u);
    for (int f = 0; f < F_MAX; f++)
        free(u->fields[f]);
    free(u->part_name);
    free(u);
}

/* At start no upload of this process exists: a request/.tmp-<id> is one a killed rest left
 * behind, and is removed; a published request/<id> whose job.submitted was lost with it is
 * told to the queue now (a queue that is down scans request/ when it starts). */
static int recover_one(const char *name, void *userdata)
{
    Rest *rest = userdata;
    json_t *reply = NULL;

    if (!strncmp(name, ".tmp-", 5)) {
        log_info("removing %s, an upload a previous rest left unfinished", name);
        rm_rf_at(rest->request_fd, name);
        return 0;
    }
    if (!task_id_valid(name))
        return 0;
    if (rest_queue_call(rest, "job.submitted", json_pack("{s:s}", "id", name), 5000, &reply) == 0)
        log_task(LOG_INFO, name, "told the queue of a job published before a restart");
    json_decref(reply);
    return 0;
}

void upload_recover(Rest *rest)
{
    jobdir_each_entry(rest->data_fd, STAGE_REQUEST, recover_one, rest);
}
