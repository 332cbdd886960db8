/* taskview.c - the task object of the API, read from one job directory.
 *
 * Sources: request.json (rest), claim.json (queue, when a worker takes the job: attempts, the
 * last transient error, the next attempt), history.json (queue: every finished attempt),
 * progress.json (the worker, about once a second), result.json or error.json (the worker or
 * the queue), callback.json (callback: the delivery). A file that is missing simply leaves its
 * fields null. */
#include "taskmill/taskview.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "taskmill/clock.h"
#include "taskmill/files.h"

static int64_t ns_field(json_t *obj, const char *key)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;

    return json_is_integer(v) ? json_integer_value(v) : 0;
}

json_t *view_time(int64_t ns)
{
    char buf[40];

    if (ns <= 0)
        return json_null();
    format_time(ns, buf, sizeof(buf));
    return json_string(buf);
}

static json_t *view_progress(Stage s, json_t *progress)
{
    double pct = s == STAGE_DONE ? 100.0 : 0.0;
    json_t *p = progress ? json_object_get(progress, "percent") : NULL;
    json_t *fps = progress ? json_object_get(progress, "fps") : NULL;
    json_t *eta = progress ? json_object_get(progress, "eta_seconds") : NULL;

    if (s == STAGE_IN_PROGRESS && json_is_number(p))
        pct = json_number_value(p);
    return json_pack("{s:f, s:O?, s:O?}", "percent", pct, "fps",
                     s == STAGE_IN_PROGRESS ? fps : NULL, "eta_seconds",
                     s == STAGE_IN_PROGRESS ? eta : NULL);
}

/* result.json as the client sees it: the file's name, size and sha256, and what the kind adds
 * (exit_code, http_status, headers); where the file lies on disk is the server's business. */
static json_t *view_result(json_t *result)
{
    json_t *v;

    if (!result || !(v = json_deep_copy(result)))
        return json_null();
    json_object_del(v, "disk_name");
    json_object_del(v, "finished_ns");
    return v;
}

static json_t *view_error(json_t *error)
{
    if (!error)
        return json_null();
    return json_pack("{s:O, s:O}", "code", json_object_get(error, "code"), "message",
                     json_object_get(error, "message"));
}

static int64_t max4(int64_t a, int64_t b, int64_t c, int64_t d)
{
    int64_t m = a;

    m = b > m ? b : m;
    m = c > m ? c : m;
    return d > m ? d : m;
}

/* When a pending job may start: its run_at, or the back-off after a transient failure. */
static int64_t not_before(json_t *req, json_t *claim)
{
    int64_t a = ns_field(req, "run_at_ns"), b = ns_field(claim, "next_attempt_ns");

    return a > b ? a : b;
}

/* "scheduled" is a pending job whose time has not come. */
static const char *view_state(Stage s, json_t *req, json_t *claim)
{
    if (s == STAGE_PENDING && not_before(req, claim) > now_ns())
        return "scheduled";
    return stage_state(s);
}

static json_t *view_last_error(json_t *claim)
{
    json_t *e = claim ? json_object_get(claim, "last_error") : NULL;

    return json_is_object(e) ? json_deep_copy(e) : json_null();
}

static json_t *view_history(json_t *history)
{
    json_t *a = history ? json_object_get(history, "attempts") : NULL;

    return json_is_array(a) ? json_deep_copy(a) : json_array();
}

json_t *view_callback(json_t *req, json_t *cb)
{
    json_t *url = json_object_get(req, "callback_url"), *attempts, *last;
    const char *method = json_string_value(json_object_get(req, "callback_method"));
    bool delivered = json_is_true(json_object_get(cb, "delivered"));

    if (!json_is_string(url))
        return json_null();
    attempts = json_object_get(cb, "attempts");
    last =
        json_array_size(attempts) ? json_array_get(attempts, json_array_size(attempts) - 1) : NULL;
    return json_pack("{s:O, s:s, s:I, s:O?, s:O?, s:b, s:b, s:o}", "url", url, "method",
                     method ? method : "POST", "attempts", (json_int_t)json_array_size(attempts),
                     "delivered_at", delivered && last ? json_object_get(last, "at") : NULL,
                     "last_status", last ? json_object_get(last, "status") : NULL, "delivered",
                     delivered, "gave_up", json_is_true(json_object_get(cb, "gave_up")),
                     "next_attempt_at", view_time(ns_field(cb, "next_attempt_ns")));
}

typedef struct ViewFiles {
    json_t *req, *claim, *progress, *result, *error, *history, *callback;
} ViewFiles;

static json_t *view_build(Stage s, const ViewFiles *f)
{
    int64_t created = ns_field(f->req, "created_ns"), started = ns_field(f->claim, "started_ns");
    int64_t finished = ns_field(f->result ? f->result : f->error, "finished_ns");
    int64_t updated = max4(created, started, ns_field(f->progress, "updated_ns"), finished);
    int64_t next = s == STAGE_PENDING ? ns_field(f->claim, "next_attempt_ns") : 0;
    json_t *cb = json_object_get(f->req, "callback_url"), *v;

    if (s != STAGE_IN_PROGRESS && s != STAGE_DONE && s != STAGE_FAILED)
        started = 0;
    v = json_pack("{s:O, s:O, s:s, s:O, s:O?, s:O?, s:O, s:O, s:o, s:o, s:o, s:o, s:o, s:o, "
                  "s:o, s:O?, s:I}",
                  "id", json_object_get(f->req, "id"), "task_type",
                  json_object_get(f->req, "task_type"), "state", view_state(s, f->req, f->claim),
                  "priority", json_object_get(f->req, "priority"), "file_name",
                  json_object_get(f->req, "file_name"), "file_path",
                  json_object_get(f->req, "file_path"), "size", json_object_get(f->req, "size"),
                  "params", json_object_get(f->req, "params"), "created_at", view_time(created),
                  "updated_at", view_time(updated), "started_at", view_time(started), "finished_at",
                  view_time(finished), "progress", view_progress(s, f->progress), "result",
                  s == STAGE_DONE ? view_result(f->result) : json_null(), "error",
                  s == STAGE_FAILED ? view_error(f->error) : json_null(), "callback_url",
                  json_is_string(cb) ? cb : NULL, "attempts", ns_field(f->claim, "attempts"));
    if (!v)
        return NULL;
    json_object_set(v, "context", json_object_get(f->req, "context") ?: json_null());
    json_object_set(v, "batch", json_object_get(f->req, "batch") ?: json_null());
    json_object_set_new(v, "run_at", view_time(ns_field(f->req, "run_at_ns")));
    json_object_set(v, "timeout", json_object_get(f->req, "timeout") ?: json_null());
    json_object_set_new(v, "interruptions", json_integer(ns_field(f->claim, "interruptions")));
    json_object_set_new(v, "last_error", view_last_error(f->claim));
    json_object_set_new(v, "next_attempt_at", view_time(next > now_ns() ? next : 0));
    json_object_set_new(v, "history", view_history(f->history));
    json_object_set_new(v, "callback", view_callback(f->req, f->callback));
    return v;
}

/* Only the files a job in stage s can hold are read: a job in request/ has nothing but its
 * request.json, result.json is only in done/, error.json only in failed/, progress.json only
 * matters in in_progress/, callback.json is only written once a job finished. */
int task_view_owner_at(int fd, Stage s, char **ret_owner, json_t **ret)
{
    bool finished = s == STAGE_DONE || s == STAGE_FAILED;
    ViewFiles f = {0};
    const char *owner;
    json_t *v;
    int r = json_read_at(fd, "request.json", &f.req);

    if (r < 0)
        return r;
    if (s != STAGE_REQUEST) {
        json_read_at(fd, "claim.json", &f.claim);
        json_read_at(fd, "history.json", &f.history);
    }
    if (s == STAGE_IN_PROGRESS)
        json_read_at(fd, "progress.json", &f.progress);
    if (s == STAGE_DONE)
        json_read_at(fd, "result.json", &f.result);
    if (s == STAGE_FAILED)
        json_read_at(fd, "error.json", &f.error);
    if (finished)
        json_read_at(fd, "callback.json", &f.callback);
    v = view_build(s, &f);
    owner = json_string_value(json_object_get(f.req, "owner"));
    if (v && ret_owner && owner && !(*ret_owner = strdup(owner))) {
        json_decref(v);
        v = NULL;
    } else if (v && ret_owner && !owner) {
        *ret_owner = NULL;
    }
    json_decref(f.req);
    json_decref(f.claim);
    json_decref(f.progress);
    json_decref(f.result);
    json_decref(f.error);
    json_decref(f.history);
    json_decref(f.callback);
    if (!v)
        return -EBADMSG;
    *ret = v;
    return 0;
}

int task_view_at(int fd, Stage s, json_t **ret)
{
    return task_view_owner_at(fd, s, NULL, ret);
}

int task_view(int data_fd, Stage s, const char *id, json_t **ret)
{
    int fd, r = jobdir_open(data_fd, s, id, &fd);

    if (r < 0)
        return r;
    r = task_view_at(fd, s, ret);
    close(fd);
    return r;
}
