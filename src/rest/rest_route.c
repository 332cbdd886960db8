/* rest_route.c - the life of one HTTP request in libmicrohttpd, and the table of endpoints.
 *
 * libmicrohttpd calls route_request once when the headers are in, then once per piece of the
 * body, then once more with no data. It takes an answer only on the first call (before the
 * body) or on the last; an answer in the middle of a body is refused. So:
 *   - what can be decided from the headers alone (a refused connection, a missing token, an
 *     upload over the limits, a body on an endpoint that takes none when that body is large
 *     or of unknown length) is answered on the first call, and the connection is closed;
 *   - a small body on an endpoint that takes none is read and dropped, and the endpoint
 *     answers at the end, keeping the connection alive;
 *   - everything else is answered on the last call (answering on the first would make
 *     libmicrohttpd close every keep-alive connection).
 * Every request gets an answer: there is no path that ends in a silent close. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rest.h"
#include "taskmill/clock.h"
#include "taskmill/task.h"
#include "taskmill/tasktype.h"

/* Largest body read and dropped on an endpoint that takes none. */
#define DISCARD_MAX 65536
/* Largest JSON body of an endpoint that takes one (POST /v1/batches). */
#define JSON_BODY_MAX (64 * 1024)

typedef enum MHD_Result (*RouteFn)(Rest *rest, struct MHD_Connection *c, const Auth *a,
                                   const char *arg);
typedef enum MHD_Result (*BodyFn)(Rest *rest, struct MHD_Connection *c, const Auth *a,
                                  const char *body, size_t len);

/* Who may call an endpoint. */
typedef enum Access {
    ACCESS_TOKEN,  /* any valid token (or the open API) */
    ACCESS_PUBLIC, /* no token needed */
    ACCESS_ADMIN,  /* a token of role admin (or the open API) */
    ACCESS_NODE,   /* a token of role node (or the open API): docs/cluster.md */
} Access;

struct Route {
    const char *method, *prefix, *suffix; /* suffix NULL: exact path; else prefix ID suffix */
    RouteFn fn;                           /* NULL for the upload and for body_fn routes */
    Access access;
    BodyFn body_fn; /* takes a JSON body of at most JSON_BODY_MAX bytes */
    bool node_put;  /* a node's result, streamed to disk (rest_node.c) */
};

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

/* docs/openapi.yaml, compiled in (cmake/embed.cmake). */
extern const unsigned char openapi_yaml[];
extern const size_t openapi_yaml_len;

static enum MHD_Result on_openapi(Rest *rest, struct MHD_Connection *c, const Auth *a,
                                  const char *arg)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        openapi_yaml_len, (void *)openapi_yaml, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret;

    (void)rest, (void)a, (void)arg;
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/yaml; charset=utf-8");
    ret = http_queue(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result on_health(Rest *rest, struct MHD_Connection *c, const Auth *a,
                                 const char *arg)
{
    (void)arg, (void)a;
    return tasks_health(rest, c);
}

#define T ACCESS_TOKEN
#define P ACCESS_PUBLIC
#define A ACCESS_ADMIN
#define N ACCESS_NODE

static const Route routes[] = {
    {"GET", "/v1/task-types", NULL, on_task_types, T, NULL, false},
    {"GET", "/v1/tasks", NULL, on_list, T, NULL, false},
    {"POST", "/v1/tasks", NULL, NULL, T, NULL, false},
    {"GET", "/v1/status", NULL, on_status, T, NULL, false},
    {"GET", "/healthz", NULL, on_health, P, NULL, false},
    {"GET", "/", NULL, ui_page, P, NULL, false},
    {"GET", "/ui/app.js", NULL, ui_script, P, NULL, false},
    {"GET", "/ui/style.css", NULL, ui_style, P, NULL, false},
    {"GET", "/v1/tasks/", "/result", tasks_result, T, NULL, false},
    {"POST", "/v1/tasks/", "/retry", tasks_retry, T, NULL, false},
    {"GET", "/v1/tasks/", "", tasks_get, T, NULL, false},
    {"DELETE", "/v1/tasks/", "", tasks_delete, T, NULL, false},
    {"POST", "/v1/batches", NULL, NULL, T, batches_create, false},
    {"POST", "/v1/batches/", "/close", batches_close, T, NULL, false},
    {"GET", "/v1/batches", NULL, batches_list, T, NULL, false},
    {"GET", "/v1/batches/", "", batches_get, T, NULL, false},
    {"GET", "/v1/workers", NULL, admin_workers, A, NULL, false},
    {"GET", "/v1/workers/history", NULL, admin_history, A, NULL, false},
    {"GET", "/v1/workers/throughput", NULL, admin_throughput, A, NULL, false},
    {"POST", "/v1/admin/drain", NULL, admin_drain, A, NULL, false},
    {"POST", "/v1/admin/resume", NULL, admin_resume, A, NULL, false},
    {"GET", "/v1/admin/check", NULL, admin_check, A, NULL, false},
    {"GET", "/metrics", NULL, metrics_get, A, NULL, false},
    {"GET", "/v1/openapi.yaml", NULL, on_openapi, T, NULL, false},
    {"GET", "/v1/node", NULL, node_whoami, N, NULL, false},
    {"GET", "/v1/node/tasks/", "/input", node_input, N, NULL, false},
    {"PUT", "/v1/node/tasks/", "/output", NULL, N, NULL, true},
};
#undef N
#undef T
#undef P
#undef A

/* Matches url against a route's path; copies the id segment of a pattern into arg. */
static bool path_match(const Route *rt, const char *url, char *arg, size_t arglen)
{
    size_t pl = strlen(rt->prefix), n;
    const char *rest;

    if (!rt->suffix)
        return !strcmp(url, rt->prefix);
    if (strncmp(url, rt->prefix, pl))
        return false;
    rest = url + pl;
    n = strcspn(rest, "/");
    if (strcmp(rest + n, rt->suffix))
        return false;
    if (n >= arglen)
        n = arglen - 1;
    memcpy(arg, rest, n);
    arg[n] = '\0';
    return true;
}

/* The route for method and url, or the status to answer: 404, 405, or 400 for a bad id. */
static unsigned route_find(Req *req, const char *url, const char *method)
{
    bool path_known = false;

    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (!path_match(&routes[i], url, req->arg, sizeof(req->arg)))
            continue;
        path_known = true;
        if (strcmp(method, routes[i].method))
            continue;
        req->route = &routes[i];
        return routes[i].suffix && !task_id_valid(req->arg) ? MHD_HTTP_BAD_REQUEST : 0;
    }
    return path_known ? MHD_HTTP_METHOD_NOT_ALLOWED : MHD_HTTP_NOT_FOUND;
}

static enum MHD_Result answer_refusal(struct MHD_Connection *c, unsigned status, const char *method)
{
    if (status == MHD_HTTP_BAD_REQUEST)
        return http_error(c, status, "bad_id",
                          "task and batch ids are lower-case UUIDs like "
                          "3f1c2d4e-5b6a-4c7d-8e9f-0a1b2c3d4e5f");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        return http_error(c, status, "method_not_allowed", "%.16s is not allowed on this path",
                          method);
    return http_error(c, status, "no_such_endpoint", "no endpoint at this path");
}

/* A body is coming when it has a length above zero or is chunked; *ret_len is its length
 * (UINT64_MAX when unknown). */
static bool body_coming(struct MHD_Connection *c, uint64_t *ret_len)
{
    const char *len = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    const char *te = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Transfer-Encoding");

    *ret_len = len ? strtoull(len, NULL, 10) : 0;
    if (te && strcasestr(te, "chunked"))
        *ret_len = UINT64_MAX;
    return *ret_len > 0;
}

static enum MHD_Result refuse_connection(struct MHD_Connection *c, ConnRefusal why)
{
    if (why == CONN_TOO_MANY)
        return http_error_close(c, MHD_HTTP_TOO_MANY_REQUESTS, "too_many_connections",
                                "this client has too many connections open; close some");
    return http_error_close(c, MHD_HTTP_SERVICE_UNAVAILABLE, "server_busy",
                            "the server has too many connections open; try again shortly");
}

/* The first call: headers only. Returns the answer, or MHD_YES to read the body. */
static enum MHD_Result request_begins(Rest *r, Req *req, struct MHD_Connection *c, const char *url,
                                      const char *method)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    ConnRefusal why;
    uint64_t len;
    int q;

    req->conn = ci ? ci->socket_context : NULL;
    why = conn_request_begins(req->conn);
    if (why != CONN_OK)
        return refuse_connection(c, why);
    req->refusal = route_find(req, url, method);
    if (!(req->route && req->route->access == ACCESS_PUBLIC) &&
        auth_check(MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
                   &req->auth) < 0)
        return http_unauthorized(c); /* before any body is read */
    if (!req->refusal && req->route->access == ACCESS_ADMIN && !req->auth.admin && !req->auth.open)
        return http_error_close(c, MHD_HTTP_FORBIDDEN, "admin_only",
                                "this endpoint needs a token of role admin");
    if (!req->refusal && req->route->access == ACCESS_NODE && !req->auth.node && !req->auth.open)
        return http_error_close(c, MHD_HTTP_FORBIDDEN, "node_only",
                                "this endpoint needs a token of role node");
    if (!req->refusal && req->route->access != ACCESS_NODE && req->route->access != ACCESS_PUBLIC &&
        req->auth.node)
        return http_error_close(c, MHD_HTTP_FORBIDDEN, "node_token",
                                "a node token may only fetch inputs and upload results");
    if (!req->refusal && req->route->node_put) {
        q = node_put_begin(r, c, &req->auth, req->arg, &req->put);
        return q < 0 ? MHD_NO : q > 0 ? node_put_finish(req->put, c) : MHD_YES;
    }
    if (!req->refusal && req->route->body_fn) {
        if (body_coming(c, &len) && len > JSON_BODY_MAX && len != UINT64_MAX)
            return http_error_close(c, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large",
                                    "the JSON body is limited to 64 KiB");
        req->body_wanted = true;
        return MHD_YES;
    }
    if (!req->refusal && req->route->fn == NULL) {
        q = upload_begin(r, c, &req->auth, &req->upload);
        /* Refused before the body: answer at once; MHD then closes the connection rather
         * than read a body nobody wants. */
        return q < 0 ? MHD_NO : q > 0 ? upload_finish(req->upload, c) : MHD_YES;
    }
    if (body_coming(c, &len) && len > DISCARD_MAX) {
        if (req->refusal)
            return answer_refusal(c, req->refusal, method);
        return http_error_close(c, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large",
                                "this endpoint takes no body");
    }
    return MHD_YES; /* answer on the last call, so MHD keeps the connection alive */
}

/* Keeps a JSON body up to JSON_BODY_MAX; past that the rest is counted and dropped, and the
 * answer at the end is 413 (a chunked body has no length to refuse early). */
static enum MHD_Result body_feed(Req *req, const char *data, size_t *data_size)
{
    size_t n = *data_size;

    if (req->body_len + n <= JSON_BODY_MAX) {
        char *b = realloc(req->body, req->body_len + n + 1);
        if (!b)
            return MHD_NO;
        memcpy(b + req->body_len, data, n);
        b[req->body_len + n] = '\0';
        req->body = b;
    }
    req->body_len += n;
    *data_size = 0;
    return req->body_len > 16 * JSON_BODY_MAX ? MHD_NO : MHD_YES;
}

enum MHD_Result route_request(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *data_size, void **con_cls)
{
    Rest *r = cls;
    Req *req = *con_cls;

    (void)version;
    if (!req) {
        req = calloc(1, sizeof(*req));
        if (!req)
            return MHD_NO;
        *con_cls = req;
        req->begun_ns = now_ns();
        return request_begins(r, req, c, url, method);
    }
    if (req->upload)
        return *data_size > 0 ? upload_feed(req->upload, data, data_size)
                              : upload_finish(req->upload, c);
    if (req->put)
        return *data_size > 0 ? node_put_feed(req->put, data, data_size)
                              : node_put_finish(req->put, c);
    if (req->body_wanted && *data_size > 0)
        return body_feed(req, data, data_size);
    if (req->body_wanted) {
        if (req->body_len > JSON_BODY_MAX)
            return http_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large",
                              "the JSON body is limited to 64 KiB");
        return req->route->body_fn(r, c, &req->auth, req->body ? req->body : "", req->body_len);
    }
    if (*data_size > 0) { /* a small body on an endpoint that takes none: dropped */
        req->discarded += *data_size;
        *data_size = 0;
        return req->discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
    }
    if (req->refusal)
        return answer_refusal(c, req->refusal, method);
    return req->route->fn(r, c, &req->auth, req->route->suffix ? req->arg : NULL);
}

void route_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                     enum MHD_RequestTerminationCode toe)
{
    Req *req = *con_cls;

    (void)cls, (void)c, (void)toe;
    if (!req)
        return;
    conn_request_ends(req->conn);
    metrics_request((double)(now_ns() - req->begun_ns) / 1e9);
    if (req->upload)
        upload_free(req->upload);
    if (req->put)
        node_put_free(req->put);
    free(req->body);
    free(req);
    *con_cls = NULL;
}

void route_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                      enum MHD_ConnectionNotificationCode code)
{
    const union MHD_ConnectionInfo *fd, *addr;

    (void)cls;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_closed(*socket_context);
        return;
    }
    fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    addr = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    *socket_context = conn_opened(fd ? fd->connect_fd : -1, addr ? addr->client_addr : NULL);
}
