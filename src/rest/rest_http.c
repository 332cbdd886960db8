/* rest_http.c - JSON responses, errors and routing of the HTTP API.
 *
 * Every error is a status and {"error":{"code":"...","message":"..."}}; codes are stable and
 * listed in docs/api.md. Routing is a table of (method, path pattern) -> handler. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rest.h"
#include "taskmill/ipc.h"
#include "taskmill/task.h"
#include "taskmill/tasktype.h"
#include "taskmill/text.h"

#define JSON_TYPE "application/json; charset=utf-8"

enum MHD_Result http_json(struct MHD_Connection *c, unsigned status, json_t *body)
{
    char *s = json_dumps(body, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    struct MHD_Response *resp;
    enum MHD_Result ret;
    size_t len;

    json_decref(body);
    if (!s)
        return MHD_NO;
    len = strlen(s);
    s[len] = '\n'; /* replaces the terminator: the body is len + 1 bytes, not a C string */
    resp = MHD_create_response_from_buffer(len + 1, s, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, JSON_TYPE);
    ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result http_error(struct MHD_Connection *c, unsigned status, const char *code,
                           const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    utf8_clip(msg); /* client strings quoted in a message must not break the JSON */
    return http_json(c, status, json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg));
}

enum MHD_Result http_empty(struct MHD_Connection *c, unsigned status)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(c, status, resp);

    MHD_destroy_response(resp);
    return ret;
}

int rest_queue_call(const Rest *rest, const char *type, json_t *body, int timeout_ms,
                    json_t **ret_reply)
{
    static int64_t rid;

    return ipc_call(rest->conf->runtime_dir, IPC_ROLE_REST,
                    ipc_msg(type, __atomic_add_fetch(&rid, 1, __ATOMIC_RELAXED), body), timeout_ms,
                    ret_reply);
}

static enum MHD_Result on_task_types(Rest *rest, struct MHD_Connection *c, const Auth *a,
                                     const char *arg)
{
    (void)arg, (void)a;
    return http_json(c, MHD_HTTP_OK, tasktype_list_json(rest->conf));
}

static enum MHD_Result on_list(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg)
{
    (void)arg;
    return tasks_list(rest, c, a);
}

static enum MHD_Result on_status(Rest *rest, struct MHD_Connection *c, const Auth *a,
                                 const char *arg)
{
    (void)arg, (void)a;
    return tasks_status(rest, c);
}

static enum MHD_Result on_health(Rest *rest, struct MHD_Connection *c, const Auth *a,
                                 const char *arg)
{
    (void)arg, (void)a;
    return tasks_health(rest, c);
}

typedef enum MHD_Result (*Route)(Rest *rest, struct MHD_Connection *c, const Auth *a,
                                 const char *arg);

/* A pattern ends in "*" for one path segment (a task id) and may have a suffix after it. */
static const struct {
    const char *method, *prefix, *suffix;
    Route fn;
} routes[] = {
    {"GET", "/v1/task-types", NULL, on_task_types}, {"GET", "/v1/tasks", NULL, on_list},
    {"GET", "/v1/status", NULL, on_status},         {"GET", "/healthz", NULL, on_health},
    {"GET", "/v1/tasks/", "/result", tasks_result}, {"GET", "/v1/tasks/", "", tasks_get},
    {"DELETE", "/v1/tasks/", "", tasks_delete},
};

/* Matches url against a route; on a match with an argument, copies it into arg. */
static bool route_match(const char *url, const char *prefix, const char *suffix, char *arg,
                        size_t arglen, bool *ret_path_only)
{
    size_t pl = strlen(prefix), n;
    const char *rest, *slash;

    if (!suffix)
        return !strcmp(url, prefix);
    if (strncmp(url, prefix, pl))
        return false;
    rest = url + pl;
    slash = strchr(rest, '/');
    n = slash ? (size_t)(slash - rest) : strlen(rest);
    if (strcmp(rest + n, suffix))
        return false;
    *ret_path_only = true;
    if (n >= arglen)
        n = arglen - 1;
    memcpy(arg, rest, n);
    arg[n] = '\0';
    return true;
}

enum MHD_Result rest_dispatch(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *url,
                              const char *method)
{
    bool path_known = false;
    char arg[128];

    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        bool has_arg = false;
        if (!route_match(url, routes[i].prefix, routes[i].suffix, arg, sizeof(arg), &has_arg))
            continue;
        path_known = true;
        if (strcmp(method, routes[i].method))
            continue;
        if (has_arg && !task_id_valid(arg))
            return http_error(c, MHD_HTTP_BAD_REQUEST, "bad_id",
                              "task ids are lower-case UUIDs like "
                              "3f1c2d4e-5b6a-4c7d-8e9f-0a1b2c3d4e5f");
        return routes[i].fn(rest, c, a, has_arg ? arg : NULL);
    }
    if (path_known || (!strcmp(url, "/v1/tasks") && strcmp(method, "POST")))
        return http_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                          "%s is not allowed on this path", method);
    return http_error(c, MHD_HTTP_NOT_FOUND, "no_such_endpoint", "no endpoint at this path");
}
