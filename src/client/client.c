/* client.c - taskmill, the command-line client of the taskmill REST API.
 *
 * main() parses the global options, then one subcommand from a table (name, arguments, the
 * options it takes, handler); every argument is checked, task ids with task_id_valid, before the
 * config is read or the network touched. The server is --server, else $TASKMILL_SERVER, else
 * the config's [client] server, else http:// plus its [rest] listen. Commands print a short
 * summary, or the server's JSON with --json; `sync` and `status` without an id live in
 * client_sync.c. Exit codes: 0 ok, 1 the server refused (its "code: message" on stderr), no
 * answer, a failed task or a bad download, 2 bad arguments, 3 wait --timeout ran out. */
#define _GNU_SOURCE
#include "client.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client_sync.h"
#include "taskmill/conf.h"
#include "taskmill/daemon.h"
#include "taskmill/task.h"
#include "taskmill/tasktype.h"

#define ARRAY_SIZE(a)     (sizeof(a) / sizeof((a)[0]))
#define WAIT_POLL_SECONDS 1

typedef struct Client {
    const char *config_path; /* --config, or NULL */
    const char *server_arg;  /* --server, or NULL */
    char *server;            /* the base URL, without a trailing '/' */
    bool json;               /* print the server's JSON instead of a summary */
    bool tty;                /* stderr is a terminal: draw progress */
    Http *http;
    Conf conf; /* loaded when have_conf */
    bool have_conf;
} Client;

/* The options of the subcommands; a command lists the ones it takes as a mask. */
typedef enum ArgKind {
    ARG_PRIORITY,
    ARG_CRF,
    ARG_PRESET,
    ARG_CALLBACK,
    ARG_TYPE,
    ARG_TIMEOUT,
    ARG_OUTPUT,
    ARG_STATE,
    ARG_LIMIT,
    ARG_WAIT,
    ARG_DRY_RUN,
} ArgKind;
#define OPT_BASE 0x100
#define A(kind)  (1u << ARG_##kind)

typedef enum PosKind { POS_NONE, POS_FILE, POS_ID, POS_ID_OPTIONAL } PosKind;

typedef struct Args {
    const char *pos;                    /* FILE or ID, NULL when absent */
    long priority, crf, timeout, limit; /* -1 when not given */
    const char *preset, *callback, *type, *output, *state;
    bool wait, dry_run;
} Args;

typedef struct Command {
    const char *name, *synopsis, *summary;
    unsigned opts;
    PosKind pos;
    int (*run)(Client *cl, const Args *a);
    bool local; /* reads this client's own config: [client], the state file */
} Command;

static const char *const task_states[] = {"received", "pending", "in_progress", "done", "failed"};

/* ---- output helpers ---- */

static const char *jstr(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s ? s : "-";
}

static void json_print(json_t *j)
{
    json_dumpf(j, stdout, JSON_INDENT(2));
    putchar('\n');
}

static const char *size_human(json_int_t n, char *buf, size_t len)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    size_t u = 0;

    if (n < 1024) {
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT " B", n);
        return buf;
    }
    for (v /= 1024; v >= 1024 && u + 1 < ARRAY_SIZE(units); u++)
        v /= 1024;
    snprintf(buf, len, "%.1f %s", v, units[u]);
    return buf;
}

/* "code: message" of an error answer, or a stand-in when its body is not one. */
static void reply_error(long status, json_t *body, char *buf, size_t len)
{
    json_t *e = json_object_get(body, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));

    if (code && msg)
        snprintf(buf, len, "%s: %s", code, msg);
    else if (status >= 200 && status < 300)
        snprintf(buf, len, "bad_answer: the server answered %ld without the expected JSON", status);
    else
        snprintf(buf, len, "http_%ld: the server answered %ld", status, status);
}

static int client_report(long status, json_t *body)
{
    char buf[1024];

    reply_error(status, body, buf, sizeof(buf));
    fprintf(stderr, "taskmill: %s\n", buf);
    return -EREMOTEIO;
}

static int client_transport(const Client *cl, const char *method, const char *url, int r)
{
    fprintf(stderr, "taskmill: %s %s: %s\n", method, url, http_strerror(cl->http));
    return r;
}

/* ---- finding the server ---- */

static int listen_url(const char *host, int port, char **ret)
{
    bool v6;

    if (!strcmp(host, "0.0.0.0") || !strcmp(host, "*"))
        host = "127.0.0.1"; /* listening on every address: this machine is one of them */
    else if (!strcmp(host, "::"))
        host = "::1";
    v6 = strchr(host, ':') != NULL;
    if (asprintf(ret, "http://%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", port) < 0)
        return -ENOMEM;
    return 0;
}

/* --config, else the default file when it exists, else the built-in defaults. */
static int client_load_conf(Client *cl)
{
    const char *path = cl->config_path;
    char err[1024];
    int r;

    if (!path && access(CONF_DEFAULT_PATH, F_OK) == 0)
        path = CONF_DEFAULT_PATH;
    r = conf_load(path, &cl->conf, err, sizeof(err));
    if (r < 0) {
        fprintf(stderr, "taskmill: %s\n", err);
        return r;
    }
    cl->have_conf = true;
    return 0;
}

static int server_from_conf(const Client *cl, char **ret)
{
    const Conf *conf = &cl->conf;
    char host[256];
    int port, r;

    if (conf->client_server) {
        *ret = strdup(conf->client_server);
        return *ret ? 0 : -ENOMEM;
    }
    r = conf_listen_split(conf, host, sizeof(host), &port);
    if (r < 0) {
        fprintf(stderr, "taskmill: %s: [rest] listen = '%s' is not host:port\n",
                conf->path ? conf->path : "built-in defaults", conf->listen);
        return r;
    }
    return listen_url(host, port, ret);
}

/* An explicit --config is always checked; the default file is read only when no server was
 * named or the command needs it (sync, status), so a client of a remote server never trips over
 * a local file it may not read. */
static int client_find_server(Client *cl, bool local)
{
    const char *env = getenv("TASKMILL_SERVER"), *url;
    char *from_conf = NULL;
    size_t n;
    int r = 0;

    if (env && !*env)
        env = NULL;
    if (local || cl->config_path || !(cl->server_arg || env))
        r = client_load_conf(cl);
    if (r == 0 && !(cl->server_arg || env))
        r = server_from_conf(cl, &from_conf);
    if (r < 0)
        return r;
    url = cl->server_arg ? cl->server_arg : env ? env : from_conf;
    for (n = strlen(url); n > 0 && url[n - 1] == '/'; n--)
        ;
    if (asprintf(&cl->server, "%s%.*s", strstr(url, "://") ? "" : "http://", (int)n, url) < 0)
        cl->server = NULL;
    free(from_conf);
    if (!cl->server)
        fprintf(stderr, "taskmill: out of memory\n");
    return cl->server ? 0 : -ENOMEM;
}

static int client_connect(Client *cl, bool local)
{
    int r = client_find_server(cl, local);

    if (r < 0)
        return r;
    r = http_new(&cl->http);
    if (r == 0 && cl->have_conf)
        r = http_set_token(cl->http, cl->conf.client_token);
    if (r < 0) {
        fprintf(stderr, "taskmill: cannot set up libcurl: %s\n", strerror(-r));
        return r;
    }
    http_set_progress(cl->http, cl->tty);
    return 0;
}

static void client_close(Client *cl)
{
    http_free(cl->http);
    free(cl->server);
    if (cl->have_conf)
        conf_free(&cl->conf);
}

/* ---- requests ---- */

static char *client_url(const Client *cl, const char *path)
{
    char *url;

    if (asprintf(&url, "%s%s", cl->server, path) < 0) {
        fprintf(stderr, "taskmill: out of memory\n");
        return NULL;
    }
    return url;
}

/* "/v1/tasks/<id><suffix>"; the id is checked before it becomes part of a URL. */
static int task_path(char *buf, size_t len, const char *id, const char *suffix)
{
    if (!task_id_valid(id)) {
        fprintf(stderr, "taskmill: '%s' is not a task id\n", id);
        return -EINVAL;
    }
    snprintf(buf, len, "/v1/tasks/%s%s", id, suffix);
    return 0;
}

/* GET server+path: 0 with the answer, or -errno when none came (reported when asked). */
static int client_get_reply(Client *cl, const char *path, bool report, long *ret_status,
                            json_t **ret_json)
{
    char *url = client_url(cl, path);
    int r;

    if (!url)
        return -ENOMEM;
    r = http_get_json(cl->http, url, ret_status, ret_json);
    if (r < 0 && report)
        client_transport(cl, "GET", url, r);
    free(url);
    return r;
}

/* GET server+path expecting 200 and a JSON object; anything else is reported. */
static int client_get(Client *cl, const char *path, json_t **ret)
{
    long status = 0;
    json_t *j = NULL;
    int r = client_get_reply(cl, path, true, &status, &j);

    if (r < 0)
        return r;
    if (status != 200 || !json_is_object(j)) {
        r = client_report(status, j);
        json_decref(j);
        return r;
    }
    *ret = j;
    return 0;
}

static int client_get_task(Client *cl, const char *id, json_t **ret)
{
    char path[128];
    int r = task_path(path, sizeof(path), id, "");

    return r < 0 ? r : client_get(cl, path, ret);
}

/* ---- task summaries ---- */

static void progress_print(json_t *progress)
{
    json_t *fps = json_object_get(progress, "fps"), *eta = json_object_get(progress, "eta_seconds");

    printf(" %.1f%%", json_number_value(json_object_get(progress, "percent")));
    if (json_is_number(fps))
        printf(", %.1f fps", json_number_value(fps));
    if (json_is_number(eta))
        printf(", eta %.0f s", json_number_value(eta));
}

static void task_print(json_t *t)
{
    json_t *result = json_object_get(t, "result"), *error = json_object_get(t, "error");
    char size[32];

    printf("id:      %s\n", jstr(t, "id"));
    printf("state:   %s", jstr(t, "state"));
    if (!strcmp(jstr(t, "state"), "in_progress"))
        progress_print(json_object_get(t, "progress"));
    printf("\nfile:    %s (%s)\n", jstr(t, "file_name"),
           size_human(json_integer_value(json_object_get(t, "size")), size, sizeof(size)));
    if (json_is_object(result))
        printf("result:  %s (%s) sha256 %s\n", jstr(result, "file_name"),
               size_human(json_integer_value(json_object_get(result, "size")), size, sizeof(size)),
               jstr(result, "sha256"));
    if (json_is_object(error))
        printf("error:   %s: %s\n", jstr(error, "code"), jstr(error, "message"));
}

static void task_output(const Client *cl, json_t *t)
{
    if (cl->json)
        json_print(t);
    else
        task_print(t);
}

/* ---- submit ---- */

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

static int submit_send(Client *cl, const HttpTaskForm *form)
{
    char *url = client_url(cl, "/v1/tasks");
    long status = 0;
    json_t *task = NULL;
    int r;

    if (!url)
        return -ENOMEM;
    r = http_post_task(cl->http, url, form, &status, &task);
    if (r < 0)
        client_transport(cl, "POST", url, r);
    else if (status != 201 || !json_is_object(task))
        r = client_report(status, task);
    else if (cl->json)
        json_print(task);
    else
        printf("%s\n", jstr(task, "id"));
    json_decref(task);
    free(url);
    return r;
}

static int cmd_submit(Client *cl, const Args *a)
{
    HttpTaskForm form = {
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

/* ---- status, wait ---- */

static int server_status_print(json_t *st)
{
    printf("waiting: %" JSON_INTEGER_FORMAT "\n",
           json_integer_value(json_object_get(st, "waiting")));
    printf("working: %" JSON_INTEGER_FORMAT "\n",
           json_integer_value(json_object_get(st, "working")));
    printf("done:    %" JSON_INTEGER_FORMAT "\n", json_integer_value(json_object_get(st, "done")));
    printf("failed:  %" JSON_INTEGER_FORMAT "\n",
           json_integer_value(json_object_get(st, "failed")));
    printf("workers: %" JSON_INTEGER_FORMAT " free of %" JSON_INTEGER_FORMAT "\n",
           json_integer_value(json_object_get(st, "free_workers")),
           json_integer_value(json_object_get(st, "max_workers")));
    return 0;
}

static SyncOptions sync_options(const Client *cl, const Args *a)
{
    return (SyncOptions){.conf = &cl->conf,
                         .http = cl->http,
                         .server = cl->server,
                         .tty = cl->tty,
                         .dry_run = a->dry_run,
                         .wait = a->wait,
                         .json = cl->json};
}

static int cmd_status(Client *cl, const Args *a)
{
    json_t *j = NULL;
    SyncOptions o = sync_options(cl, a);
    bool shown = false;
    int r;

    if (!a->pos) {
        r = sync_status_table(&o, &shown);
        if (shown)
            return r;
    }
    r = a->pos ? client_get_task(cl, a->pos, &j) : client_get(cl, "/v1/status", &j);

    if (r < 0)
        return CLIENT_EXIT_FAIL;
    if (cl->json)
        json_print(j);
    else if (a->pos)
        task_print(j);
    else
        server_status_print(j);
    json_decref(j);
    return CLIENT_EXIT_OK;
}

static bool task_finished(json_t *t)
{
    const char *state = jstr(t, "state");

    return !strcmp(state, "done") || !strcmp(state, "failed");
}

/* One look at the task: 1 when it has finished, 0 when not yet (or when the server is away for
 * a moment: a restart of the server is not the end of the task), -errno when waiting is
 * pointless (reported). *task holds the latest view. */
static int wait_poll(Client *cl, const char *path, json_t **task, bool *warned)
{
    long status = 0;
    json_t *j = NULL;
    char why[1024];
    int r = client_get_reply(cl, path, false, &status, &j);

    if (r < 0 || status >= 500) {
        if (r < 0)
            snprintf(why, sizeof(why), "GET %s: %s", path, http_strerror(cl->http));
        else
            reply_error(status, j, why, sizeof(why));
        if (!*warned)
            fprintf(stderr, "taskmill: %s (still waiting)\n", why);
        *warned = true;
        json_decref(j);
        return 0;
    }
    if (status != 200 || !json_is_object(j)) {
        r = client_report(status, j);
        json_decref(j);
        return r;
    }
    json_decref(*task);
    *task = j;
    return task_finished(j);
}

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void wait_show(const Client *cl, json_t *task)
{
    json_t *pct = json_object_get(json_object_get(task, "progress"), "percent");

    if (cl->tty && task)
        fprintf(stderr, "\r%s %.1f%%\033[K", jstr(task, "state"), json_number_value(pct));
}

static int wait_loop(Client *cl, const Args *a, const char *path, json_t **task)
{
    double deadline = now_seconds() + (double)a->timeout;
    bool warned = false;
    int r;

    while ((r = wait_poll(cl, path, task, &warned)) == 0) {
        wait_show(cl, *task);
        if (a->timeout >= 0 && now_seconds() >= deadline) {
            if (cl->tty)
                fputs("\r\033[K", stderr);
            fprintf(stderr, "taskmill: timeout: task %s is still %s after %ld s\n", a->pos,
                    *task ? jstr(*task, "state") : "unknown", a->timeout);
            return -ETIMEDOUT;
        }
        sleep(WAIT_POLL_SECONDS);
    }
    if (cl->tty)
        fputs("\r\033[K", stderr);
    return r < 0 ? r : 0;
}

static int cmd_wait(Client *cl, const Args *a)
{
    char path[128];
    json_t *task = NULL;
    int r = task_path(path, sizeof(path), a->pos, "");

    if (r == 0)
        r = wait_loop(cl, a, path, &task);
    if (r == 0) {
        task_output(cl, task);
        r = strcmp(jstr(task, "state"), "done") ? CLIENT_EXIT_FAIL : CLIENT_EXIT_OK;
    } else {
        r = r == -ETIMEDOUT ? CLIENT_EXIT_TIMEOUT : CLIENT_EXIT_FAIL;
    }
    json_decref(task);
    return r;
}

/* ---- fetch ---- */

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
    int r = task_path(rpath, sizeof(rpath), id, "/result");

    if (r < 0 || !(url = client_url(cl, rpath)))
        return r < 0 ? r : -ENOMEM;
    r = http_fetch_file(cl->http, url, path, (uint64_t)size, sha, &status, &body);
    if (r == -EBADMSG)
        fprintf(stderr, "taskmill: bad_download: %s; removed it\n", http_strerror(cl->http));
    else if (r < 0)
        fprintf(stderr, "taskmill: GET %s: %s\ntaskmill: run the same command again to resume\n",
                url, http_strerror(cl->http));
    else if (status != 200 && status != 206)
        r = client_report(status, body);
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
        json_print(j);
    json_decref(j);
}

static int cmd_fetch(Client *cl, const Args *a)
{
    json_t *task = NULL;
    const char *name, *sha;
    char *path = NULL;
    json_int_t size;
    int r = client_get_task(cl, a->pos, &task);

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

/* ---- delete ---- */

static int cmd_delete(Client *cl, const Args *a)
{
    char path[128], *url = NULL;
    long status = 0;
    json_t *body = NULL;
    int r = task_path(path, sizeof(path), a->pos, "");

    if (r < 0 || !(url = client_url(cl, path)))
        return CLIENT_EXIT_FAIL;
    r = http_delete(cl->http, url, &status, &body);
    if (r < 0)
        client_transport(cl, "DELETE", url, r);
    else if (status != 204)
        r = client_report(status, body);
    json_decref(body);
    free(url);
    return r < 0 ? CLIENT_EXIT_FAIL : CLIENT_EXIT_OK;
}

/* ---- list ---- */

static int query_add(char **path, const char *key, const char *value)
{
    char *s;

    if (!value)
        return 0;
    if (asprintf(&s, "%s%c%s=%s", *path, strchr(*path, '?') ? '&' : '?', key, value) < 0)
        return -ENOMEM;
    free(*path);
    *path = s;
    return 0;
}

static int list_page(Client *cl, const Args *a, const char *cursor, json_t **ret)
{
    char *path = strdup("/v1/tasks"), *esc = cursor ? http_escape(cl->http, cursor) : NULL;
    char limit[32];
    int r = path && (esc || !cursor) ? 0 : -ENOMEM;

    snprintf(limit, sizeof(limit), "%ld", a->limit);
    if (r == 0)
        r = query_add(&path, "state", a->state);
    if (r == 0)
        r = query_add(&path, "limit", a->limit > 0 ? limit : NULL);
    if (r == 0)
        r = query_add(&path, "cursor", esc);
    if (r < 0)
        fprintf(stderr, "taskmill: out of memory\n");
    else
        r = client_get(cl, path, ret);
    free(path);
    free(esc);
    return r;
}

static void list_rows(json_t *tasks, bool header)
{
    size_t i;
    json_t *t;

    if (header)
        printf("%-36s  %-11s  %7s  %s\n", "ID", "STATE", "PERCENT", "FILE");
    json_array_foreach(tasks, i, t)
    {
        double pct = json_number_value(json_object_get(json_object_get(t, "progress"), "percent"));

        printf("%-36s  %-11s  %6.1f%%  %s\n", jstr(t, "id"), jstr(t, "state"), pct,
               jstr(t, "file_name"));
    }
}

/* Without --limit, follows next_cursor to the end; the JSON form is then one merged page. */
static int list_all(Client *cl, const Args *a, json_t *all)
{
    json_t *page = NULL, *tasks, *next;
    char *cursor = NULL;
    int r;

    while ((r = list_page(cl, a, cursor, &page)) == 0) {
        tasks = json_object_get(page, "tasks");
        next = json_object_get(page, "next_cursor");
        if (cl->json)
            json_array_extend(all, tasks);
        else
            list_rows(tasks, !cursor);
        if (a->limit > 0 || !json_is_string(next) ||
            (cursor && !strcmp(cursor, json_string_value(next)))) {
            if (cl->json && json_object_set(page, "tasks", all) == 0)
                json_print(page);
            break;
        }
        free(cursor);
        cursor = strdup(json_string_value(next));
        json_decref(page);
        page = NULL;
        if (!cursor)
            r = -ENOMEM;
    }
    json_decref(page);
    free(cursor);
    return r;
}

static int cmd_list(Client *cl, const Args *a)
{
    json_t *all = json_array();
    int r;

    if (!all)
        return CLIENT_EXIT_FAIL;
    r = list_all(cl, a, all);
    json_decref(all);
    return r < 0 ? CLIENT_EXIT_FAIL : CLIENT_EXIT_OK;
}

/* ---- types ---- */

static void param_print(const char *name, json_t *p)
{
    json_t *min = json_object_get(p, "minimum"), *max = json_object_get(p, "maximum");
    json_t *choices = json_object_get(p, "enum"), *dv = json_object_get(p, "default"), *v;
    char *def = dv ? json_dumps(dv, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    size_t i;

    printf("    %-8s %s", name, jstr(p, "type"));
    if (json_is_integer(min) && json_is_integer(max))
        printf(" %" JSON_INTEGER_FORMAT "..%" JSON_INTEGER_FORMAT, json_integer_value(min),
               json_integer_value(max));
    json_array_foreach(choices, i, v)
    {
        printf("%s%s", i ? "|" : " ", json_string_value(v) ? json_string_value(v) : "?");
    }
    printf("%s%s%s: %s\n", def ? " (default " : "", def ? def : "", def ? ")" : "",
           jstr(p, "description"));
    free(def);
}

static void type_print(json_t *type)
{
    json_t *params = json_object_get(type, "parameters"), *v;
    const char *key;
    size_t i;

    printf("%s\n    %s\n    extensions:", jstr(type, "name"), jstr(type, "description"));
    json_array_foreach(json_object_get(type, "extensions"), i, v)
    {
        printf(" %s", json_string_value(v) ? json_string_value(v) : "?");
    }
    printf("\n    parameters:\n");
    json_object_foreach(params, key, v)
    {
        param_print(key, v);
    }
}

static int cmd_types(Client *cl, const Args *a)
{
    json_t *j = NULL, *type;
    size_t i;

    (void)a;
    if (client_get(cl, "/v1/task-types", &j) < 0)
        return CLIENT_EXIT_FAIL;
    if (cl->json) {
        json_print(j);
    } else {
        json_array_foreach(json_object_get(j, "task_types"), i, type)
        {
            type_print(type);
        }
    }
    json_decref(j);
    return CLIENT_EXIT_OK;
}

/* ---- sync ---- */

/* TASKMILL_SYNC_TEST_THROTTLE=BYTES: slows every transfer to BYTES per second, so that tests
 * can kill a run in the middle of an upload or a download. Not for production use. */
static void sync_test_throttle(Client *cl)
{
    const char *v = getenv("TASKMILL_SYNC_TEST_THROTTLE");

    if (v && *v)
        http_set_throttle(cl->http, strtoull(v, NULL, 10));
}

static int cmd_sync(Client *cl, const Args *a)
{
    SyncOptions o = sync_options(cl, a);

    sync_test_throttle(cl);
    return sync_run(&o);
}

/* ---- arguments ---- */

static const Command commands[] = {
    {"submit", "FILE [--priority N] [--crf N] [--preset P] [--callback URL] [--type T]",
     "upload FILE as a new task and print its id",
     A(PRIORITY) | A(CRF) | A(PRESET) | A(CALLBACK) | A(TYPE), POS_FILE, cmd_submit, false},
    {"status", "[ID]",
     "show a task; without ID, this client's sync tasks (else the server's queue counts)", 0,
     POS_ID_OPTIONAL, cmd_status, true},
    {"wait", "ID [--timeout S]", "poll until the task is done (exit 0) or failed (exit 1)",
     A(TIMEOUT), POS_ID, cmd_wait, false},
    {"fetch", "ID [-o PATH]", "download the result (resumable), check its sha256", A(OUTPUT),
     POS_ID, cmd_fetch, false},
    {"delete", "ID", "delete a task and its files", 0, POS_ID, cmd_delete, false},
    {"list", "[--state S] [--limit N]", "list tasks, all of them unless --limit",
     A(STATE) | A(LIMIT), POS_NONE, cmd_list, false},
    {"types", "", "list the task types the server knows", 0, POS_NONE, cmd_types, false},
    {"sync", "[--wait] [--dry-run]",
     "send the new videos of the [client] folders, fetch the results (docs/client.md)",
     A(WAIT) | A(DRY_RUN), POS_NONE, cmd_sync, true},
};

static const struct option command_options[] = {
    {"priority", required_argument, NULL, OPT_BASE + ARG_PRIORITY},
    {"crf", required_argument, NULL, OPT_BASE + ARG_CRF},
    {"preset", required_argument, NULL, OPT_BASE + ARG_PRESET},
    {"callback", required_argument, NULL, OPT_BASE + ARG_CALLBACK},
    {"type", required_argument, NULL, OPT_BASE + ARG_TYPE},
    {"timeout", required_argument, NULL, OPT_BASE + ARG_TIMEOUT},
    {"output", required_argument, NULL, 'o'},
    {"state", required_argument, NULL, OPT_BASE + ARG_STATE},
    {"limit", required_argument, NULL, OPT_BASE + ARG_LIMIT},
    {"wait", no_argument, NULL, OPT_BASE + ARG_WAIT},
    {"dry-run", no_argument, NULL, OPT_BASE + ARG_DRY_RUN},
    {"json", no_argument, NULL, 'j'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: taskmill [--config FILE] [--server URL] [--json] COMMAND [ARGS]\n\n"
               "Commands:\n");
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
        fprintf(f, "  %s%s%s\n      %s\n", commands[i].name, *commands[i].synopsis ? " " : "",
                commands[i].synopsis, commands[i].summary);
    fprintf(f,
            "\nOptions:\n"
            "  -c, --config FILE  configuration file (default %s, if it exists)\n"
            "  -s, --server URL   server URL (default $TASKMILL_SERVER, else the config's\n"
            "                     [client] server, else http:// and its [rest] listen)\n"
            "  -j, --json         print the server's JSON instead of a summary\n"
            "  -h, --help         show this help\n"
            "  -V, --version      show the version\n\n"
            "Exit status: 0 ok, 1 error or failed task, 2 bad arguments, 3 wait timed out.\n"
            "sync exits 0 when it did its work (failed tasks are recorded in its state), also\n"
            "when another run holds its lock; 1 when the server cannot be reached.\n",
            CONF_DEFAULT_PATH);
}

/* problem NULL: asked for help (stdout); "": getopt has said what is wrong. */
static int command_usage(const Command *cmd, const char *problem)
{
    FILE *f = problem ? stderr : stdout;

    if (problem && *problem)
        fprintf(f, "taskmill %s: %s\n", cmd->name, problem);
    fprintf(f, "Usage: taskmill [--json] %s%s%s\n%s\n", cmd->name, *cmd->synopsis ? " " : "",
            cmd->synopsis, cmd->summary);
    return problem ? -EINVAL : 1;
}

static const char *option_misplaced(ArgKind kind, char *buf, size_t len)
{
    for (const struct option *o = command_options; o->name; o++)
        if (o->val == (kind == ARG_OUTPUT ? 'o' : OPT_BASE + (int)kind))
            snprintf(buf, len, "--%s does not apply to this command", o->name);
    return buf;
}

static bool parse_long(const char *s, long lo, long hi, long *ret)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *ret = v;
    return true;
}

static bool state_valid(const char *s)
{
    for (size_t i = 0; i < ARRAY_SIZE(task_states); i++)
        if (!strcmp(s, task_states[i]))
            return true;
    return false;
}

/* Stores one option's value; NULL, or what is wrong with it. */
static const char *arg_set(Args *a, ArgKind kind, const char *v)
{
    switch (kind) {
    case ARG_PRIORITY:
        return parse_long(v, TASK_PRIORITY_MIN, TASK_PRIORITY_MAX, &a->priority)
                   ? NULL
                   : "--priority takes an integer from 0 to 1000";
    case ARG_CRF:
        return parse_long(v, 0, 51, &a->crf) ? NULL : "--crf takes an integer from 0 to 51";
    case ARG_TIMEOUT:
        return parse_long(v, 0, INT_MAX, &a->timeout) ? NULL
                                                      : "--timeout takes a number of seconds";
    case ARG_LIMIT:
        return parse_long(v, 1, INT_MAX, &a->limit) ? NULL : "--limit takes a positive integer";
    case ARG_STATE:
        a->state = v;
        return state_valid(v) ? NULL
                              : "--state takes received, pending, in_progress, done or failed";
    case ARG_PRESET:
        a->preset = v;
        return *v ? NULL : "--preset is empty";
    case ARG_CALLBACK:
        a->callback = v;
        return *v ? NULL : "--callback is empty";
    case ARG_TYPE:
        a->type = v;
        return *v ? NULL : "--type is empty";
    case ARG_OUTPUT:
        a->output = v;
        return *v ? NULL : "-o is empty";
    case ARG_WAIT:
        a->wait = true;
        return NULL;
    case ARG_DRY_RUN:
        a->dry_run = true;
        return NULL;
    }
    return "unknown option";
}

static const char *pos_check(const Command *cmd, int left, char **rest, Args *a)
{
    bool need = cmd->pos == POS_FILE || cmd->pos == POS_ID;

    if (left > (cmd->pos == POS_NONE ? 0 : 1))
        return "too many arguments";
    if (left == 0)
        return need ? (cmd->pos == POS_FILE ? "FILE is missing" : "ID is missing") : NULL;
    a->pos = rest[0];
    if (cmd->pos != POS_FILE && !task_id_valid(a->pos))
        return "ID must be a task id (a lower-case UUID)";
    return NULL;
}

/* 0: run the command; 1: help was printed; -EINVAL: bad arguments (reported). argv[0] is the
 * command's name. */
static int command_options_parse(const Command *cmd, int argc, char **argv, Client *cl, Args *a)
{
    char why[64];
    const char *problem;
    int c;

    optind = 0; /* glibc: start a fresh scan */
    while ((c = getopt_long(argc, argv, "o:jh", command_options, NULL)) != -1) {
        ArgKind kind;

        if (c == 'j') {
            cl->json = true;
            continue;
        }
        if (c == 'h')
            return command_usage(cmd, NULL);
        if (c == '?')
            return command_usage(cmd, "");
        kind = c == 'o' ? ARG_OUTPUT : (ArgKind)(c - OPT_BASE);
        if (!(cmd->opts & (1u << kind)))
            return command_usage(cmd, option_misplaced(kind, why, sizeof(why)));
        problem = arg_set(a, kind, optarg);
        if (problem)
            return command_usage(cmd, problem);
    }
    problem = pos_check(cmd, argc - optind, argv + optind, a);
    return problem ? command_usage(cmd, problem) : 0;
}

/* argv[0] becomes "taskmill submit" while getopt runs, so that its messages name the command. */
static int command_parse(const Command *cmd, int argc, char **argv, Client *cl, Args *a)
{
    char prog[64], *saved = argv[0];
    int r;

    *a = (Args){.priority = -1, .crf = -1, .timeout = -1, .limit = -1};
    snprintf(prog, sizeof(prog), "taskmill %s", cmd->name);
    argv[0] = prog;
    r = command_options_parse(cmd, argc, argv, cl, a);
    argv[0] = saved;
    return r;
}

/* 0: go on; 1: help or version printed; -EINVAL: bad arguments (reported). */
static int global_parse(int argc, char **argv, Client *cl)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"server", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},         {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},      {NULL, 0, NULL, 0},
    };
    int c;

    while ((c = getopt_long(argc, argv, "+c:s:jhV", opts, NULL)) != -1) {
        if (c == 'c')
            cl->config_path = optarg;
        else if (c == 's')
            cl->server_arg = optarg;
        else if (c == 'j')
            cl->json = true;
        else if (c == 'h')
            return usage(stdout), 1;
        else if (c == 'V')
            return print_version("taskmill"), 1;
        else
            return usage(stderr), -EINVAL;
    }
    if (optind < argc)
        return 0;
    fprintf(stderr, "taskmill: a command is missing\n");
    return usage(stderr), -EINVAL;
}

static const Command *command_find(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
        if (!strcmp(commands[i].name, name))
            return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    static char prog[] = "taskmill"; /* getopt's messages say "taskmill: ..." */
    Client cl = {.tty = isatty(STDERR_FILENO)};
    const Command *cmd;
    Args a;
    int r;

    argv[0] = prog;
    r = global_parse(argc, argv, &cl);
    if (r != 0)
        return r < 0 ? CLIENT_EXIT_USAGE : CLIENT_EXIT_OK;
    cmd = command_find(argv[optind]);
    if (!cmd) {
        fprintf(stderr, "taskmill: unknown command '%s'\n", argv[optind]);
        usage(stderr);
        return CLIENT_EXIT_USAGE;
    }
    r = command_parse(cmd, argc - optind, argv + optind, &cl, &a);
    if (r != 0)
        return r < 0 ? CLIENT_EXIT_USAGE : CLIENT_EXIT_OK;
    r = client_connect(&cl, cmd->local) < 0 ? CLIENT_EXIT_FAIL : cmd->run(&cl, &a);
    client_close(&cl);
    return r;
}
