/* test_request.c - request.json round trip and the checks on a task type's parameters. */
#include <fcntl.h>
#include <unistd.h>

#include "check.h"
#include "taskmill/conf.h"
#include "taskmill/task.h"
#include "taskmill/tasktype.h"

static Conf conf; /* the built-in defaults: crf 28, preset medium */

static void test_roundtrip(void)
{
    Task t = {.task_type = "convert_video_to_libx265",
              .file_name = "a b.mp4",
              .file_path = "/my/path",
              .input_name = "input.mp4",
              .size = 42,
              .priority = 700,
              .created_ns = 1700000000123456789LL,
              .callback_url = "http://127.0.0.1:9/hook"},
         u;
    json_t *j;
    char err[256];

    task_id_new(t.id);
    t.params = json_pack("{s:i, s:s}", "crf", 30, "preset", "fast");
    CHECK(task_to_request_json(&t, &j) == 0);
    CHECK(json_integer_value(json_object_get(j, "version")) == 1);
    CHECK(task_from_request_json(j, &u, err, sizeof(err)) == 0);
    CHECK_STR(u.id, t.id);
    CHECK_STR(u.file_name, "a b.mp4");
    CHECK_STR(u.callback_url, t.callback_url);
    CHECK(u.priority == 700 && u.size == 42 && u.created_ns == t.created_ns);
    task_free(&u);
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
    json_decref(j);
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

int main(void)
{
    char err[256];

    CHECK(conf_load(NULL, &conf, err, sizeof(err)) == 0);
    test_roundtrip();
    test_params();
    conf_free(&conf);
    return check_done("test_request");
}
