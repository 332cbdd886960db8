/* test_request.c - request.json round trip and the checks on a task type's parameters. */
#include <fcntl.h>
#include <unistd.h>

#include "check.h"
#include "taskmill/conf.h"
#include "taskmill/result.h"
#include "taskmill/task.h"
#include "taskmill/tasktype.h"

static Conf conf; /* the built-in defaults: crf 28, preset medium */

/* The fields of Task as this test knows them: a field added to Task changes its size (unless it
 * hides in padding), and this stops the build until the test compares it too. */
struct TaskFieldsKnown {
    char id[TASK_ID_LEN + 1];
    char *task_type, *file_name, *file_path, *input_name, *callback_url, *callback_method,
        *idempotency_key, *owner, *context, *batch;
    uint64_t size;
    int priority;
    int64_t created_ns, run_at_ns;
    int timeout;
    json_t *params;
};
_Static_assert(sizeof(Task) == sizeof(struct TaskFieldsKnown),
               "Task has a field test_request.c's round trip does not compare");

/* Every field of two tasks. */
static void check_same_task(const Task *a, const Task *b)
{
    CHECK_STR(a->id, b->id);
    CHECK_STR_OR_NULL(a->task_type, b->task_type);
    CHECK_STR_OR_NULL(a->file_name, b->file_name);
    CHECK_STR_OR_NULL(a->file_path, b->file_path);
    CHECK_STR_OR_NULL(a->input_name, b->input_name);
    CHECK_STR_OR_NULL(a->callback_url, b->callback_url);
    CHECK_STR_OR_NULL(a->callback_method, b->callback_method);
    CHECK_STR_OR_NULL(a->idempotency_key, b->idempotency_key);
    CHECK_STR_OR_NULL(a->owner, b->owner);
    CHECK_STR_OR_NULL(a->context, b->context);
    CHECK_STR_OR_NULL(a->batch, b->batch);
    CHECK_INT(a->size, b->size);
    CHECK_INT(a->priority, b->priority);
    CHECK_INT(a->created_ns, b->created_ns);
    CHECK_INT(a->run_at_ns, b->run_at_ns);
    CHECK_INT(a->timeout, b->timeout);
    CHECK_MSG(a->params && b->params && json_equal(a->params, b->params), "params differ");
}

/* t -> request.json -> u: u equals t field by field, u gives back the same JSON, and the JSON
 * holds exactly the keys of request.json version 1 (want_keys of them). */
static void roundtrip(const Task *t, size_t want_keys)
{
    json_t *j, *back;
    char err[256] = "";
    Task u;

    CHECK(task_to_request_json(t, &j) == 0);
    CHECK_INT(json_integer_value(json_object_get(j, "version")), 1);
    CHECK_INT(json_object_size(j), want_keys);
    CHECK_MSG(task_from_request_json(j, &u, err, sizeof(err)) == 0, "%s", err);
    check_same_task(&u, t);
    CHECK(task_to_request_json(&u, &back) == 0);
    if (!json_equal(j, back)) {
        char *a = json_dumps(j, JSON_SORT_KEYS), *b = json_dumps(back, JSON_SORT_KEYS);
        fprintf(stderr, "%s:%d: request.json differs after a round trip:\n %s\n %s\n", __FILE__,
                __LINE__, a, b);
        check_failures++;
        free(a);
        free(b);
    }
    json_decref(back);
    task_free(&u);
    json_decref(j);
}

static void test_roundtrip(void)
{
    Task t = {.task_type = "convert_video_to_libx265",
              .file_name = "a b.mp4",
              .file_path = "/my/path",
              .input_name = "input.mp4",
              .size = 42,
              .priority = 700,
              .created_ns = 1700000000123456789LL,
              .callback_url = "http://127.0.0.1:9/hook",
              .idempotency_key = "client-a:/v/x.mp4:123",
              .owner = "alice",
              .callback_method = "GET",
              .context = "invoice 42",
              .batch = "0d4f2a6e-1b3c-4d5e-8f90-123456789abc",
              .run_at_ns = 1800000000000000000LL,
              .timeout = 90},
         u;
    json_t *j;
    char err[256];

    task_id_new(t.id);
    t.params = json_pack("{s:i, s:s}", "crf", 30, "preset", "fast");
    roundtrip(&t, 19);
    /* Each value where the JSON puts it, created_at derived from created_ns. */
    CHECK(task_to_request_json(&t, &j) == 0);
    CHECK_STR(json_string_value(json_object_get(j, "id")), t.id);
    CHECK_STR(json_string_value(json_object_get(j, "task_type")), "convert_video_to_libx265");
    CHECK_STR(json_string_value(json_object_get(j, "file_name")), "a b.mp4");
    CHECK_STR(json_string_value(json_object_get(j, "file_path")), "/my/path");
    CHECK_STR(json_string_value(json_object_get(j, "input_name")), "input.mp4");
    CHECK_INT(json_integer_value(json_object_get(j, "size")), 42);
    CHECK_INT(json_integer_value(json_object_get(j, "priority")), 700);
    CHECK_INT(json_integer_value(json_object_get(j, "created_ns")), 1700000000123456789LL);
    CHECK_STR(json_string_value(json_object_get(j, "created_at")), "2023-11-14T22:13:20.123456Z");
    CHECK(json_equal(json_object_get(j, "params"), t.params));
    CHECK_STR(json_string_value(json_object_get(j, "callback_url")), "http://127.0.0.1:9/hook");
    CHECK_STR(json_string_value(json_object_get(j, "idempotency_key")), "client-a:/v/x.mp4:123");
    CHECK_STR(json_string_value(json_object_get(j, "owner")), "alice");
    CHECK_STR(json_string_value(json_object_get(j, "callback_method")), "GET");
    CHECK_STR(json_string_value(json_object_get(j, "context")), "invoice 42");
    CHECK_STR(json_string_value(json_object_get(j, "batch")),
              "0d4f2a6e-1b3c-4d5e-8f90-123456789abc");
    CHECK_INT(json_integer_value(json_object_get(j, "run_at_ns")), 1800000000000000000LL);
    CHECK_INT(json_integer_value(json_object_get(j, "timeout")), 90);

    /* The checks on the way in. */
    json_object_set_new(j, "version", json_integer(2));
    CHECK(task_from_request_json(j, &u, err, sizeof(err)) < 0);
    json_object_set_new(j, "version", json_integer(4294967297LL)); /* found by fuzz_request */
    CHECK(task_from_request_json(j, &u, err, sizeof(err)) < 0);
    json_object_set_new(j, "version", json_integer(1));
    json_object_set_new(j, "priority", json_integer(1001));
    CHECK(task_from_request_json(j, &u, err, sizeof(err)) < 0);
    json_object_set_new(j, "priority", json_integer(700));
    json_object_set_new(j, "size", json_integer(-1));
    CHECK(task_from_request_json(j, &u, err, sizeof(err)) < 0);
    json_object_set_new(j, "size", json_integer(42));
    json_object_set_new(j, "file_name", json_string("../../etc/passwd"));
    CHECK(task_from_request_json(j, &u, err, sizeof(err)) < 0);
    json_object_set_new(j, "file_name", json_string("a b.mp4"));
    json_object_set_new(j, "batch", json_string("../x"));
    CHECK(task_from_request_json(j, &u, err, sizeof(err)) < 0);
    json_object_set_new(j, "batch", json_string("0d4f2a6e-1b3c-4d5e-8f90-123456789abc"));
    json_object_set_new(j, "callback_method", json_string("PUT"));
    CHECK(task_from_request_json(j, &u, err, sizeof(err)) < 0);
    json_object_set_new(j, "callback_method", json_string("GET"));
    json_object_set_new(j, "timeout", json_integer(-1));
    CHECK(task_from_request_json(j, &u, err, sizeof(err)) < 0);
    json_object_set_new(j, "timeout", json_integer(90));
    CHECK(task_from_request_json(j, &u, err, sizeof(err)) == 0);
    task_free(&u);
    json_decref(j);

    /* Without the optional fields: no callback_url, idempotency_key or owner key in the JSON,
     * and NULL again on the way back; the extremes of priority, size and time survive. */
    t.callback_url = t.idempotency_key = t.owner = t.callback_method = t.context = t.batch = NULL;
    t.run_at_ns = 0;
    t.timeout = 0;
    t.priority = TASK_PRIORITY_MIN;
    t.size = (uint64_t)INT64_MAX;
    t.created_ns = 0;
    t.file_path = "";
    roundtrip(&t, 11);
    CHECK(task_to_request_json(&t, &j) == 0);
    CHECK(json_is_null(json_object_get(j, "created_at")));
    CHECK(!json_object_get(j, "callback_url") && !json_object_get(j, "idempotency_key") &&
          !json_object_get(j, "owner"));
    json_decref(j);
    t.priority = TASK_PRIORITY_MAX;
    roundtrip(&t, 11);
    json_decref(t.params);
}

static void expect_params(const char *text, int ok, const char *want_err)
{
    const TaskType *tt = tasktype_find(&conf, TASKTYPE_X265);
    json_t *in = text ? json_loads(text, 0, NULL) : NULL, *out = NULL;
    char err[256] = "";
    int r = tasktype_params(tt, in, &out, err, sizeof(err));

    CHECK((r == 0) == ok);
    if (r < 0) {
        json_t *j = json_string(err);
        CHECK(j != NULL); /* the message can go into a JSON error body */
        json_decref(j);
    }
    if (want_err && !strstr(err, want_err)) {
        fprintf(stderr, "'%s' lacks '%s'\n", err, want_err);
        check_failures++;
    }
    json_decref(in);
    json_decref(out);
}

static void test_params(void)
{
    const TaskType *tt = tasktype_find(&conf, TASKTYPE_X265);
    json_t *out;
    char err[256];

    CHECK(tt != NULL);
    CHECK(tasktype_find(&conf, "convert_video_to_vp9") == NULL);
    CHECK(tasktype_params(tt, NULL, &out, err, sizeof(err)) == 0);
    CHECK(json_integer_value(json_object_get(out, "crf")) == 28);
    CHECK_STR(json_string_value(json_object_get(out, "preset")), "medium");
    json_decref(out);
    expect_params("{\"crf\":30,\"preset\":\"ultrafast\"}", 1, NULL);
    expect_params("{\"crf\":52}", 0, "params.crf");
    expect_params("{\"crf\":\"30\"}", 0, "params.crf");
    expect_params("{\"preset\":\"warp\"}", 0, "params.preset");
    expect_params("{\"bitrate\":1}", 0, "params.bitrate");
    expect_params("[1,2]", 0, "JSON object");
    /* 63 x 'a' then U+00E9: the message must stay valid UTF-8 (found by fuzz_request) */
    expect_params("{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\u00e9\":1}",
                  0, "params.aaa");
    CHECK(tasktype_accepts_name(tt, "clip.MP4") == 0);
    CHECK(tasktype_accepts_name(tt, "clip.mkv") == 0);
    CHECK(tasktype_accepts_name(tt, "notes.txt") < 0);
    CHECK(tasktype_accepts_name(tt, "noext") < 0);
    CHECK(tasktype_accepts_name(tt, ".mp4") < 0);
}

static void test_priority(void)
{
    static const struct {
        const char *text;
        int want; /* -1: refused */
    } cases[] = {{"high", 750},  {"normal", 500},
                 {"low", 250},   {"0", 0},
                 {"1000", 1000}, {"1001", -1},
                 {"-1", -1},     {"+5", -1},
                 {" 5", -1},     {"5 ", -1},
                 {"", -1},       {"HIGH", -1},
                 {"urgent", -1}, {"99999999999999999999", -1}};

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = -1, r = task_priority_parse(cases[i].text, &got);
        CHECK_MSG(cases[i].want < 0 ? r < 0 : (r == 0 && got == cases[i].want), "priority '%s'",
                  cases[i].text);
    }
}

static void test_media(void)
{
    CHECK_STR(result_media_type("x.MP4"), "video/mp4");
    CHECK_STR(result_media_type("stdout.txt"), "text/plain; charset=utf-8");
    CHECK_STR(result_media_type("page.html"), "application/octet-stream"); /* never served */
    CHECK_STR(result_media_type("noext"), "application/octet-stream");
    CHECK_STR(result_extension("application/json"), ".json");
    CHECK_STR(result_extension("text/plain;charset=UTF-8"), ".txt");
    CHECK_STR(result_extension("application/jsonx"), ".bin");
    CHECK_STR(result_extension("text/html"), ".bin");
    CHECK_STR(result_extension(NULL), ".bin");
}

int main(void)
{
    char err[256];

    CHECK(conf_load(NULL, &conf, err, sizeof(err)) == 0);
    test_roundtrip();
    test_params();
    test_priority();
    test_media();
    conf_free(&conf);
    return check_done("test_request");
}
