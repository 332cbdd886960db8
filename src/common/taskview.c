/* taskview.c - the task object of the API, read from one job directory.
 *
 * Sources: request.json (rest), claim.json (queue, when a worker takes the job), progress.json
 * (the converter, about once a second), result.json or error.json (the converter or the queue).
 * A file that is missing simply leaves its fields null. */
#include "taskmill/taskview.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "taskmill/clock.h"
#include "taskmill/files.h"

static int64_t ns_field(json_t *obj, const char *key)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;

    return json_is_integer(v) ? json_integer_value(v) : 0;
}

static json_t *time_or_null(int64_t ns)
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

static json_t *view_result(json_t *result)
{
    if (!result)
        return json_null();
    return json_pack("{s:O, s:O, s:O}", "file_name", json_object_get(result, "file_name"), "size",
                     json_object_get(result, "size"), "sha256", json_object_get(result, "sha256"));
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

static json_t *view_build(Stage s, json_t *req, json_t *claim, json_t *progress, json_t *result,
                          json_t *error)
{
    int64_t created = ns_field(req, "created_ns"), started = ns_field(claim, "started_ns");
    int64_t finished = ns_field(result ? result : error, "finished_ns");
    int64_t updated = max4(created, started, ns_field(progress, "updated_ns"), finished);
    json_t *cb = json_object_get(req, "callback_url");

    if (s != STAGE_IN_PROGRESS && s != STAGE_DONE && s != STAGE_FAILED)
        started = 0;
    return json_pack(
        "{s:O, s:O, s:s, s:O, s:O, s:O, s:O, s:O, s:o, s:o, s:o, s:o, s:o, s:o, "
        "s:o, s:O?, s:I}",
        "id", json_object_get(req, "id"), "task_type", json_object_get(req, "task_type"), "state",
        stage_state(s), "priority", json_object_get(req, "priority"), "file_name",
        json_object_get(req, "file_name"), "file_path", json_object_get(req, "file_path"), "size",
        json_object_get(req, "size"), "params", json_object_get(req, "params"), "created_at",
        time_or_null(created), "updated_at", time_or_null(updated), "started_at",
        time_or_null(started), "finished_at", time_or_null(finished), "progress",
        view_progress(s, progress), "result", s == STAGE_DONE ? view_result(result) : json_null(),
        "error", s == STAGE_FAILED ? view_error(error) : json_null(), "callback_url",
        json_is_string(cb) ? cb : NULL, "attempts", ns_field(claim, "attempts"));
}

int task_view_at(int fd, Stage s, json_t **ret)
{
    json_t *req = NULL, *claim = NULL, *progress = NULL, *result = NULL, *error = NULL, *v;
    int r = json_read_at(fd, "request.json", &req);

    if (r < 0)
        return r;
    json_read_at(fd, "claim.json", &claim);
    json_read_at(fd, "progress.json", &progress);
    json_read_at(fd, "result.json", &result);
    json_read_at(fd, "error.json", &error);
    v = view_build(s, req, claim, progress, result, error);
    json_decref(req);
    json_decref(claim);
    json_decref(progress);
    json_decref(result);
    json_decref(error);
    if (!v)
        return -EBADMSG;
    *ret = v;
    return 0;
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
