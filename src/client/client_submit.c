/* client_submit.c - `taskmill submit FILE`: one upload, streamed from disk, and its task id.
 *
 * file_name is FILE's last component as given, file_path the absolute directory it is in; the
 * name is checked here as the server would, so a bad name fails before any byte is sent. */
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

static int submit_params(const Args *a, char **ret)
{
    json_t *p;
    int r = 0;

    *ret = NULL;
    if (a->crf < 0 && !a->preset)
        return 0;
    p = json_object();
    if (a->crf >= 0 && json_object_set_new(p, "crf", json_integer(a->crf)) < 0)
        r = -ENOMEM;
    if (a->preset && json_object_set_new(p, "preset", json_string(a->preset)) < 0)
        r = -EINVAL; /* not UTF-8 */
    if (r == 0 && !(*ret = json_dumps(p, JSON_COMPACT)))
        r = -ENOMEM;
    json_decref(p);
    if (r < 0)
        fprintf(stderr, "taskmill: cannot build params: %s\n", strerror(-r));
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
    else if (status != 201 || !json_is_object(task))
        r = server_report(status, task);
    else if (cl->json)
        print_json(task);
    else
        printf("%s\n", jstr(task, "id"));
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
    };
    char *dir = NULL, *params = NULL;
    int r = submit_names(a->pos, &form.file_name, &dir);

    if (r == 0)
        r = submit_params(a, &params);
    form.file_path = dir;
    form.params = params;
    if (r == 0)
        r = submit_send(cl, &form);
    free(dir);
    free(params);
    return r < 0 ? CLIENT_EXIT_FAIL : CLIENT_EXIT_OK;
}
