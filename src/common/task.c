/* task.c - request.json, client-input checks and the API's task object.
 *
 * A task id is a canonical lower-case UUID and is checked before it touches the filesystem.
 * A file name is a plain name: no '/', '\\', "..", control characters, invalid UTF-8 or more
 * than 255 bytes. The task object is assembled from the files of the job directory only, so
 * any process (rest, callback, an admin's jq) sees the same facts. */
#define _GNU_SOURCE
#include "taskmill/task.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uuid/uuid.h>

bool task_id_valid(const char *s)
{
    static const char pattern[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

    if (!s || strlen(s) != TASK_ID_LEN)
        return false;
    for (int i = 0; i < TASK_ID_LEN; i++) {
        if (pattern[i] == '-') {
            if (s[i] != '-')
                return false;
        } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

void task_id_new(char ret[TASK_ID_LEN + 1])
{
    uuid_t u;

    uuid_generate_random(u);
    uuid_unparse_lower(u, ret);
}

/* Length of the UTF-8 sequence at p, or 0 when it is not valid (overlong, surrogate, > U+10FFFF).
 */
static int utf8_seq(const unsigned char *p)
{
    unsigned c = p[0], cp;
    int n;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

const char *task_file_name_problem(const char *name)
{
    const unsigned char *p = (const unsigned char *)name;
    size_t len;

    if (!name || !*name)
        return "file_name is empty";
    len = strlen(name);
    if (len > TASK_FILE_NAME_MAX)
        return "file_name is longer than 255 bytes";
    if (!strcmp(name, ".") || !strcmp(name, "..") || strstr(name, ".."))
        return "file_name must not contain '..'";
    while (*p) {
        int n = utf8_seq(p);
        if (n == 0)
            return "file_name is not valid UTF-8";
        if ((n == 1 && (*p < 0x20 || *p == 0x7f)) || (n == 2 && p[0] == 0xc2 && p[1] < 0xa0))
            return "file_name contains a control character"; /* C0, DEL and C1 */
        if (*p == '/' || *p == '\\')
            return "file_name must be a plain name without '/' or '\\'";
        p += n;
    }
    return NULL;
}

void utf8_clip(char *s)
{
    unsigned char *p = (unsigned char *)s;

    while (*p) {
        int n = utf8_seq(p);
        if (n == 0) {
            *p = '\0';
            return;
        }
        for (int i = 1; i < n; i++)
            if (!p[i]) { /* a sequence cut by the terminator */
                *p = '\0';
                return;
            }
        p += n;
    }
}

int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void format_time(int64_t ns, char *buf, size_t len)
{
    time_t sec = (time_t)(ns / 1000000000);
    struct tm tm;
    char base[32];

    gmtime_r(&sec, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%06dZ", base, (int)(ns % 1000000000 / 1000));
}

static json_t *time_json(int64_t ns)
{
    char buf[40];

    if (ns <= 0)
        return json_null();
    format_time(ns, buf, sizeof(buf));
    return json_string(buf);
}

void task_free(Task *t)
{
    free(t->task_type);
    free(t->file_name);
    free(t->file_path);
    free(t->input_name);
    free(t->callback_url);
    free(t->idempotency_key);
    free(t->owner);
    json_decref(t->params);
    *t = (Task){0};
}

int task_to_request_json(const Task *t, json_t **ret)
{
    json_t *j = json_pack(
        "{s:i, s:s, s:s, s:s, s:s, s:s, s:I, s:i, s:I, s:o, s:O, s:s*, s:s*, s:s*}", "version",
        TASK_REQUEST_VERSION, "id", t->id, "task_type", t->task_type, "file_name", t->file_name,
        "file_path", t->file_path ? t->file_path : "", "input_name", t->input_name, "size",
        (json_int_t)t->size, "priority", t->priority, "created_ns", (json_int_t)t->created_ns,
        "created_at", time_json(t->created_ns), "params", t->params, "callback_url",
        t->callback_url, "idempotency_key", t->idempotency_key, "owner", t->owner);
    if (!j)
        return -ENOMEM;
    *ret = j;
    return 0;
}

int task_from_request_json(json_t *j, Task *ret, char *err, size_t errlen)
{
    json_error_t e;
    json_int_t priority;
    const char *id, *type, *name, *path, *input, *cb = NULL, *key = NULL, *owner = NULL;
    json_int_t size, created;
    json_t *params;
    Task t = {0};

    json_int_t v = 0;

    if (json_unpack_ex(j, &e, 0, "{s:I}", "version", &v) < 0 || v != TASK_REQUEST_VERSION) {
        snprintf(err, errlen, "request.json: unsupported version %lld", (long long)v);
        return -EBADMSG;
    }
    if (json_unpack_ex(j, &e, 0, "{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:o, s?s, s?s, s?s}",
                       "id", &id, "task_type", &type, "file_name", &name, "file_path", &path,
                       "input_name", &input, "size", &size, "priority", &priority, "created_ns",
                       &created, "params", &params, "callback_url", &cb, "idempotency_key", &key,
                       "owner", &owner) < 0) {
        snprintf(err, errlen, "request.json: %s", e.text);
        return -EBADMSG;
    }
    if (!task_id_valid(id) || task_file_name_problem(name) || task_file_name_problem(input)) {
        snprintf(err, errlen, "request.json: invalid id or file name");
        return -EBADMSG;
    }
    if (priority < TASK_PRIORITY_MIN || priority > TASK_PRIORITY_MAX || size < 0 || created < 0) {
        snprintf(err, errlen, "request.json: priority, size or created_ns out of range");
        return -EBADMSG;
    }
    memcpy(t.id, id, sizeof(t.id));
    t.task_type = strdup(type);
    t.file_name = strdup(name);
    t.file_path = strdup(path);
    t.input_name = strdup(input);
    t.callback_url = cb ? strdup(cb) : NULL;
    t.idempotency_key = key ? strdup(key) : NULL;
    t.owner = owner ? strdup(owner) : NULL;
    t.size = (uint64_t)size;
    t.priority = (int)priority;
    t.created_ns = created;
    t.params = json_incref(params);
    *ret = t;
    return 0;
}

int json_read_at(int dir_fd, const char *name, json_t **ret)
{
    char *buf;
    size_t len;
    json_t *j;
    int r = file_read_all(dir_fd, name, 1 << 20, &buf, &len);

    if (r < 0)
        return r;
    j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    free(buf);
    if (!json_is_object(j)) {
        json_decref(j);
        return -EBADMSG;
    }
    *ret = j;
    return 0;
}

int json_write_at(int dir_fd, const char *name, json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    int r;

    if (!s)
        return -ENOMEM;
    r = file_write_atomic(dir_fd, name, s, strlen(s));
    free(s);
    return r;
}

int task_load(int job_fd, Task *ret, char *err, size_t errlen)
{
    json_t *j;
    int r = json_read_at(job_fd, "request.json", &j);

    if (r < 0) {
        snprintf(err, errlen, "request.json: %s", strerror(-r));
        return r;
    }
    r = task_from_request_json(j, ret, err, errlen);
    json_decref(j);
    return r;
}

int task_save(int job_fd, const Task *t)
{
    json_t *j;
    int r = task_to_request_json(t, &j);

    if (r < 0)
        return r;
    r = json_write_at(job_fd, "request.json", j);
    json_decref(j);
    return r;
}
