/* test_tasktype.c - task types from the config: the [type.*] sections each kind accepts and the
 * mistakes it refuses (naming section and key), typed parameters and their defaults, the
 * templates (placeholders, {params}, literal braces, percent-encoding), splitting a command
 * into argv elements, GET /v1/task-types' JSON, and a reload's swap of the table. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "check.h"
#include "taskmill/conf.h"
#include "taskmill/files.h"
#include "taskmill/tasktype.h"
#include "taskmill/text.h"

static char *dir;

/* Loads text as a config: 0, or <0 with the loader's message in err. */
static int load(const char *text, Conf *c, char *err, size_t errlen)
{
    char *path = check_write_conf(dir, text);
    int r;

    err[0] = '\0';
    r = conf_load(path, c, err, errlen);
    free(path);
    return r;
}

static void expect_refused(const char *text, const char *want)
{
    char err[512];
    Conf c;

    if (load(text, &c, err, sizeof(err)) == 0) {
        fprintf(stderr, "accepted, but should be refused (%s):\n%s\n", want, text);
        check_failures++;
        conf_free(&c);
        return;
    }
    CHECK_MSG(strstr(err, want) != NULL, "'%s' lacks '%s'", err, want);
}

static const char good[] = "[type.echo]\n"
                           "kind = exec\n"
                           "description = prints its word\n"
                           "command = /usr/bin/printf '%s %s\\n' {word} \"{count} x\"\n"
                           "input = none\n"
                           "param.word = string:10\n"
                           "param.count = int:1..5 default 2\n"
                           "param.mode = enum:fast,slow default slow\n"
                           "param.loud = bool default no\n"
                           "retry_exit_codes = 75 111\n"
                           "max_parallel = 3\n"
                           "[type.hook]\n"
                           "kind = http\n"
                           "url = https://{host}/items/{item}?q={q}\n"
                           "allow_hosts = a.example b.example\n"
                           "header.X-Item = {item}\n"
                           "body = {{\"item\": \"{item}\"}}\n"
                           "param.host = string:64\n"
                           "param.item = string:64\n"
                           "param.q = string:64 default x\n"
                           "[type.convert_video_to_libx265]\n"
                           "timeout = 7200\n";

static void test_accepted(void)
{
    const TaskType *echo, *hook, *video;
    char err[512];
    Conf c;

    CHECK_MSG(load(good, &c, err, sizeof(err)) == 0, "%s", err);
    CHECK_INT(tasktype_count(&c), 3);
    echo = tasktype_find(&c, "echo");
    hook = tasktype_find(&c, "hook");
    video = tasktype_find(&c, TASKTYPE_X265);
    CHECK(echo && hook && video);
    if (!echo || !hook || !video)
        return;
    CHECK(echo->kind == &kind_exec && hook->kind == &kind_http && video->kind == &kind_video);
    CHECK(video->builtin && video->timeout == 7200 && video->input == TYPE_INPUT_REQUIRED);
    CHECK_INT(echo->n_params, 4);
    CHECK_INT(echo->max_parallel, 3);
    CHECK_INT(echo->max_attempts, c.max_attempts); /* [convert] max_attempts by default */
    CHECK_INT(echo->n_retry_codes, 2);
    CHECK(echo->n_retry_codes == 2 && echo->retry_codes[0] == 75 && echo->retry_codes[1] == 111);
    /* argv: the quotes group, a placeholder stays inside its element */
    CHECK_STR(echo->argv[0], "/usr/bin/printf");
    CHECK_STR(echo->argv[1], "%s %s\\n");
    CHECK_STR(echo->argv[2], "{word}");
    CHECK_STR(echo->argv[3], "{count} x");
    CHECK(echo->argv[4] == NULL);
    CHECK_STR(echo->result, "stdout"); /* the default */
    CHECK_STR(hook->method, "POST");   /* a body makes the default POST */
    CHECK(hook->timeout == kind_http.default_timeout);
    conf_free(&c);
}

static void test_refused(void)
{
    expect_refused("[type.x]\ncommand = /bin/true\n", "kind");
    expect_refused("[type.x]\nkind = shell\n", "[type.x] kind = 'shell'");
    expect_refused("[type.Bad]\nkind = exec\n", "a type name");
    expect_refused("[type.x]\nkind = exec\ncommand = true\n", "fixed absolute path");
    expect_refused("[type.x]\nkind = exec\ncommand = /bin/{prog}\nparam.prog = string:9\n",
                   "fixed absolute path");
    expect_refused("[type.x]\nkind = exec\ncommand = /bin/echo 'open\n", "unterminated");
    expect_refused("[type.x]\nkind = exec\ncommand = /bin/echo {nope}\n", "{nope}");
    expect_refused("[type.x]\nkind = exec\n", "command");
    expect_refused("[type.x]\nkind = exec\ncommand = /bin/true\nparam.n = int:5..1\n", "param.n");
    expect_refused("[type.x]\nkind = exec\ncommand = /bin/true\nparam.n = int:1..5 default 9\n",
                   "default");
    expect_refused("[type.x]\nkind = exec\ncommand = /bin/true\nparam.e = enum:\n", "param.e");
    /* A bad second choice: the first one's array must still be freed (a fuzzer found it). */
    expect_refused("[type.x]\nkind = exec\ncommand = /bin/true\nparam.e = enum:a,\xff\n",
                   "param.e");
    expect_refused("[type.x]\nkind = exec\ncommand = /bin/true\nparam.s = text\n", "param.s");
    expect_refused("[type.x]\nkind = exec\ncommand = /bin/true\nretry_exit_codes = 0\n",
                   "retry_exit_codes");
    expect_refused("[type.x]\nkind = exec\ncommand = /bin/true\ncolour = red\n", "colour");
    expect_refused("[type.x]\nkind = exec\ncommand = /bin/true\ntimeout = 0\n", "timeout");
    expect_refused("[type.x]\nkind = http\nurl = ftp://a/\n", "http");
    expect_refused("[type.x]\nkind = http\nurl = http://{h}/\nparam.h = string:9\n", "allow_hosts");
    expect_refused("[type.x]\nkind = http\nurl = http://a/\nmethod = TRACE\n", "method");
    expect_refused("[type.x]\nkind = http\nurl = http://a/\ninput = required\n", "input");
    expect_refused("[type.x]\nkind = http\nurl = http://a/\nheader.Bad Name = 1\n", "header");
    expect_refused("[type.convert_video_to_libx265]\nkind = exec\ncommand = /bin/true\n",
                   "convert_video_to_libx265");
}

static void expect_params(const TaskType *tt, const char *text, const char *want_err)
{
    json_t *in = json_loads(text, 0, NULL), *out = NULL;
    char err[256] = "";
    int r = tasktype_params(tt, in, &out, err, sizeof(err));

    if (want_err)
        CHECK_MSG(r < 0 && strstr(err, want_err), "%s: '%s' lacks '%s'", text, err, want_err);
    else
        CHECK_MSG(r == 0, "%s: %s", text, err);
    json_decref(in);
    json_decref(out);
}

static void test_params(void)
{
    const TaskType *echo;
    json_t *out = NULL, *in;
    char err[512];
    Conf c;

    CHECK(load(good, &c, err, sizeof(err)) == 0);
    echo = tasktype_find(&c, "echo");
    in = json_pack("{s:s}", "word", "hi");
    CHECK(tasktype_params(echo, in, &out, err, sizeof(err)) == 0);
    json_t *want =
        json_pack("{s:s, s:i, s:s, s:b}", "word", "hi", "count", 2, "mode", "slow", "loud", 0);
    CHECK_MSG(json_equal(out, want), "the defaults were not filled in");
    json_decref(want);
    json_decref(in);
    json_decref(out);
    expect_params(echo, "{\"word\":\"0123456789\"}", NULL);
    expect_params(echo, "{\"word\":\"01234567890\"}", "params.word");
    expect_params(echo, "{\"word\":\"a\\u0001\"}", "params.word");
    expect_params(echo, "{\"count\":3}", "params.word");
    expect_params(echo, "{\"word\":\"x\",\"count\":6}", "params.count");
    expect_params(echo, "{\"word\":\"x\",\"count\":\"3\"}", "params.count");
    expect_params(echo, "{\"word\":\"x\",\"mode\":\"medium\"}", "params.mode");
    expect_params(echo, "{\"word\":\"x\",\"loud\":1}", "params.loud");
    expect_params(echo, "{\"word\":\"x\",\"other\":1}", "params.other");
    conf_free(&c);
}

static void expect_expand(const char *tmpl, json_t *params, TemplateMode mode, const char *want)
{
    const char *vars[] = {"task_id", "T-1", "input", "in put.mp4", NULL};
    char *out = NULL;

    CHECK_MSG(tasktype_expand(tmpl, params, vars, mode, &out) == 0, "%s", tmpl);
    CHECK_STR(out, want);
    free(out);
}

static void test_templates(void)
{
    json_t *p = json_pack("{s:s, s:i, s:b}", "w", "; rm -rf / $(id)", "n", 7, "b", 1);
    char *out = NULL, **argv = NULL;

    expect_expand("{w}", p, TEMPLATE_RAW, "; rm -rf / $(id)");
    expect_expand("x={n} {b} {task_id} {input}", p, TEMPLATE_RAW, "x=7 true T-1 in put.mp4");
    expect_expand("{{{w}}}", p, TEMPLATE_RAW, "{; rm -rf / $(id)}");
    expect_expand("{params}", p, TEMPLATE_RAW, "{\"b\":true,\"n\":7,\"w\":\"; rm -rf / $(id)\"}");
    expect_expand("http://h/{w}?a={n}", p, TEMPLATE_URL,
                  "http://h/%3B%20rm%20-rf%20%2F%20%24%28id%29?a=7");
    expect_expand("no placeholder }{", p, TEMPLATE_RAW, "no placeholder }{");
    CHECK(tasktype_expand("{missing}", p, NULL, TEMPLATE_RAW, &out) < 0);
    /* splitting: spaces separate, quotes group, nothing else is special */
    CHECK(tasktype_split_command("/bin/a  'b c' \"d' e\" f\\g $(x) ;", &argv) == 0);
    CHECK(argv && !strcmp(argv[0], "/bin/a") && !strcmp(argv[1], "b c") &&
          !strcmp(argv[2], "d' e") && !strcmp(argv[3], "f\\g") && !strcmp(argv[4], "$(x)") &&
          !strcmp(argv[5], ";") && !argv[6]);
    strv_free(argv);
    CHECK(tasktype_split_command("/bin/a 'b", &argv) < 0);
    json_decref(p);
}

static void test_list_and_swap(void)
{
    Conf live, fresh;
    char err[512];
    json_t *list;
    const TaskType *old;

    CHECK(load(good, &live, err, sizeof(err)) == 0);
    list = tasktype_list_json(&live);
    CHECK_INT(json_array_size(json_object_get(list, "task_types")), 3);
    json_t *echo = json_array_get(json_object_get(list, "task_types"), 0);
    json_t *count = json_object_get(json_object_get(echo, "parameters"), "count");
    CHECK_STR(json_string_value(json_object_get(echo, "name")), "echo");
    CHECK_INT(json_integer_value(json_object_get(count, "default")), 2);
    CHECK_STR(json_string_value(json_object_get(count, "type")), "integer");
    json_decref(list);
    old = tasktype_find(&live, "echo");
    CHECK(load("[type.other]\nkind = exec\ncommand = /bin/true\n", &fresh, err, sizeof(err)) == 0);
    tasktype_conf_swap(&live, &fresh);
    CHECK(tasktype_find(&live, "echo") == NULL);
    CHECK(tasktype_find(&live, "other") != NULL);
    CHECK(tasktype_find(&live, TASKTYPE_X265) != NULL);
    CHECK_STR(old->name, "echo"); /* a type in use stays readable after the swap */
    conf_free(&fresh);
    conf_free(&live);
}

int main(void)
{
    dir = check_tmpdir();
    test_accepted();
    test_refused();
    test_params();
    test_templates();
    test_list_and_swap();
    rm_rf_at(AT_FDCWD, dir);
    free(dir);
    return check_done("test_tasktype");
}
