/* client_fetch.c - `taskmill fetch ID [-o PATH]` and `taskmill delete ID`.
 *
 * fetch resumes an interrupted download with Range and publishes the file only once its size
 * and sha256 match what the server said (client_api.c). A name that comes from the server never
 * replaces a file nor makes a hidden one. */
#define _GNU_SOURCE
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "taskmill/task.h"

static bool sha256_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    return n == SHA256_HEX_LEN && strspn(s, "0123456789abcdefABCDEF") == n;
}

/* The result's name, size and sha256 from a task that must be done; the name comes from the
 * server, so it must be a plain name before it may become a path here. */
static int fetch_result_info(json_t *task, const char **ret_name, json_int_t *ret_size,
                             const char **ret_sha)
{
    json_t *res = json_object_get(task, "result"), *err = json_object_get(task, "error");
    const char *state = jstr(task, "state");
    const char *name = json_string_value(json_object_get(res, "file_name"));
    json_t *size = json_object_get(res, "size");

    if (!strcmp(state, "failed")) {
        fprintf(stderr, "taskmill: %s: %s\n", jstr(err, "code"), jstr(err, "message"));
        return -ENOENT;
    }
    if (strcmp(state, "done")) {
        fprintf(stderr, "taskmill: not_done: task %s is %s\n", jstr(task, "id"), state);
        return -EAGAIN;
    }
    if (!name || task_file_name_problem(name) || !json_is_integer(size) ||
        json_integer_value(size) < 0 ||
        !sha256_valid(json_string_value(json_object_get(res, "sha256")))) {
        fprintf(stderr, "taskmill: bad_answer: the task's result object is not usable\n");
        return -EBADMSG;
    }
    *ret_name = name;
    *ret_size = json_integer_value(size);
    *ret_sha = jstr(res, "sha256");
    return 0;
}

/* -o PATH names the file (replaced if it exists), or the directory to put the result's own name
 * in. A name that comes from the server never replaces a file nor makes a hidden one: a server
 * must not be able to write ./.profile. */
static int fetch_target(const char *output, const char *name, char **ret)
{
    bool server_named = true;
    struct stat st;
    int r;

    if (output && !(stat(output, &st) == 0 && S_ISDIR(st.st_mode)))
        server_named = false;
    if (!output || !server_named)
        r = asprintf(ret, "%s", output ? output : name);
    else
        r = asprintf(ret, "%s%s%s", output, output[strlen(output) - 1] == '/' ? "" : "/", name);
    if (r < 0) {
        fprintf(stderr, "taskmill: out of memory\n");
        return -ENOMEM;
    }
    if (server_named && (name[0] == '.' || access(*ret, F_OK) == 0)) {
        fprintf(stderr, "taskmill: %s %s; choose the file with -o PATH\n", *ret,
                name[0] == '.' ? "would be a hidden file" : "exists");
        free(*ret);
        *ret = NULL;
        return -EEXIST;
    }
    return 0;
}

static int fetch_run(Client *cl, const char *id, const char *path, json_int_t size, const char *sha)
{
    char rpath[128], *url = NULL;
    long status = 0;
    json_t *body = NULL;
    int r = server_task_path(rpath, sizeof(rpath), id, "/result");

    if (r < 0 || !(url = server_url(cl, rpath)))
        return r < 0 ? r : -ENOMEM;
    r = api_fetch_file(cl->api, url, path, (uint64_t)size, sha, &status, &body);
    if (r == -EBADMSG)
        fprintf(stderr, "taskmill: bad_download: %s; removed it\n", api_strerror(cl->api));
    else if (r < 0)
        fprintf(stderr, "taskmill: GET %s: %s\ntaskmill: run the same command again to resume\n",
                url, api_strerror(cl->api));
    else if (status != 200 && status != 206)
        r = server_report(status, body);
    json_decref(body);
    free(url);
    return r;
}

static void fetch_output(const Client *cl, const char *path, json_int_t size, const char *sha)
{
    json_t *j;

    if (!cl->json) {
        printf("%s\n", path);
        return;
    }
    j = json_pack("{s:s, s:I, s:s}", "path", path, "size", size, "sha256", sha);
    if (j)
        print_json(j);
    json_decref(j);
}

int fetch_main(Client *cl, const Args *a)
{
    json_t *task = NULL;
    const char *name, *sha;
    char *path = NULL;
    json_int_t size;
    int r = server_get_task(cl, a->pos, &task);

    if (r == 0)
        r = fetch_result_info(task, &name, &size, &sha);
    if (r == 0)
        r = fetch_target(a->output, name, &path);
    if (r == 0)
        r = fetch_run(cl, a->pos, path, size, sha);
    if (r == 0)
        fetch_output(cl, path, size, sha);
    free(path);
    json_decref(task);
    return r < 0 ? CLIENT_EXIT_FAIL : CLIENT_EXIT_OK;
}

int delete_main(Client *cl, const Args *a)
{
    return server_task_call(cl, "DELETE", a->pos, "", 204, NULL) < 0 ? CLIENT_EXIT_FAIL
                                                                     : CLIENT_EXIT_OK;
}
