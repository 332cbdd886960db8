/* client_submit.c - `taskmill submit [FILE]`: one task, and its id.
 *
 * With FILE: a multipart upload streamed from disk; file_name is FILE's last component as
 * given, file_path the absolute directory it is in, and the name is checked here as the server
 * would, so a bad name fails before any byte is sent. Without FILE: a JSON task of a type that
 * takes no file (--type). --param NAME=VALUE, --crf and --preset make the params object. */
#define _GNU_SOURCE
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "taskmill/task.h"
#include "taskmill/tasktype.h"

/* file_name is FILE's last component as given; file_path the absolute directory it is in. */
static int submit_names(const char *file, const char **ret_name, char **ret_dir)
{
    const char *slash = strrchr(file, '/'), *name = slash ? slash + 1 : file, *why;
    char *parent;
    struct stat st;

    if (stat(file, &st) < 0 || access(file, R_OK) < 0) {
        int r = -errno;

        fprintf(stderr, "taskmill: %s: %s\n", file, strerror(-r));
        return r;
    }
    if (!S_ISREG(st.st_mode)) {
        fprintf(stderr, "taskmill: %s: not a regular file\n", file);
        return -EINVAL;
    }
    why = task_file_name_problem(name);
    if (why) {
        fprintf(stderr, "taskmill: bad_file_name: %s: %s\n", file, why);
        return -EINVAL;
    }
    parent = slash ? strndup(file, slash == file ? 1 : (size_t)(slash - file)) : strdup(".");
    *ret_dir = parent ? realpath(parent, NULL) : NULL;
    free(parent);
    if (!*ret_dir) {
        fprintf(stderr, "taskmill: %s: cannot resolve its directory: %s\n", file, strerror(errno));
        return -errno;
    }
    *ret_name = name;
    return 0;
}

/* The params object: the --param values, then --crf and --preset (NULL when none). */
static json_t *submit_params(const Args *a)
{
    json_t *p = a->params ? json_deep_copy(a->params) : NULL;

    if (a->crf < 0 && !a->preset)
        return p;
    if (!p)
        p = json_object();
    if (a->crf >= 0)
        json_object_set_new(p, "crf", json_integer(a->crf));
    if (a->preset)
        json_object_set_new(p, "preset", json_string(a->preset));
    return p;
}

/* Prints the new task (its id, or --json). */
static int submit_answer(Client *cl, long status, json_t *task)
{
    if (status != 201 || !json_is_object(task))
        return server_report(status, task);
    if (cl->json)
        print_json(task);
    else
        printf("%s\n", jstr(task, "id"));
    return 0;
}

/* A task without a file, as JSON. */
static int submit_json(Client *cl, const Args *a, json_t *params)
{
    char *url = server_url(cl, "/v1/tasks"), *body;
    json_t *req = json_pack("{s:s, s:O?, s:s?, s:s?, s:s?, s:s?}", "task_type", a->type, "params",
                            params, "callback_url", a->callback, "context", a->context, "batch",
                            a->batch, "run_at", a->at);
    json_t *task = NULL;
    long status = 0;
    int r = -ENOMEM;

    if (req && a->priority >= 0)
        json_object_set_new(req, "priority", json_integer(a->priority));
    if (req && a->delay >= 0)
        json_object_set_new(req, "delay_seconds", json_integer(a->delay));
    body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    if (url && body && (r = api_post_json(cl->api, url, body, &status, &task)) < 0)
        server_transport(cl, "POST", url, r);
    else if (url && body)
        r = submit_answer(cl, status, task);
    json_decref(task);
    json_decref(req);
    free(body);
    free(url);
    return r;
}

static int submit_send(Client *cl, const ApiTaskForm *form)
{
    char *url = server_url(cl, "/v1/tasks");
    long status = 0;
    json_t *task = NULL;
    int r;

    if (!url)
        return -ENOMEM;
    r = api_post_task(cl->api, url, form, &status, &task);
    if (r < 0)
        server_transport(cl, "POST", url, r);
    else
        r = submit_answer(cl, status, task);
    json_decref(task);
    free(url);
    return r;
}

int submit_main(Client *cl, const Args *a)
{
    ApiTaskForm form = {
        .task_type = a->type ? a->type : TASKTYPE_X265,
        .path = a->pos,
        .priority = (int)a->priority,
        .callback_url = a->callback,
        .context = a->context,
        .batch = a->batch,
        .run_at = a->at,
    };
    json_t *params = submit_params(a);
    char *dir = NULL, *text = NULL, delay[32];
    int r = 0;

    if (!a->pos && !a->type) {
        fprintf(stderr, "taskmill submit: give FILE, or --type of a type that takes no file\n");
        json_decref(params);
        return CLIENT_EXIT_USAGE;
    }
    if (!a->pos) {
        r = submit_json(cl, a, params);
        json_decref(params);
        return r < 0 ? CLIENT_EXIT_FAIL : CLIENT_EXIT_OK;
    }
    snprintf(delay, sizeof(delay), "%ld", a->delay);
    form.delay_seconds = a->delay >= 0 ? delay : NULL;
    r = submit_names(a->pos, &form.file_name, &dir);
    if (r == 0 && params && !(text = json_dumps(params, JSON_COMPACT)))
        r = -ENOMEM;
    form.file_path = dir;
    form.params = text;
    if (r == 0)
        r = submit_send(cl, &form);
    json_decref(params);
    free(dir);
    free(text);
    return r < 0 ? CLIENT_EXIT_FAIL : CLIENT_EXIT_OK;
}

int retry_main(Client *cl, const Args *a)
{
    json_t *task = NULL;

    if (server_task_call(cl, "POST", a->pos, "/retry", 200, &task) < 0)
        return CLIENT_EXIT_FAIL;
    print_task_output(cl, task);
    json_decref(task);
    return CLIENT_EXIT_OK;
}
