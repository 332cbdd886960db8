/* client_server.c - which server the taskmill client talks to, and how it asks.
 *
 * The server is --server, else $TASKMILL_SERVER, else the config's [client] server, else
 * http:// plus its [rest] listen. Every request goes through one Api handle (client_api.c), so a
 * command's requests share a connection. Failures are reported on stderr here, once. */
#define _GNU_SOURCE
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "taskmill/task.h"

/* "code: message" of an error answer, or a stand-in when its body is not one. */
void server_reply_error(long status, json_t *body, char *buf, size_t len)
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

int server_report(long status, json_t *body)
{
    char buf[1024];

    server_reply_error(status, body, buf, sizeof(buf));
    fprintf(stderr, "taskmill: %s\n", buf);
    return -EREMOTEIO;
}

int server_transport(const Client *cl, const char *method, const char *url, int r)
{
    fprintf(stderr, "taskmill: %s %s: %s\n", method, url, api_strerror(cl->api));
    return r;
}

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

int server_connect(Client *cl, bool local)
{
    int r = client_find_server(cl, local);

    if (r < 0)
        return r;
    r = api_new(&cl->api);
    if (r == 0 && cl->have_conf)
        r = api_set_token(cl->api, cl->conf.client_token);
    if (r < 0) {
        fprintf(stderr, "taskmill: cannot set up libcurl: %s\n", strerror(-r));
        return r;
    }
    api_set_progress(cl->api, cl->tty);
    return 0;
}

void server_close(Client *cl)
{
    api_free(cl->api);
    free(cl->server);
    if (cl->have_conf)
        conf_free(&cl->conf);
}

char *server_url(const Client *cl, const char *path)
{
    char *url;

    if (asprintf(&url, "%s%s", cl->server, path) < 0) {
        fprintf(stderr, "taskmill: out of memory\n");
        return NULL;
    }
    return url;
}

/* "/v1/tasks/<id><suffix>"; the id is checked before it becomes part of a URL. */
int server_task_path(char *buf, size_t len, const char *id, const char *suffix)
{
    if (!task_id_valid(id)) {
        fprintf(stderr, "taskmill: '%s' is not a task id\n", id);
        return -EINVAL;
    }
    snprintf(buf, len, "/v1/tasks/%s%s", id, suffix);
    return 0;
}

/* GET server+path: 0 with the answer, or -errno when none came (reported when asked). */
int server_get_reply(Client *cl, const char *path, bool report, long *ret_status, json_t **ret_json)
{
    char *url = server_url(cl, path);
    int r;

    if (!url)
        return -ENOMEM;
    r = api_get_json(cl->api, url, ret_status, ret_json);
    if (r < 0 && report)
        server_transport(cl, "GET", url, r);
    free(url);
    return r;
}

/* GET server+path expecting 200 and a JSON object; anything else is reported. */
int server_get(Client *cl, const char *path, json_t **ret)
{
    json_t *j = NULL;
    int r = server_call(cl, "GET", path, 200, &j);

    if (r == 0 && !json_is_object(j)) {
        r = server_report(200, j);
        json_decref(j);
    } else if (r == 0) {
        *ret = j;
    }
    return r;
}

int server_get_task(Client *cl, const char *id, json_t **ret)
{
    char path[128];
    int r = server_task_path(path, sizeof(path), id, "");

    return r < 0 ? r : server_get(cl, path, ret);
}

int server_call(Client *cl, const char *method, const char *path, long want, json_t **ret)
{
    char *url = server_url(cl, path);
    long status = 0;
    json_t *j = NULL;
    int r;

    if (!url)
        return -ENOMEM;
    r = !strcmp(method, "GET")      ? api_get_json(cl->api, url, &status, &j)
        : !strcmp(method, "DELETE") ? api_delete(cl->api, url, &status, &j)
                                    : api_post_json(cl->api, url, NULL, &status, &j);
    if (r < 0)
        server_transport(cl, method, url, r);
    else if (status != want)
        r = server_report(status, j);
    free(url);
    if (r < 0 || !ret)
        json_decref(j);
    else
        *ret = j;
    return r;
}

int server_task_call(Client *cl, const char *method, const char *id, const char *suffix, long want,
                     json_t **ret)
{
    char path[128];
    int r = server_task_path(path, sizeof(path), id, suffix);

    return r < 0 ? r : server_call(cl, method, path, want, ret);
}
