/* rest_upload.c - POST /v1/tasks: a multipart upload streamed to disk, or a JSON request for a
 * type that takes no file, then published. What the fields mean is rest_submit.c's.
 *
 * A multipart body is parsed as it arrives (rest_multipart.c). The file part goes straight into
 * data/request/.tmp-<uuid>/upload.partial (never held in memory); the small fields are kept
 * up to a limit and checked as soon as each one ends (valid UTF-8, no control characters, the
 * idempotency key claimed), so a bad field or a repeated key stops the storing of the file at
 * once. libmicrohttpd takes no answer in the middle of a body: the rest of it is read and
 * dropped (bounded by [rest] max_upload_bytes) and the answer follows. What the headers alone
 * decide (limits, quota, an Idempotency-Key header) is answered before the body.
 *
 * At the end, in this order: fsync the file, rename it to its server-chosen name, write
 * request.json (temp, fsync, rename), publish .tmp-<uuid> as <uuid> (jobdir_publish: rename,
 * fsync of data/request). Only then is the queue told and 201 sent. Anything else removes the
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
#include "rest_multipart.h"
#include "taskmill/clock.h"
#include "taskmill/files.h"
#include "taskmill/ipc.h"
#include "taskmill/jobdir.h"
#include "taskmill/log.h"
#include "taskmill/task.h"
#include "taskmill/taskview.h"
#include "taskmill/text.h"
#include "taskmill/tasktype.h"

#define FIELD_MAX  4096
#define PARAMS_MAX 16384
#define JSON_MAX   (1 << 20)

enum { PART_FILE = SUBMIT_MAX, PART_NONE };

/* The error code of a field whose text is not valid UTF-8 or holds control characters. */
static const char *const field_codes[SUBMIT_MAX] = {
    [SUBMIT_TYPE] = "bad_encoding",         [SUBMIT_FILE_NAME] = "bad_file_name",
    [SUBMIT_FILE_PATH] = "bad_file_path",   [SUBMIT_PRIORITY] = "bad_priority",
    [SUBMIT_CALLBACK] = "bad_callback_url", [SUBMIT_CALLBACK_DONE] = "bad_callback_url",
    [SUBMIT_PARAMS] = "bad_params",         [SUBMIT_CONTEXT] = "bad_context",
    [SUBMIT_BATCH] = "batch_not_found",     [SUBMIT_RUN_AT] = "bad_run_at",
    [SUBMIT_DELAY] = "bad_delay",           [SUBMIT_TIMEOUT] = "bad_timeout",
    [SUBMIT_IDEM] = "bad_idempotency_key"};

struct Upload {
    Rest *rest;
    const Auth *auth;
    Multipart *mp; /* a multipart body; NULL for JSON */
    char *json;    /* a JSON body, as it arrives */
    size_t json_len;
    char id[TASK_ID_LEN + 1];
    char tmp[64]; /* ".tmp-<uuid>" under data/request */
    int dir_fd;   /* the temporary job directory */
    int file_fd;  /* upload.partial */
    char *wbuf;   /* the file's bytes not yet written (UPLOAD_WBUF), or NULL */
    size_t wlen;
    uint64_t written, started; /* bytes written; bytes whose writeback was started */
    uint64_t size;             /* bytes of the file part */
    uint64_t body;             /* bytes of the whole body */
    int part;                  /* the part being read: SUBMIT_*, PART_FILE or PART_NONE */
    char *part_name;           /* filename= of the file part */
    int file_parts;
    char *fields[SUBMIT_MAX];
    size_t field_len[SUBMIT_MAX];
    char key[256];                  /* the idempotency key this upload claimed, or "" */
    char existing[TASK_ID_LEN + 1]; /* the task a repeated key names: answer 200 with it */
    bool published;
    SubmitError err; /* the first error wins */
};

#define fail(u, ...) submit_fail(&(u)->err, __VA_ARGS__)

#define UPLOAD_WBUF      (128 * 1024)
#define UPLOAD_WRITEBACK (16 * 1024 * 1024)

/* The upload's outcome is known (an error, or a repeated key): the rest is not stored. */
static bool settled(const Upload *u)
{
    return u->err.status || u->existing[0];
}

static const char *owner_of(const Upload *u)
{
    return u->auth->open ? NULL : u->auth->name;
}

/* --- the idempotency key ---------------------------------------------------------------- */

/* Claims key for this upload; a repeated key settles the upload (200 or 409). */
static int key_claim(Upload *u, const char *key)
{
    IdemClaim claim;
    int r;

    if (!idem_key_valid(key))
        return fail(u, MHD_HTTP_BAD_REQUEST, "bad_idempotency_key",
                    "idempotency_key must be 1 to 200 printable ASCII characters");
    r = idem_claim(u->rest, owner_of(u), key, u->id, u->existing, &claim);
    if (r < 0)
        return fail(u, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error", "cannot record the key: %s",
                    strerror(-r));
    if (claim == IDEM_BUSY)
        return fail(u, MHD_HTTP_CONFLICT, "duplicate_in_progress",
                    "another upload with this idempotency_key is being stored right now");
    if (claim == IDEM_NEW)
        snprintf(u->key, sizeof(u->key), "%s", key);
    return 0;
}

/* --- the form fields, checked as each one ends ------------------------------------------- */

static void field_check(Upload *u, int f)
{
    const char *v = u->fields[f];

    if (strlen(v) != u->field_len[f] || !utf8_valid(v))
        fail(u, MHD_HTTP_BAD_REQUEST, field_codes[f], "field '%s' is not valid UTF-8 text",
             submit_field_name(f));
    else if (f != SUBMIT_PARAMS && f != SUBMIT_CALLBACK_DONE && text_has_control(v))
        fail(u, MHD_HTTP_BAD_REQUEST, field_codes[f],
             "field '%s' must not contain control characters", submit_field_name(f));
    else if (f == SUBMIT_IDEM && u->key[0] && strcmp(v, u->key))
        fail(u, MHD_HTTP_BAD_REQUEST, "bad_idempotency_key",
             "idempotency_key differs from the Idempotency-Key header");
    else if (f == SUBMIT_IDEM && !u->key[0])
        key_claim(u, v);
}

static int field_append(Upload *u, int f, const char *data, size_t size)
{
    size_t max = f == SUBMIT_PARAMS ? PARAMS_MAX : FIELD_MAX;
    char *p;

    if (u->field_len[f] + size > max)
        return fail(u, MHD_HTTP_BAD_REQUEST, "field_too_long",
                    "field '%s' is longer than %zu bytes", submit_field_name(f), max);
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
    if (u->file_parts++ > 0)
        return fail(u, MHD_HTTP_BAD_REQUEST, "repeated_field",
                    "only one file_data part is allowed");
    if (filename && !(u->part_name = strdup(filename)))
        return -ENOMEM;
    u->file_fd = openat(u->dir_fd, "upload.partial", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (u->file_fd < 0) {
        fail(u, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error", "cannot store the upload: %s",
             strerror(errno));
        return -EIO;
    }
    return 0;
}

/* Writes the buffered bytes; every UPLOAD_WRITEBACK bytes the kernel is asked to start writing
 * them out (without waiting), so the fsync at the end of a large upload finds little left. */
static int file_flush(Upload *u)
{
    int r = u->wlen ? fd_write_all(u->file_fd, u->wbuf, u->wlen) : 0;

    if (r < 0)
        return r;
    u->written += u->wlen;
    u->wlen = 0;
    if (u->written - u->started >= UPLOAD_WRITEBACK) {
        sync_file_range(u->file_fd, (off_t)u->started, (off_t)(u->written - u->started),
                        SYNC_FILE_RANGE_WRITE);
        u->started = u->written;
    }
    return 0;
}

/* libmicrohttpd hands the body over in pieces of its connection buffer (tens of KiB): they are
 * gathered into UPLOAD_WBUF-sized writes. */
static int file_append(Upload *u, const char *data, size_t size)
{
    int r = 0;

    if (!u->wbuf && !(u->wbuf = malloc(UPLOAD_WBUF)))
        return -ENOMEM;
    while (r == 0 && size > 0) {
        size_t n = UPLOAD_WBUF - u->wlen < size ? UPLOAD_WBUF - u->wlen : size;
        memcpy(u->wbuf + u->wlen, data, n);
        u->wlen += n;
        data += n;
        size -= n;
        if (u->wlen == UPLOAD_WBUF)
            r = file_flush(u);
    }
    return r;
}

static int file_write(Upload *u, const char *data, size_t size)
{
    int r = file_append(u, data, size);

    if (r == -ENOSPC)
        return fail(u, MHD_HTTP_INSUFFICIENT_STORAGE, "insufficient_storage",
                    "the server has no space left for this upload");
    if (r < 0)
        return fail(u, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error", "cannot store the upload: %s",
                    strerror(-r));
    u->size += size;
    return 0;
}

/* Multipart callbacks: a negative return stops the parser; the reason is in u->err_*. */
static int on_part_begin(void *ud, const char *name, const char *filename, const char *ctype)
{
    Upload *u = ud;
    int f = submit_field(name);

    (void)ctype;
    if (!strcmp(name, "file_data")) {
        u->part = PART_FILE;
        return file_open(u, filename);
    }
    if (f < 0)
        return fail(u, MHD_HTTP_BAD_REQUEST, "unknown_field", "unknown form field '%.64s'", name);
    if (u->fields[f])
        return fail(u, MHD_HTTP_BAD_REQUEST, "repeated_field", "field '%s' appears more than once",
                    name);
    u->fields[f] = strdup("");
    u->part = f;
    return u->fields[f] ? 0 : -ENOMEM;
}

static int on_part_data(void *ud, const char *data, size_t len)
{
    Upload *u = ud;

    return u->part == PART_FILE ? file_write(u, data, len) : field_append(u, u->part, data, len);
}

static int on_part_end(void *ud)
{
    Upload *u = ud;

    if (u->part < SUBMIT_MAX)
        field_check(u, u->part);
    u->part = PART_NONE;
    return settled(u) ? -ECANCELED : 0;
}

static const MultipartCallbacks form_callbacks = {on_part_begin, on_part_data, on_part_end};

/* --- before the body ---------------------------------------------------------------------- */

/* Free bytes on the data root's filesystem, less the reserve [rest] min_free_bytes. */
static int64_t space_left(const Rest *rest)
{
    struct statvfs sv;

    if (fstatvfs(rest->request_fd, &sv) < 0)
        return INT64_MAX; /* cannot tell: ENOSPC, if it comes, is still caught */
    return (int64_t)(sv.f_bavail * sv.f_frsize) - (int64_t)rest->conf->min_free_bytes;
}

/* The token's limits: unfinished tasks, and the bytes it stores (with this upload's length,
 * when known). */
static int check_usage(Upload *u, uint64_t adding)
{
    const Conf *c = u->rest->conf;
    Usage use;

    if (u->auth->open)
        return 0;
    if (tasks_usage(u->rest, u->auth->name, &use) < 0)
        return fail(u, MHD_HTTP_SERVICE_UNAVAILABLE, "queue_unavailable",
                    "this token's tasks cannot be counted: the task index cannot be read (has "
                    "taskmill-queue started on this data root?)");
    if (use.unfinished >= (unsigned)c->max_tasks_per_token)
        return fail(u, MHD_HTTP_TOO_MANY_REQUESTS, "too_many_tasks",
                    "this token has %u unfinished tasks, the server's limit", use.unfinished);
    if (c->max_bytes_per_token && use.bytes + adding > c->max_bytes_per_token)
        return fail(u, MHD_HTTP_INSUFFICIENT_STORAGE, "quota_exceeded",
                    "this token stores %" PRIu64 " bytes; with this upload it would pass its "
                    "quota of %" PRIu64 " (delete finished tasks to make room)",
                    use.bytes, c->max_bytes_per_token);
    return 0;
}

/* A JSON request (a type without a file), or a multipart form. */
static int body_kind(Upload *u, struct MHD_Connection *c)
{
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");

    if (ct && !strncasecmp(ct, "application/json", 16) &&
        (!ct[16] || ct[16] == ';' || ct[16] == ' ')) {
        u->json = malloc(1);
        return u->json ? 0 : -ENOMEM;
    }
    if (multipart_new(ct, &form_callbacks, u, &u->mp) < 0)
        return fail(u, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "not_multipart",
                    "POST /v1/tasks takes multipart/form-data (curl -F) for a task with a file, "
                    "or application/json for one without");
    return 0;
}

/* What the headers tell: 1 when the answer is known already. */
static int check_headers(Upload *u, struct MHD_Connection *c)
{
    const char *len = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
    uint64_t n = len ? strtoull(len, NULL, 10) : 0;
    const Conf *conf = u->rest->conf;

    if (n > conf->max_upload_bytes)
        return fail(u, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large",
                    "the body is larger than the server's limit of %" PRIu64 " bytes",
                    conf->max_upload_bytes),
               1;
    if (check_usage(u, n) < 0)
        return 1;
    if (len && (int64_t)n > space_left(u->rest))
        return fail(u, MHD_HTTP_INSUFFICIENT_STORAGE, "insufficient_storage",
                    "the server has not enough free space for this upload"),
               1;
    if (body_kind(u, c) < 0 || u->err.status)
        return 1;
    if (u->json && n > JSON_MAX)
        return fail(u, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large",
                    "a JSON request is at most %d bytes", JSON_MAX),
               1;
    /* The key as a header is looked at before the body: a repeated POST is answered before
     * its file is sent again (with Expect: 100-continue, before a byte of it). */
    if (key && key_claim(u, key) < 0)
        return 1;
    return u->existing[0] ? 1 : 0;
}

int upload_begin(Rest *rest, struct MHD_Connection *c, const Auth *a, Upload **ret)
{
    Upload *u = calloc(1, sizeof(*u));

    if (!u)
        return -ENOMEM;
    *u = (Upload){.rest = rest, .auth = a, .dir_fd = -1, .file_fd = -1, .part = PART_NONE};
    *ret = u;
    task_id_new(u->id);
    if (check_headers(u, c))
        return 1;
    if (u->json)
        return 0; /* its folder is made once the request is known to be good */
    snprintf(u->tmp, sizeof(u->tmp), ".tmp-%s", u->id);
    if (mkdirat(rest->request_fd, u->tmp, 0750) < 0 ||
        (u->dir_fd = openat(rest->request_fd, u->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        fail(u, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error", "cannot store the upload: %s",
             strerror(errno));
        return 1;
    }
    return 0;
}

/* --- the body ----------------------------------------------------------------------------- */

enum MHD_Result upload_feed(Upload *u, const char *data, size_t *size)
{
    size_t n = *size;
    int r;

    metrics_bytes(n, 0);
    *size = 0;
    u->body += n;
    /* The limit holds whatever happened before: a refused upload is not read for ever. MHD
     * takes no answer in the middle of a body, so the connection is closed. */
    if (u->body > u->rest->conf->max_upload_bytes) {
        fail(u, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large", "the body is too large");
        return MHD_NO;
    }
    if (settled(u))
        return MHD_YES; /* read and dropped; the answer follows the body */
    if (u->json) {
        char *p;
        if (u->json_len + n > JSON_MAX) {
            fail(u, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large",
                 "a JSON request is at most %d bytes", JSON_MAX);
            return MHD_NO; /* chunked and over: MHD takes no answer mid-body */
        }
        if (!(p = realloc(u->json, u->json_len + n + 1)))
            return MHD_NO;
        memcpy(p + u->json_len, data, n);
        u->json = p;
        u->json_len += n;
        return MHD_YES;
    }
    /* A body of unknown length: look at the free space every 16 MiB. */
    if (u->body / (16 << 20) != (u->body - n) / (16 << 20) && space_left(u->rest) < 0) {
        fail(u, MHD_HTTP_INSUFFICIENT_STORAGE, "insufficient_storage",
             "the server ran out of free space during this upload");
        return MHD_NO;
    }
    r = multipart_feed(u->mp, data, n);
    if (r == -EBADMSG)
        fail(u, MHD_HTTP_BAD_REQUEST, "malformed_multipart", "the multipart body is malformed");
    else if (r < 0 && !settled(u))
        fail(u, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error", "cannot store the upload: %s",
             strerror(-r));
    return MHD_YES;
}

/* --- after the body ------------------------------------------------------------------------- */

/* The JSON request's fields, checked the way form fields are. */
static int json_fields(Upload *u)
{
    if (submit_from_json(u->json, u->json_len, u->fields, &u->err) < 0)
        return -EINVAL;
    for (int f = 0; f < SUBMIT_MAX && !settled(u); f++)
        if (u->fields[f]) {
            u->field_len[f] = strlen(u->fields[f]);
            field_check(u, f);
        }
    return settled(u) ? -EINVAL : 0;
}

/* Fills t from the fields, or fails the upload with the first problem found. */
static int form_to_task(Upload *u, Task *t)
{
    SubmitFile file = {.part_name = u->part_name, .size = u->size};

    if (u->mp && u->file_fd < 0 &&
        tasktype_find(u->rest->conf, u->fields[SUBMIT_TYPE] ? u->fields[SUBMIT_TYPE] : "") &&
        tasktype_find(u->rest->conf, u->fields[SUBMIT_TYPE])->input != TYPE_INPUT_NONE)
        return fail(u, MHD_HTTP_BAD_REQUEST, "missing_field", "file_data is required");
    if (submit_build(u->rest, u->auth, u->fields, u->file_fd >= 0 ? &file : NULL, t, &u->err) < 0)
        return -EINVAL;
    memcpy(t->id, u->id, sizeof(t->id));
    t->idempotency_key = u->key[0] ? strdup(u->key) : NULL;
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

/* A JSON request's job folder, made once the request is known to be good. */
static int make_folder(Upload *u)
{
    snprintf(u->tmp, sizeof(u->tmp), ".tmp-%s", u->id);
    if (mkdirat(u->rest->request_fd, u->tmp, 0750) < 0)
        return -errno;
    u->dir_fd = openat(u->rest->request_fd, u->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return u->dir_fd < 0 ? -errno : 0;
}

static int publish(Upload *u, Task *t)
{
    int r;

    if (u->file_fd >= 0) {
        if ((r = file_flush(u)) < 0)
            return r;
        if (fsync(u->file_fd) < 0)
            return -errno;
        close(u->file_fd);
        u->file_fd = -1;
        t->input_name = input_name_for(t->file_name);
        if (!t->input_name)
            return -ENOMEM;
        if (renameat(u->dir_fd, "upload.partial", u->dir_fd, t->input_name) < 0)
            return -errno;
    } else if (u->dir_fd < 0 && (r = make_folder(u)) < 0) {
        return r;
    }
    /* The batch learns of the task before the queue can run it, so it cannot finish first. */
    if (t->batch && batch_join(u->rest, u->auth, t->batch, u->id, &u->err) < 0)
        return -EINVAL;
    if ((r = task_save(u->dir_fd, t)) < 0) /* fsyncs the job directory too */
        return r;
    return jobdir_publish(u->rest->data_fd, u->tmp, u->id, &u->published);
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

static void discard(Upload *u);

/* Checks what only the whole form tells, then stores the task. */
static void complete(Upload *u)
{
    Task t = {0};
    int r;

    if (!settled(u) && u->mp && multipart_finish(u->mp) < 0)
        fail(u, MHD_HTTP_BAD_REQUEST, "malformed_multipart",
             "the multipart body is incomplete (unterminated boundary?)");
    if (!settled(u) && u->json)
        json_fields(u);
    if (settled(u) || form_to_task(u, &t) < 0 || check_usage(u, u->size) < 0) {
        task_free(&t);
        return;
    }
    r = publish(u, &t);
    if (r < 0 && !u->err.status)
        fail(u, r == -ENOSPC ? MHD_HTTP_INSUFFICIENT_STORAGE : MHD_HTTP_INTERNAL_SERVER_ERROR,
             r == -ENOSPC ? "insufficient_storage" : "io_error", "cannot store the upload: %s",
             strerror(-r));
    if (u->published) { /* a published job the queue must hear of, even after an error */
        metrics_submitted(t.task_type);
        log_event(LOG_INFO, u->id, t.task_type, "received",
                  "received file_name='%s' type=%s size=%" PRIu64 " priority=%d",
                  t.file_name ? t.file_name : "", t.task_type, t.size, t.priority);
    }
    task_free(&t);
}

enum MHD_Result upload_finish(Upload *u, struct MHD_Connection *c)
{
    complete(u);
    if (u->published)
        tell_queue(u);
    if (u->err.status) {
        discard(u); /* before answering: a client that saw the error sees no leftover */
        return http_error(c, u->err.status, u->err.code, "%s", u->err.message);
    }
    if (u->existing[0]) {
        discard(u);
        log_task(LOG_INFO, u->existing,
                 "repeated idempotency_key: answered with the existing task");
        return tasks_show(u->rest, c, u->existing, MHD_HTTP_OK, true);
    }
    discard(u); /* the key stays with the published task; later repeats get 200 */
    return tasks_show(u->rest, c, u->id, MHD_HTTP_CREATED, true);
}

/* Closes the upload's files, removes its temporary directory unless it was published, and
 * lets go of its key (kept only by a published task). */
static void discard(Upload *u)
{
    if (u->file_fd >= 0)
        close(u->file_fd);
    if (u->dir_fd >= 0)
        close(u->dir_fd);
    u->file_fd = u->dir_fd = -1;
    free(u->wbuf);
    u->wbuf = NULL;
    u->wlen = 0;
    if (!u->published && u->tmp[0])
        rm_rf_at(u->rest->request_fd, u->tmp);
    u->tmp[0] = '\0';
    if (u->key[0])
        idem_release(u->rest, owner_of(u), u->key, u->id, u->published);
    u->key[0] = '\0';
}

void upload_free(Upload *u)
{
    multipart_free(u->mp);
    free(u->json);
    discard(u);
    for (int f = 0; f < SUBMIT_MAX; f++)
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
