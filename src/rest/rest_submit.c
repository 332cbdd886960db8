/* rest_submit.c - what a task request says, checked: the fields of POST /v1/tasks, whether they
 * came as multipart form fields (text) or as a JSON object, become one Task or one error.
 *
 * JSON values are turned into the same text the form would carry, so both roads go through the
 * same checks: the type exists and takes (or not) a file, priority is 0..1000 or high, normal,
 * low, parameters are the type's, context is short text, the batch is the caller's and still
 * open, the time to start is in the future, the timeout within the type's, the callback an
 * http(s) URL of printable ASCII. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rest.h"
#include "taskmill/clock.h"
#include "taskmill/text.h"

#define DELAY_MAX (366LL * 86400) /* seconds */

static const char *const form_names[SUBMIT_MAX] = {
    "task_type",     "file_name", "file_path",      "priority", "callback_url",
    "callback_done", "params",    "context",        "batch",    "run_at",
    "delay_seconds", "timeout",   "idempotency_key"};

int submit_field(const char *name)
{
    for (int f = 0; f < SUBMIT_MAX; f++)
        if (!strcmp(form_names[f], name))
            return f;
    return -1;
}

const char *submit_field_name(int f)
{
    return f >= 0 && f < SUBMIT_MAX ? form_names[f] : "?";
}

int submit_fail(SubmitError *e, unsigned status, const char *code, const char *fmt, ...)
{
    va_list ap;

    if (e->status)
        return -EINVAL; /* the first error wins */
    e->status = status;
    snprintf(e->code, sizeof(e->code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* --- a JSON body becomes form text ------------------------------------------------------------ */

static char *json_text(json_t *v)
{
    if (json_is_string(v))
        return strdup(json_string_value(v));
    return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
}

int submit_from_json(const char *body, size_t len, char *ret_fields[SUBMIT_MAX], SubmitError *e)
{
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je), *v;
    const char *key;
    int f;

    if (!json_is_object(j)) {
        json_decref(j);
        return submit_fail(e, MHD_HTTP_BAD_REQUEST, "bad_json",
                           "the body is not a JSON object (line %d: %.100s)", je.line, je.text);
    }
    json_object_foreach(j, key, v)
    {
        if ((f = submit_field(key)) < 0 || f == SUBMIT_FILE_NAME || f == SUBMIT_FILE_PATH) {
            int r = submit_fail(e, MHD_HTTP_BAD_REQUEST, "unknown_field", "unknown field '%.64s'",
                                key); /* before the decref: key belongs to j */
            json_decref(j);
            return r;
        }
        if (json_is_null(v))
            continue;
        if ((f == SUBMIT_PARAMS || f == SUBMIT_CALLBACK_DONE)
                ? !json_is_object(v)
                : json_is_object(v) || json_is_array(v)) {
            int r = submit_fail(e, MHD_HTTP_BAD_REQUEST, "bad_json",
                                "field '%s' has the wrong type", key);
            json_decref(j);
            return r;
        }
        ret_fields[f] = json_text(v);
    }
    json_decref(j);
    return 0;
}

/* --- the checks --------------------------------------------------------------------------- */

static int parse_priority(const char *v, int *ret, SubmitError *e)
{
    *ret = TASK_PRIORITY_DEFAULT;
    if (v && task_priority_parse(v, ret) < 0)
        return submit_fail(e, MHD_HTTP_BAD_REQUEST, "bad_priority",
                           "priority must be a whole number from 0 to 1000, or high, normal, low");
    return 0;
}

static bool url_ok(const char *v)
{
    for (const char *p = v; *p; p++)
        if (*p < 0x21 || *p > 0x7e)
            return false;
    return !strncmp(v, "http://", 7) || !strncmp(v, "https://", 8);
}

int submit_callback(const char *url, const char *done, char **ret_url, char **ret_method,
                    SubmitError *e)
{
    const char *method = NULL, *type = NULL;
    json_t *obj = NULL;

    if (url && done)
        return submit_fail(e, MHD_HTTP_BAD_REQUEST, "bad_callback_url",
                           "give callback_url or callback_done, not both");
    if (done) {
        obj = json_loads(done, JSON_REJECT_DUPLICATES, NULL);
        if (json_unpack(obj, "{s:s, s:s, s?s !}", "type", &type, "url", &url, "method", &method) <
                0 ||
            strcmp(type, "http") || (method && strcmp(method, "GET") && strcmp(method, "POST"))) {
            json_decref(obj);
            return submit_fail(e, MHD_HTTP_BAD_REQUEST, "bad_callback_url",
                               "callback_done is {\"type\":\"http\",\"url\":...,\"method\":"
                               "\"GET\" or \"POST\"}");
        }
    }
    if (url && !url_ok(url)) {
        json_decref(obj);
        return submit_fail(e, MHD_HTTP_BAD_REQUEST, "bad_callback_url",
                           "callback_url must be an http:// or https:// URL of printable ASCII "
                           "characters (percent-encode the others)");
    }
    *ret_url = url ? strdup(url) : NULL;
    *ret_method = method && !strcmp(method, "GET") ? strdup("GET") : NULL;
    json_decref(obj);
    return 0;
}

int submit_context(const char *v, SubmitError *e)
{
    if (v && (strlen(v) > TASK_CONTEXT_MAX || !utf8_valid(v) || text_has_control(v)))
        return submit_fail(e, MHD_HTTP_BAD_REQUEST, "bad_context",
                           "context is one line of text, at most %d bytes", TASK_CONTEXT_MAX);
    return 0;
}

static int parse_when(char *const *f, const TaskType *tt, Task *t, SubmitError *e)
{
    char *end;
    long long v;

    if (f[SUBMIT_RUN_AT] && f[SUBMIT_DELAY])
        return submit_fail(e, MHD_HTTP_BAD_REQUEST, "bad_run_at",
                           "give run_at or delay_seconds, not both");
    if (f[SUBMIT_RUN_AT] && parse_time(f[SUBMIT_RUN_AT], &t->run_at_ns) < 0)
        return submit_fail(e, MHD_HTTP_BAD_REQUEST, "bad_run_at",
                           "run_at must be an RFC 3339 time like 2026-12-01T15:30:00Z");
    if (f[SUBMIT_DELAY]) {
        v = strtoll(f[SUBMIT_DELAY], &end, 10);
        if (end == f[SUBMIT_DELAY] || *end || v < 0 || v > DELAY_MAX)
            return submit_fail(e, MHD_HTTP_BAD_REQUEST, "bad_delay",
                               "delay_seconds must be a whole number from 0 to %lld", DELAY_MAX);
        t->run_at_ns = v ? now_ns() + v * 1000000000LL : 0;
    }
    if (f[SUBMIT_TIMEOUT]) {
        v = strtoll(f[SUBMIT_TIMEOUT], &end, 10);
        if (end == f[SUBMIT_TIMEOUT] || *end || v < 1 || v > tt->timeout)
            return submit_fail(e, MHD_HTTP_BAD_REQUEST, "bad_timeout",
                               "timeout must be 1 to %d seconds (this task type's limit)",
                               tt->timeout);
        t->timeout = (int)v;
    }
    return 0;
}

static int parse_params(const char *text, const TaskType *tt, json_t **ret, SubmitError *e)
{
    json_t *client = NULL;
    char err[256];
    int r;

    if (text) {
        client = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(client)) {
            json_decref(client);
            return submit_fail(e, MHD_HTTP_BAD_REQUEST, "bad_params",
                               "params must be a JSON object");
        }
    }
    r = tasktype_params(tt, client, ret, err, sizeof(err));
    json_decref(client);
    if (r < 0)
        return submit_fail(e, MHD_HTTP_UNPROCESSABLE_CONTENT, "invalid_params", "%s", err);
    return 0;
}

/* The type, and whether this request brings the file it needs (or one it must not). */
static const TaskType *check_type(Rest *rest, char *const *f, bool has_file, SubmitError *e)
{
    const TaskType *tt;

    if (!f[SUBMIT_TYPE])
        return submit_fail(e, MHD_HTTP_BAD_REQUEST, "missing_field", "task_type is required"), NULL;
    tt = tasktype_find(rest->conf, f[SUBMIT_TYPE]);
    if (!tt)
        return submit_fail(e, MHD_HTTP_UNPROCESSABLE_CONTENT, "unknown_task_type",
                           "unknown task_type '%.64s' (GET /v1/task-types lists them)",
                           f[SUBMIT_TYPE]),
               NULL;
    if (!has_file && tt->input == TYPE_INPUT_REQUIRED)
        return submit_fail(e, MHD_HTTP_BAD_REQUEST, "missing_field",
                           "file_data is required: task type %s takes a file (send multipart, "
                           "curl -F file_data=@FILE)",
                           tt->name),
               NULL;
    if (has_file && tt->input == TYPE_INPUT_NONE)
        return submit_fail(e, MHD_HTTP_BAD_REQUEST, "unexpected_file",
                           "task type %s takes no file (send JSON)", tt->name),
               NULL;
    return tt;
}

static int check_file_name(const TaskType *tt, const char *name, SubmitError *e)
{
    const char *why;

    if (!name)
        return submit_fail(e, MHD_HTTP_BAD_REQUEST, "missing_field",
                           "file_name is required when the file part has no filename");
    if ((why = task_file_name_problem(name)))
        return submit_fail(e, MHD_HTTP_BAD_REQUEST, "bad_file_name", "%s", why);
    if (tasktype_accepts_name(tt, name) < 0)
        return submit_fail(e, MHD_HTTP_UNPROCESSABLE_CONTENT, "unsupported_file_type",
                           "'%.200s' does not have an extension task type %s takes", name,
                           tt->name);
    return 0;
}

int submit_build(Rest *rest, const Auth *a, char *const f[SUBMIT_MAX], const SubmitFile *file,
                 Task *t, SubmitError *e)
{
    const TaskType *tt = check_type(rest, f, file != NULL, e);
    const char *name = file ? (f[SUBMIT_FILE_NAME] ? f[SUBMIT_FILE_NAME] : file->part_name) : NULL;

    if (!tt || (file && check_file_name(tt, name, e) < 0))
        return -EINVAL;
    if (file && file->size == 0)
        return submit_fail(e, MHD_HTTP_BAD_REQUEST, "empty_file", "file_data is empty");
    if (parse_priority(f[SUBMIT_PRIORITY], &t->priority, e) < 0 ||
        parse_params(f[SUBMIT_PARAMS], tt, &t->params, e) < 0 ||
        submit_callback(f[SUBMIT_CALLBACK], f[SUBMIT_CALLBACK_DONE], &t->callback_url,
                        &t->callback_method, e) < 0 ||
        parse_when(f, tt, t, e) < 0 || submit_context(f[SUBMIT_CONTEXT], e) < 0 ||
        (f[SUBMIT_BATCH] && batch_join(rest, a, f[SUBMIT_BATCH], NULL, e) < 0))
        return -EINVAL;
    t->task_type = strdup(tt->name);
    t->file_name = name ? strdup(name) : NULL;
    t->file_path = strdup(f[SUBMIT_FILE_PATH] ? f[SUBMIT_FILE_PATH] : "");
    t->context = f[SUBMIT_CONTEXT] ? strdup(f[SUBMIT_CONTEXT]) : NULL;
    t->batch = f[SUBMIT_BATCH] ? strdup(f[SUBMIT_BATCH]) : NULL;
    t->owner = a->open ? NULL : strdup(a->name);
    t->size = file ? file->size : 0;
    t->created_ns = now_ns();
    if (t->run_at_ns && t->run_at_ns <= t->created_ns)
        t->run_at_ns = 0; /* a time in the past: as soon as possible */
    return 0;
}
