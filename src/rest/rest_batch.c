/* rest_batch.c - batches: tasks followed together, with one callback when the last of them ends
 * (seed 003's batches; the folder is described in batch.h).
 *
 * POST /v1/batches makes data/batches/<id>/batch.json (written whole: temp, fsync, rename, then
 * the folder published by rename); tasks join with batch=<id>, each recorded as tasks/<task id>
 * before the task is published. A batch belongs to the token that made it. It is sealed by
 * POST /v1/batches/<id>/close or by reaching its size; once sealed and every task has ended,
 * taskmill-callback records that it finished (callback.json) and delivers its callback once.
 * Its counts are computed from its tasks' folders when asked. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rest.h"
#include "taskmill/batch.h"
#include "taskmill/ipc.h"
#include "taskmill/log.h"
#include "taskmill/clock.h"
#include "taskmill/files.h"
#include "taskmill/jobdir.h"
#include "taskmill/taskview.h"
#include "taskmill/text.h"

/* Joining and closing take this lock, so no task joins a batch after the close that sealed it
 * was answered. */
static pthread_mutex_t batch_lock = PTHREAD_MUTEX_INITIALIZER;

/* The batch id, if a can see it: 0, -ENOENT. */
static int batch_visible(Rest *rest, const Auth *a, const char *id, int *ret_fd, json_t **ret_b,
                         json_t **ret_cb)
{
    int fd, r = batch_open(rest->batches_fd, id, &fd);

    if (r < 0)
        return r;
    *ret_cb = NULL;
    r = batch_read(fd, ret_b, ret_cb);
    if (r == 0 && !auth_sees(a, json_string_value(json_object_get(*ret_b, "owner")))) {
        json_decref(*ret_b);
        json_decref(*ret_cb);
        r = -ENOENT;
    }
    if (r < 0)
        close(fd);
    else
        *ret_fd = fd;
    return r;
}

int batch_join(Rest *rest, const Auth *a, const char *id, const char *task, SubmitError *e)
{
    json_t *b = NULL, *cb = NULL;
    BatchCounts n;
    int fd, r;

    pthread_mutex_lock(&batch_lock);
    r = batch_visible(rest, a, id, &fd, &b, &cb);
    if (r < 0) {
        pthread_mutex_unlock(&batch_lock);
        return submit_fail(e, MHD_HTTP_NOT_FOUND, "batch_not_found", "no batch %.40s", id);
    }
    r = batch_count(-1, fd, BATCH_MEMBERS, &n);
    if (r == 0 && batch_sealed(b, &n))
        r = submit_fail(e, MHD_HTTP_CONFLICT, "batch_sealed",
                        "batch %s takes no more tasks: it was closed or has all %lld of its size",
                        id, (long long)json_integer_value(json_object_get(b, "size")));
    else if (r == 0 && task && (r = batch_add_member(fd, task)) < 0)
        submit_fail(e, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error", "cannot join batch %s: %s", id,
                    strerror(-r));
    else if (r < 0)
        submit_fail(e, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error", "cannot read batch %s: %s", id,
                    strerror(-r));
    pthread_mutex_unlock(&batch_lock);
    close(fd);
    json_decref(b);
    json_decref(cb);
    return r < 0 ? r : e->status ? -EINVAL : 0;
}

/* --- POST /v1/batches ---------------------------------------------------------------------------
 */

/* Writes batch.json of a new batch in a temporary folder, then publishes the folder. */
static int batch_write(Rest *rest, json_t *batch, const char *id)
{
    char tmp[64];
    int fd, r;

    snprintf(tmp, sizeof(tmp), ".tmp-%s", id);
    if (mkdirat(rest->batches_fd, tmp, 0750) < 0)
        return -errno;
    fd = openat(rest->batches_fd, tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    r = fd < 0 ? -errno : json_write_at(fd, "batch.json", batch);
    if (fd >= 0)
        close(fd);
    if (r == 0 && renameat2(rest->batches_fd, tmp, rest->batches_fd, id, RENAME_NOREPLACE) < 0)
        r = -errno;
    if (r == 0 && fsync(rest->batches_fd) < 0)
        r = -errno;
    if (r < 0)
        rm_rf_at(rest->batches_fd, tmp);
    return r;
}

/* {"context":..., "size":N, "callback_url":...} or {..., "callback_done":{...}} */
static int batch_fields(const char *body, size_t len, json_t **ret, SubmitError *e)
{
    json_t *j = len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL) : json_object();
    const char *context = NULL, *url = NULL;
    char *done_text = NULL, *cb_url = NULL, *cb_method = NULL;
    json_t *done = NULL, *size = NULL;

    if (!json_is_object(j) ||
        json_unpack(j, "{s?s, s?o, s?s, s?o !}", "context", &context, "size", &size, "callback_url",
                    &url, "callback_done", &done) < 0) {
        json_decref(j);
        return submit_fail(e, MHD_HTTP_BAD_REQUEST, "bad_json",
                           "a batch is {\"context\": text, \"size\": tasks, \"callback_url\": "
                           "url} (each optional)");
    }
    done_text = done ? json_dumps(done, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (submit_context(context, e) == 0 &&
        submit_callback(url, done_text, &cb_url, &cb_method, e) == 0 && size &&
        (!json_is_integer(size) || json_integer_value(size) < 1 ||
         json_integer_value(size) > BATCH_SIZE_MAX))
        submit_fail(e, MHD_HTTP_BAD_REQUEST, "bad_size", "size is a number of tasks, 1 to %d",
                    BATCH_SIZE_MAX);
    if (!e->status)
        *ret = json_pack("{s:s*, s:O*, s:s*, s:s*, s:b}", "context", context, "size", size,
                         "callback_url", cb_url, "callback_method", cb_method, "closed", 0);
    free(done_text);
    free(cb_url);
    free(cb_method);
    json_decref(j);
    return e->status ? -EINVAL : 0;
}

/* --- GET /v1/batches/<id> -----------------------------------------------------------------------
 */

/* The batch object of id as a sees it: 0, -ENOENT (none, or not a's), -errno (counting). */
static int batch_object(Rest *rest, const Auth *a, const char *id, json_t **ret)
{
    json_t *b = NULL, *cb = NULL;
    BatchCounts n;
    int fd, r;

    if (batch_visible(rest, a, id, &fd, &b, &cb) < 0)
        return -ENOENT;
    r = batch_count(rest->data_fd, fd, BATCH_VIEWS, &n);
    close(fd);
    *ret = r < 0 ? NULL : batch_view(b, cb, &n);
    json_decref(b);
    json_decref(cb);
    return r;
}

static enum MHD_Result batch_answer(Rest *rest, struct MHD_Connection *c, const Auth *a,
                                    const char *id, unsigned status)
{
    char location[64];
    json_t *view;
    int r = batch_object(rest, a, id, &view);

    if (r == -ENOENT)
        return http_error(c, MHD_HTTP_NOT_FOUND, "batch_not_found", "no batch %s", id);
    if (r < 0)
        return http_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error",
                          "cannot count the tasks of batch %s: %s", id, strerror(-r));
    snprintf(location, sizeof(location), "/v1/batches/%s", id);
    return http_json_with(c, status, view, status == MHD_HTTP_CREATED ? location : NULL);
}

enum MHD_Result batches_get(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *id)
{
    return batch_answer(rest, c, a, id, MHD_HTTP_OK);
}

/* --- GET /v1/batches ---------------------------------------------------------------------------
 */

#define BATCH_LIST_DEFAULT 20
#define BATCH_LIST_MAX     100

typedef struct Seen {
    int64_t created_ns;
    char id[TASK_ID_LEN + 1];
} Seen;

static int newest_first(const void *a, const void *b)
{
    const Seen *x = a, *y = b;

    return x->created_ns < y->created_ns ? 1 : x->created_ns > y->created_ns ? -1 : 0;
}

/* The batches a sees, newest first: *ret_n of them in *ret (to free). */
static int batches_seen(Rest *rest, const Auth *a, Seen **ret, size_t *ret_n)
{
    /* a descriptor of its own: a dup would share its position with other threads' scans */
    int dfd = openat(rest->batches_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    Seen *seen = NULL, *ns;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int r = 0;

    if (!d) {
        r = -errno;
        if (dfd >= 0)
            close(dfd);
        return r;
    }
    while (r == 0 && (e = readdir(d))) {
        json_t *b = NULL, *cb = NULL;
        int fd;
        if (!task_id_valid(e->d_name) || batch_visible(rest, a, e->d_name, &fd, &b, &cb) < 0)
            continue;
        close(fd);
        size_t want = cap ? 2 * cap : 64;
        if (n == cap && !(ns = realloc(seen, want * sizeof(*seen))))
            r = -ENOMEM; /* a partial list would pass for the whole one */
        else if (n == cap)
            seen = ns, cap = want;
        if (r == 0) {
            seen[n].created_ns = json_integer_value(json_object_get(b, "created_ns"));
            memcpy(seen[n].id, e->d_name, sizeof(seen[n].id)); /* a valid id: TASK_ID_LEN */
            n++;
        }
        json_decref(b);
        json_decref(cb);
    }
    closedir(d);
    if (r < 0) {
        free(seen);
        return r;
    }
    if (n > 1) /* seen is NULL when there is none, which qsort may not be given */
        qsort(seen, n, sizeof(*seen), newest_first);
    *ret = seen;
    *ret_n = n;
    return 0;
}

enum MHD_Result batches_list(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg)
{
    enum MHD_Result answer;
    long limit;
    json_t *out;
    Seen *seen = NULL;
    size_t n = 0;
    int r;

    (void)arg;
    if (!http_limit(c, BATCH_LIST_DEFAULT, BATCH_LIST_MAX, &limit, &answer))
        return answer;
    if ((r = batches_seen(rest, a, &seen, &n)) < 0)
        return http_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error",
                          "cannot list the batches: %s", strerror(-r));
    out = json_array();
    for (size_t i = 0; i < n && (long)json_array_size(out) < limit; i++) {
        json_t *view;
        if (batch_object(rest, a, seen[i].id, &view) == 0) /* one gone meanwhile is left out */
            json_array_append_new(out, view);
    }
    free(seen);
    return http_json(c, MHD_HTTP_OK, json_pack("{s:o}", "batches", out));
}

enum MHD_Result batches_create(Rest *rest, struct MHD_Connection *c, const Auth *a,
                               const char *body, size_t len)
{
    SubmitError e = {0};
    char id[TASK_ID_LEN + 1];
    json_t *b = NULL;
    int r;

    if (batch_fields(body, len, &b, &e) < 0)
        return http_error(c, e.status, e.code, "%s", e.message);
    task_id_new(id);
    json_object_set_new(b, "version", json_integer(1));
    json_object_set_new(b, "id", json_string(id));
    json_object_set_new(b, "created_ns", json_integer(now_ns()));
    if (!a->open)
        json_object_set_new(b, "owner", json_string(a->name));
    r = batch_write(rest, b, id);
    json_decref(b);
    if (r < 0)
        return http_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error",
                          "cannot store the batch: %s", strerror(-r));
    log_info("batch %s created", id);
    return batch_answer(rest, c, a, id, MHD_HTTP_CREATED);
}

/* --- POST /v1/batches/<id>/close ----------------------------------------------------------------
 */

/* The queue passes it on to taskmill-callback: a batch whose tasks have all ended finishes now. */
static void tell_closed(Rest *rest, const char *id)
{
    json_t *reply = NULL;

    if (rest_queue_call(rest, "batch.closed", json_pack("{s:s}", "id", id), 3000, &reply) < 0)
        log_warning("batch %s: the queue was not told of the close; callback will find it at "
                    "its next start",
                    id);
    json_decref(reply);
}

enum MHD_Result batches_close(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *id)
{
    json_t *b = NULL, *cb = NULL;
    int fd, r;

    pthread_mutex_lock(&batch_lock);
    r = batch_visible(rest, a, id, &fd, &b, &cb);
    if (r == 0 && !json_is_true(json_object_get(b, "closed"))) {
        json_object_set_new(b, "closed", json_true());
        r = json_write_at(fd, "batch.json", b); /* temp, fsync, rename */
    }
    pthread_mutex_unlock(&batch_lock);
    if (r == -ENOENT)
        return http_error(c, MHD_HTTP_NOT_FOUND, "batch_not_found", "no batch %s", id);
    close(fd);
    json_decref(b);
    json_decref(cb);
    if (r < 0)
        return http_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error",
                          "cannot close batch %s: %s", id, strerror(-r));
    tell_closed(rest, id);
    return batch_answer(rest, c, a, id, MHD_HTTP_OK);
}

/* --- expiry ------------------------------------------------------------------------------------
 */

/* A batch may go when no task of it is left, it is older than min_age, and no callback of it is
 * owed (it has none, or it was delivered or given up, or it never finished). */
static bool batch_expired(Rest *rest, int fd, time_t min_age)
{
    json_t *b = NULL, *cb = NULL;
    BatchCounts n;
    bool owed, old;

    if (batch_read(fd, &b, &cb) < 0 || batch_count(rest->data_fd, fd, BATCH_STAGES, &n) < 0) {
        json_decref(b);
        json_decref(cb);
        return false;
    }
    old = json_integer_value(json_object_get(b, "created_ns")) <
          now_ns() - (int64_t)min_age * 1000000000;
    owed = json_is_string(json_object_get(b, "callback_url")) &&
           json_is_true(json_object_get(cb, "finished")) &&
           !json_is_true(json_object_get(cb, "delivered")) &&
           !json_is_true(json_object_get(cb, "gave_up"));
    json_decref(b);
    json_decref(cb);
    return old && !owed && n.total == 0;
}

int batches_sweep(Rest *rest, time_t min_age, unsigned *ret_removed)
{
    int dup_fd = openat(rest->batches_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), fd;
    char trash[64];
    struct dirent *de;
    DIR *d;

    *ret_removed = 0;
    if (dup_fd < 0 || !(d = fdopendir(dup_fd))) {
        if (dup_fd >= 0)
            close(dup_fd);
        return -errno;
    }
    while ((de = readdir(d))) {
        bool gone;
        if (!task_id_valid(de->d_name) || batch_open(rest->batches_fd, de->d_name, &fd) < 0)
            continue;
        pthread_mutex_lock(&batch_lock); /* no task joins a batch being removed */
        gone = batch_expired(rest, fd, min_age);
        close(fd);
        snprintf(trash, sizeof(trash), ".trash-%.36s", de->d_name);
        if (gone && renameat(rest->batches_fd, de->d_name, rest->batches_fd, trash) == 0) {
            rm_rf_at(rest->batches_fd, trash);
            (*ret_removed)++;
        }
        pthread_mutex_unlock(&batch_lock);
    }
    closedir(d);
    return 0;
}
