/* kind_http.c - the http kind: make one HTTP request the admin describes, with the task's
 * parameters filled in (run by taskmill-callback, src/callback/callback_http.c, behind the same
 * address guard as callbacks).
 *
 *   url = https://api.example.com/v1/items/{item}   parameters are percent-encoded; the host is
 *                                                   fixed unless allow_hosts lists the hosts a
 *                                                   placeholder in it may become
 *   method = POST                                   GET, POST, PUT, PATCH, DELETE (default GET,
 *                                                   POST when there is a body)
 *   header.Content-Type = application/json          repeatable, templates
 *   body = {params}                                 a template; {params} is the parameters as JSON
 *   allow_hosts = a.example.com b.example.com
 *   max_body_bytes = 1048576                        the answer's body kept as the result
 * A 2xx answer is done; 5xx, a timeout or a failed connection is retried; anything else fails. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "taskmill/conf.h"
#include "taskmill/text.h"
#include "taskmill/tasktype.h"

static const char *const http_vars[] = {"task_id", NULL};

static const char *header_add(TaskType *t, const char *name, const char *value)
{
    size_t n = 0;
    char **v, *line;

    if (!*name || strpbrk(name, ": \t") || text_has_control(value))
        return "header.NAME = value, a plain header name and a one-line value";
    while (t->headers && t->headers[n])
        n++;
    if (!(v = realloc(t->headers, (n + 2) * sizeof(*v))))
        return "out of memory";
    t->headers = v;
    line = malloc(strlen(name) + strlen(value) + 3);
    if (!line)
        return "out of memory";
    strcpy(line, name);
    strcat(line, ": ");
    strcat(line, value);
    v[n] = line;
    v[n + 1] = NULL;
    return NULL;
}

static const char *http_key(TaskType *t, const char *key, const char *value)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};
    char **field = !strcmp(key, "url")           ? &t->url
                   : !strcmp(key, "body")        ? &t->body
                   : !strcmp(key, "allow_hosts") ? &t->allow_hosts
                   : !strcmp(key, "method")      ? &t->method
                                                 : NULL;

    if (!strncmp(key, "header.", 7))
        return header_add(t, key + 7, value);
    if (!strcmp(key, "max_body_bytes")) {
        char *end;
        unsigned long long v = strtoull(value, &end, 10);
        if (end == value || *end || v < 1 || v > (1ULL << 30))
            return "must be 1 to 1073741824 bytes";
        t->max_stdout_bytes = v;
        return NULL;
    }
    if (!field)
        return TASKKIND_NOT_MINE;
    if (field == &t->method) {
        const char *const *m = methods;
        while (*m && strcasecmp(*m, value))
            m++;
        if (!*m)
            return "must be GET, POST, PUT, PATCH or DELETE";
        value = *m;
    }
    if (field == &t->url && strncmp(value, "http://", 7) && strncmp(value, "https://", 8))
        return "must be an http:// or https:// URL";
    free(*field);
    *field = strdup(value);
    return NULL;
}

/* The host part of a URL template: after "://", up to '/', '?', '#' or the end. */
static bool host_has_placeholder(const char *url)
{
    const char *h = strstr(url, "://") + 3;
    size_t n = strcspn(h, "/?#");

    return memchr(h, '{', n) != NULL;
}

static const char *http_finish(TaskType *t, const Conf *c)
{
    const char *why;

    (void)c;
    if (!t->url)
        return "url = http(s)://... is required";
    if (t->input != TYPE_INPUT_NONE)
        return "an http type takes no file: input = none";
    if ((why = tasktype_template_check(t, t->url, http_vars)) ||
        (t->body && (why = tasktype_template_check(t, t->body, http_vars))))
        return why;
    for (char **h = t->headers; h && *h; h++)
        if ((why = tasktype_template_check(t, *h, http_vars)))
            return why;
    if (host_has_placeholder(t->url) && !t->allow_hosts)
        return "a placeholder in the url's host needs allow_hosts";
    if (!t->method)
        t->method = strdup(t->body ? "POST" : "GET");
    if (!t->max_stdout_bytes)
        t->max_stdout_bytes = 1 << 20;
    return NULL;
}

static json_t *http_describe(const TaskType *t)
{
    return json_pack("{s:s}", "method", t->method);
}

const TaskKind kind_http = {
    .name = "http",
    .runner = "callback",
    .default_timeout = 30,
    .key = http_key,
    .finish = http_finish,
    .describe = http_describe,
};
