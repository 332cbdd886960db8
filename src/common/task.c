/* task.c - request.json and the checks on client input.
 *
 * A task id is a canonical lower-case UUID and is checked before it touches the filesystem.
 * A file name is a plain name: no '/', '\\', "..", control characters, invalid UTF-8 or more
 * than 255 bytes. */
#define _GNU_SOURCE
#include "taskmill/task.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "taskmill/clock.h"
#include "taskmill/files.h"
#include "taskmill/text.h"

int task_priority_parse(const char *s, int *ret)
{
    static const struct {
        const char *name;
        int value;
    } aliases[] = {{"high", 750}, {"normal", 500}, {"low", 250}};
    char *end;
    long v;

    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
        if (!strcmp(s, aliases[i].name)) {
            *ret = aliases[i].value;
            return 0;
        }
    if (*s < '0' || *s > '9') /* strtol would take a sign or spaces */
        return -EINVAL;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < TASK_PRIORITY_MIN || v > TASK_PRIORITY_MAX)
        return -EINVAL;
    *ret = (int)v;
    return 0;
}

bool task_id_valid(const char *s)
{
    static const char pattern[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

    if (!s || strlen(s) != TASK_ID_LEN)
        return false;
    for (int i = 0; i < TASK_ID_LEN; i++) {
        if (pattern[i] == '-') {
            if (s[i] != '-')
                return false;
        } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

void task_id_new(char ret[TASK_ID_LEN + 1])
{
    uuid_t u;

    uuid_generate_random(u);
    uuid_unparse_lower(u, ret);
}

const char *task_file_name_problem(const char *name)
{
    if (!name || !*name)
        return "file_name is empty";
    if (strlen(name) > TASK_FILE_NAME_MAX)
        return "file_name is longer than 255 bytes";
    if (!strcmp(name, ".") || strstr(name, ".."))
        return "file_name must not contain '..'";
    if (!utf8_valid(name))
        return "file_name is not valid UTF-8";
    if (text_has_control(name))
        return "file_name contains a control character"; /* C0, DEL and C1 */
    if (strchr(name, '/') || strchr(name, '\\'))
        return "file_name must be a plain name without '/' or '\\'";
    return NULL;
}

static json_t *time_json(int64_t ns)
{
    char buf[40];

    if (ns <= 0)
        return json_null();
    format_time(ns, buf, sizeof(buf));
    return json_string(buf);
}

void task_free(Task *t)
{
    free(t->task_type);
    free(t->file_name);
    free(t->file_path);
    free(t->input_name);
    free(t->callback_url);
    free(t->callback_method);
    free(t->idempotency_key);
    free(t->owner);
    free(t->context);
    free(t->batch);
    json_decref(t->params);
    *t = (Task){0};
}

int task_to_request_json(const Task *t, json_t **ret)
{
    json_t *j = json_pack(
        "{s:i, s:s, s:s, s:s*, s:s, s:s*, s:I, s:i, s:I, s:o, s:O, s:s*, s:s*, s:s*, s:s*, s:s*}",
        "version", TASK_REQUEST_VERSION, "id", t->id, "task_type", t->task_type, "file_name",
        t->file_name, "file_path", t->file_path ? t->file_path : "", "input_name", t->input_name,
        "size", (json_int_t)t->size, "priority", t->priority, "created_ns",
        (json_int_t)t->created_ns, "created_at", time_json(t->created_ns), "params", t->params,
        "callback_url", t->callback_url, "callback_method", t->callback_method, "idempotency_key",
        t->idempotency_key, "owner", t->owner, "context", t->context);

    if (j && t->batch)
        json_object_set_new(j, "batch", json_string(t->batch));
    if (j && t->run_at_ns)
        json_object_set_new(j, "run_at_ns", json_integer(t->run_at_ns));
    if (j && t->timeout)
        json_object_set_new(j, "timeout", json_integer(t->timeout));
    if (!j)
        return -ENOMEM;
    *ret = j;
    return 0;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* The checks a stored request must pass, whoever wrote it. */
static const char *request_problem(const Task *t, const char *id, json_int_t size,
                                   json_int_t created)
{
    if (!task_id_valid(id) || (t->file_name && task_file_name_problem(t->file_name)) ||
        (t->input_name && task_file_name_problem(t->input_name)))
        return "invalid id or file name";
    if (t->priority < TASK_PRIORITY_MIN || t->priority > TASK_PRIORITY_MAX || size < 0 ||
        created < 0 || t->run_at_ns < 0 || t->timeout < 0)
        return "priority, size, created_ns, run_at_ns or timeout out of range";
    if ((t->batch && !task_id_valid(t->batch)) ||
        (t->callback_method && strcmp(t->callback_method, "GET") &&
         strcmp(t->callback_method, "POST")))
        return "invalid batch or callback_method";
    return NULL;
}

int task_from_request_json(json_t *j, Task *ret, char *err, size_t errlen)
{
    json_error_t e;
    json_int_t priority, size, created, run_at = 0, timeout = 0, v = 0;
    const char *id, *type, *name = NULL, *path, *input = NULL, *cb = NULL, *method = NULL,
                           *key = NULL, *owner = NULL, *context = NULL, *batch = NULL;
    const char *why;
    json_t *params;
    Task t = {0};

    if (json_unpack_ex(j, &e, 0, "{s:I}", "version", &v) < 0 || v != TASK_REQUEST_VERSION) {
        snprintf(err, errlen, "request.json: unsupported version %lld", (long long)v);
        return -EBADMSG;
    }
    if (json_unpack_ex(j, &e, 0,
                       "{s:s, s:s, s?s, s:s, s?s, s:I, s:I, s:I, s:o, s?s, s?s, s?s, s?s, s?s, "
                       "s?s, s?I, s?I}",
                       "id", &id, "task_type", &type, "file_name", &name, "file_path", &path,
                       "input_name", &input, "size", &size, "priority", &priority, "created_ns",
                       &created, "params", &params, "callback_url", &cb, "callback_method", &method,
                       "idempotency_key", &key, "owner", &owner, "context", &context, "batch",
                       &batch, "run_at_ns", &run_at, "timeout", &timeout) < 0) {
        snprintf(err, errlen, "request.json: %s", e.text);
        return -EBADMSG;
    }
    t = (Task){.file_name = (char *)name,
               .input_name = (char *)input,
               .batch = (char *)batch,
               .callback_method = (char *)method,
               .priority = (int)priority,
               .run_at_ns = run_at,
               .timeout = (int)timeout};
    if (priority != (json_int_t)t.priority || timeout != (json_int_t)t.timeout)
        t.priority = -1; /* out of int range: refused below */
    if ((why = request_problem(&t, id, size, created))) {
        snprintf(err, errlen, "request.json: %s", why);
        return -EBADMSG;
    }
    memcpy(t.id, id, sizeof(t.id));
    t.task_type = strdup(type);
    t.file_name = dup_or_null(name);
    t.file_path = strdup(path);
    t.input_name = dup_or_null(input);
    t.callback_url = dup_or_null(cb);
    t.callback_method = dup_or_null(method);
    t.idempotency_key = dup_or_null(key);
    t.owner = dup_or_null(owner);
    t.context = dup_or_null(context);
    t.batch = dup_or_null(batch);
    t.size = (uint64_t)size;
    t.created_ns = created;
    t.params = json_incref(params);
    *ret = t;
    return 0;
}

int task_load(int job_fd, Task *ret, char *err, size_t errlen)
{
    json_t *j;
    int r = json_read_at(job_fd, "request.json", &j);

    if (r < 0) {
        snprintf(err, errlen, "request.json: %s", strerror(-r));
        return r;
    }
    r = task_from_request_json(j, ret, err, errlen);
    json_decref(j);
    return r;
}

int task_save(int job_fd, const Task *t)
{
    json_t *j;
    int r = task_to_request_json(t, &j);

    if (r < 0)
        return r;
    r = json_write_at(job_fd, "request.json", j);
    json_decref(j);
    return r;
}
