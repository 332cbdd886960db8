/* rest_http.c - JSON responses and errors of the HTTP API, and the call to the queue.
 *
 * Every error is a status and {"error":{"code":"...","message":"..."}}; codes are stable and
 * listed in docs/api.md. Messages are clipped to valid UTF-8, so a client string quoted in one
 * can never break the JSON. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rest.h"
#include "taskmill/ipc.h"
#include "taskmill/text.h"

#define JSON_TYPE "application/json; charset=utf-8"

enum MHD_Result http_queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *resp)
{
    metrics_answer(status);
    return MHD_queue_response(c, status, resp);
}

enum MHD_Result http_json(struct MHD_Connection *c, unsigned status, json_t *body)
{
    return http_json_with(c, status, body, NULL);
}

enum MHD_Result http_json_with(struct MHD_Connection *c, unsigned status, json_t *body,
                               const char *location)
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
    if (location)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location);
    ret = http_queue(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static json_t *error_body(const char *code, char *msg)
{
    utf8_clip(msg); /* client strings quoted in a message must not break the JSON */
    return json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg);
}

enum MHD_Result http_error(struct MHD_Connection *c, unsigned status, const char *code,
                           const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return http_json(c, status, error_body(code, msg));
}

/* A JSON answer with extra headers, for the answers given before a body. */
static enum MHD_Result json_with(struct MHD_Connection *c, unsigned status, json_t *body,
                                 const char *header, const char *value)
{
    char *s = json_dumps(body, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    struct MHD_Response *resp;
    enum MHD_Result ret;

    json_decref(body);
    resp = s ? MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE) : NULL;
    if (!resp) {
        free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, JSON_TYPE);
    MHD_add_response_header(resp, header, value);
    ret = http_queue(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result http_unauthorized(struct MHD_Connection *c)
{
    char msg[] = "a valid 'Authorization: Bearer <token>' header is required";

    return json_with(c, MHD_HTTP_UNAUTHORIZED, error_body("unauthorized", msg),
                     MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"taskmill\"");
}

enum MHD_Result http_error_close(struct MHD_Connection *c, unsigned status, const char *code,
                                 const char *message)
{
    char msg[512];

    snprintf(msg, sizeof(msg), "%s", message);
    return json_with(c, status, error_body(code, msg), MHD_HTTP_HEADER_CONNECTION, "close");
}

bool http_limit(struct MHD_Connection *c, long dflt, long max, long *ret, enum MHD_Result *answer)
{
    const char *s = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
    char *end;

    *ret = dflt;
    if (!s || ((*ret = strtol(s, &end, 10)) >= 1 && *ret <= max && !*end && end != s))
        return true;
    *answer = http_error(c, MHD_HTTP_BAD_REQUEST, "bad_limit", "limit must be 1 to %ld", max);
    return false;
}

enum MHD_Result http_empty(struct MHD_Connection *c, unsigned status)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = http_queue(c, status, resp);

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
