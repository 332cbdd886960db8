/* fuzz_request.c - libFuzzer target for request.json decoding and a task type's parameters.
 *
 * Every daemon reads request.json back with task_from_request_json(), so a damaged or
 * hand-edited file must give an error, never a crash. An accepted task must survive the trip the
 * file makes on disk (task_to_request_json, json_dumps as json_write_at, json_loadb as
 * json_read_at, decode) with every field unchanged. The same JSON also goes to tasktype_params()
 * as a client's params, whole and as its "params" member: accepted output is exactly
 * {crf: 0..51, preset: a known preset}. Failures leave the out-parameter untouched and say why
 * in err, in UTF-8 (rest sends it in a JSON body). A broken promise calls abort() so that
 * libFuzzer reports the input. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "taskmill/conf.h"
#include "taskmill/task.h"
#include "taskmill/tasktype.h"
#include "taskmill/files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool str_eq(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

/* rest sends err to the client inside a JSON body, which jansson refuses unless it is UTF-8. */
static bool utf8_ok(const char *s)
{
    json_t *j = json_string(s);

    if (!j)
        return false;
    json_decref(j);
    return true;
}

static void check_same(const Task *a, const Task *b)
{
    if (strcmp(a->id, b->id) || !str_eq(a->task_type, b->task_type) ||
        !str_eq(a->file_name, b->file_name) || !str_eq(a->file_path, b->file_path) ||
        !str_eq(a->input_name, b->input_name) || !str_eq(a->callback_url, b->callback_url) ||
        !str_eq(a->idempotency_key, b->idempotency_key) || !str_eq(a->owner, b->owner) ||
        a->size != b->size || a->priority != b->priority || a->created_ns != b->created_ns ||
        !json_equal(a->params, b->params))
        abort();
}

/* What task_save and task_load do, minus the file. */
static void roundtrip(const Task *t)
{
    char err[256] = "";
    json_t *j, *back;
    char *text;
    Task u;

    if (task_to_request_json(t, &j) < 0)
        abort();
    text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    if (!text)
        abort();
    back = json_loadb(text, strlen(text), JSON_REJECT_DUPLICATES, NULL);
    free(text);
    if (!back || task_from_request_json(back, &u, err, sizeof(err)) < 0)
        abort();
    json_decref(back);
    check_same(t, &u);
    task_free(&u);
}

static void check_request(json_t *j)
{
    char err[256] = "";
    Task t, untouched;

    memset(&t, 0xa5, sizeof(t));
    memcpy(&untouched, &t, sizeof(t));
    if (task_from_request_json(j, &t, err, sizeof(err)) < 0) {
        if (memcmp(&t, &untouched, sizeof(t)) || !err[0])
            abort();
        return;
    }
    if (!task_id_valid(t.id) || (t.file_name && task_file_name_problem(t.file_name)) ||
        (t.input_name && task_file_name_problem(t.input_name)) || !t.params)
        abort();
    roundtrip(&t);
    task_free(&t);
}

static void check_params(json_t *client)
{
    static Conf c; /* the built-in defaults: crf 28, preset medium */
    static bool loaded;
    char err[256] = "";
    json_t *out = NULL, *crf, *preset;

    if (!loaded && conf_load(NULL, &c, err, sizeof(err)) < 0)
        abort();
    loaded = true;
    if (tasktype_params(tasktype_find(&c, TASKTYPE_X265), client, &out, err, sizeof(err)) < 0) {
        if (out || !err[0] || !utf8_ok(err))
            abort();
        return;
    }
    crf = json_object_get(out, "crf");
    preset = json_object_get(out, "preset");
    if (json_object_size(out) != 2 || !json_is_integer(crf) || json_integer_value(crf) < 0 ||
        json_integer_value(crf) > 51 || !json_is_string(preset) ||
        !tasktype_preset_known(json_string_value(preset)))
        abort();
    json_decref(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j =
        json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);

    if (!j)
        return 0;
    check_request(j);
    check_params(j);
    if (json_is_object(j))
        check_params(json_object_get(j, "params"));
    json_decref(j);
    return 0;
}
