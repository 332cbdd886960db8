/* client_entry.c - what the sync client says to the server about one file: POST it (with
 * its idempotency key), look at its task, fetch and place the result, delete the task.
 *
 * The order of writes is the whole point. The key is in state.json before the POST, so a crash
 * after it is healed by POSTing the same key again; the result is renamed into place and the
 * entry saved as fetched before the DELETE, which frees the key on the server. Every function
 * returns -errno only when the server could not be reached (or answered 5xx): the run then stops
 * with the state intact. A refusal or a failed task is recorded in the entry instead. */
#define _GNU_SOURCE
#include "client_sync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "taskmill/log.h"
#include "taskmill/tasktype.h"

/* A string member, or "" (never NULL). */
static const char *str_of(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s ? s : "";
}

static const char *base_name(const char *path)
{
    return strrchr(path, '/') + 1; /* our paths are absolute */
}

static char *task_url(const Sync *s, const char *id, const char *suffix)
{
    char *url = NULL;

    if (asprintf(&url, "%s/v1/tasks%s%s%s", s->o->server, id ? "/" : "", id ? id : "", suffix) < 0)
        return NULL;
    return url;
}

/* "code: message" of an error answer; a stand-in when the body is not one. */
static void answer_error(long status, json_t *body, char *code, size_t codelen, char *msg,
                         size_t msglen)
{
    json_t *e = json_object_get(body, "error");
    const char *c = json_string_value(json_object_get(e, "code"));
    const char *m = json_string_value(json_object_get(e, "message"));

    snprintf(code, codelen, "%s", c ? c : "http_error");
    if (m)
        snprintf(msg, msglen, "%s", m);
    else
        snprintf(msg, msglen, "the server answered %ld", status);
}

static int transport_error(Sync *s, const char *method, const char *url)
{
    sync_event(s, LOG_ERR, "%s %s: %s", method, url, api_strerror(s->o->http));
    return -EHOSTUNREACH;
}

static int server_error(Sync *s, const char *what, long status, json_t *body)
{
    char code[64], msg[512];

    answer_error(status, body, code, sizeof(code), msg, sizeof(msg));
    sync_event(s, LOG_ERR, "%s: the server answered %ld: %s: %s", what, status, code, msg);
    return -EREMOTEIO;
}

bool entry_retry_due(const Sync *s, const SyncEntry *e)
{
    return e->status == SYNC_FAILED && e->attempts <= s->conf->client_max_resubmits &&
           (!*e->task_id || e->task_deleted);
}

void entry_record_failure(Sync *s, SyncEntry *e, const char *code, const char *message)
{
    int left = s->conf->client_max_resubmits + 1 - e->attempts;

    state_entry_set_error(e, code, message);
    e->status = left > 0 ? SYNC_FAILED : SYNC_GAVE_UP;
    state_entry_touch(e);
    s->n_failed++;
    if (left > 0)
        sync_event(s, LOG_WARNING, "failed %s: %s: %s (attempt %d; %d resubmission%s left)",
                   e->path, code, message, e->attempts, left, left == 1 ? "" : "s");
    else
        sync_event(s, LOG_WARNING, "gave up %s after %d attempt%s: %s: %s", e->path, e->attempts,
                   e->attempts == 1 ? "" : "s", code, message);
}

/* ---- POST ---- */

static int form_params(const Conf *c, char **ret)
{
    json_t *p = json_object();
    int r = p ? 0 : -ENOMEM;

    *ret = NULL;
    if (r == 0 && c->client_crf >= 0)
        r = json_object_set_new(p, "crf", json_integer(c->client_crf));
    if (r == 0 && c->client_preset)
        r = json_object_set_new(p, "preset", json_string(c->client_preset));
    if (r == 0 && json_object_size(p) > 0 && !(*ret = json_dumps(p, JSON_COMPACT)))
        r = -ENOMEM;
    json_decref(p);
    return r < 0 ? -ENOMEM : 0;
}

/* A name the server refuses (not a plain name) is sent as "video<ext>": only the extension of
 * the result matters here, the name of the destination comes from the source. */
static const char *form_file_name(const char *path, char *buf, size_t len)
{
    const char *name = base_name(path), *dot = strrchr(name, '.');

    if (!task_file_name_problem(name))
        return name;
    snprintf(buf, len, "video%s", dot && !task_file_name_problem(dot + 1) ? dot : ".mkv");
    return buf;
}

static int post_answer_ok(Sync *s, SyncEntry *e, long status, json_t *task)
{
    const char *id = str_of(task, "id");

    if (!task_id_valid(id))
        return server_error(s, "POST /v1/tasks", status, task);
    snprintf(e->task_id, sizeof(e->task_id), "%s", id);
    e->status = SYNC_SUBMITTED;
    e->task_deleted = false;
    state_entry_touch(e);
    s->n_submitted++;
    sync_event(s, LOG_INFO, "submitted %s task=%s%s", e->path, id,
               status == 200 ? " (the server already had it)" : "");
    return sync_save(s);
}

static int post_answer(Sync *s, SyncEntry *e, long status, json_t *task)
{
    char code[64], msg[512];

    if (status == 200 || status == 201)
        return post_answer_ok(s, e, status, task);
    if (status >= 500 || status == 401 || status == 403) /* the server, or our token */
        return server_error(s, "POST /v1/tasks", status, task);
    answer_error(status, task, code, sizeof(code), msg, sizeof(msg));
    if (status == 409 || status == 429) { /* the key is still being uploaded by a killed run, */
        s->throttled = status == 429;     /* or we have too many tasks: try again later */
        sync_event(s, LOG_NOTICE, "waiting to submit %s: %s: %s", e->path, code, msg);
        return 0;
    }
    e->attempts = s->conf->client_max_resubmits + 1; /* a refusal repeats: do not resubmit */
    entry_record_failure(s, e, code, msg);
    return sync_save(s);
}

static int post(Sync *s, SyncEntry *e, const ApiTaskForm *form)
{
    char *url = task_url(s, NULL, "");
    long status = 0;
    json_t *task = NULL;
    int r;

    if (!url)
        return -ENOMEM;
    api_set_progress_name(s->o->http, base_name(e->path));
    r = api_post_task(s->o->http, url, form, &status, &task);
    api_set_progress_name(s->o->http, NULL);
    sync_crash_point("after_post");
    r = r < 0 ? transport_error(s, "POST", url) : post_answer(s, e, status, task);
    json_decref(task);
    free(url);
    return r;
}

int entry_send(Sync *s, SyncEntry *e)
{
    char name[64], *dir = strndup(e->path, (size_t)(strrchr(e->path, '/') - e->path));
    char *params = NULL;
    ApiTaskForm form = {
        .idempotency_key = e->key,
        .task_type = TASKTYPE_X265,
        .path = e->path,
        .file_name = form_file_name(e->path, name, sizeof(name)),
        .file_path = dir && *dir ? dir : "/",
        .priority = s->conf->client_priority,
    };
    int r = dir ? form_params(s->conf, &params) : -ENOMEM;

    if (r == 0 && !s->o->dry_run)
        entry_batch_open(s);
    form.params = params;
    form.batch = s->batch[0] ? s->batch : NULL;
    if (r == 0 && s->o->dry_run)
        sync_event(s, LOG_INFO, "would submit %s (key %.16s…)", e->path, e->key);
    else if (r == 0)
        r = post(s, e, &form);
    free(params);
    free(dir);
    return r;
}

/* ---- the run's batch ---- */

void entry_batch_open(Sync *s)
{
    char *url = NULL, host[64] = "?", context[128];
    long status = 0;
    json_t *req, *b = NULL;
    char *body;

    if (s->batch_tried)
        return;
    s->batch_tried = true;
    gethostname(host, sizeof(host) - 1);
    snprintf(context, sizeof(context), "taskmill sync from %.60s", host);
    req = json_pack("{s:s}", "context", context);
    body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (body && asprintf(&url, "%s/v1/batches", s->o->server) >= 0 &&
        api_post_json(s->o->http, url, body, &status, &b) == 0 && status == 201 &&
        task_id_valid(json_string_value(json_object_get(b, "id"))))
        snprintf(s->batch, sizeof(s->batch), "%s", json_string_value(json_object_get(b, "id")));
    if (s->batch[0])
        sync_event(s, LOG_INFO, "this run's uploads go in batch %s", s->batch);
    else
        sync_event(s, LOG_NOTICE, "the server made no batch for this run (%ld): uploading without",
                   status);
    json_decref(b);
    free(body);
    free(url);
}

void entry_batch_close(Sync *s)
{
    char *url = NULL;
    long status = 0;
    json_t *b = NULL;

    if (!s->batch[0] || asprintf(&url, "%s/v1/batches/%s/close", s->o->server, s->batch) < 0)
        return;
    if (api_post_json(s->o->http, url, NULL, &status, &b) < 0 || status != 200)
        sync_event(s, LOG_WARNING, "cannot close batch %s (%ld)", s->batch, status);
    json_decref(b);
    free(url);
}

/* ---- DELETE ---- */

int entry_delete(Sync *s, SyncEntry *e)
{
    char *url = task_url(s, e->task_id, "");
    long status = 0;
    json_t *body = NULL;
    int r;

    if (!url)
        return -ENOMEM;
    if (s->o->dry_run) {
        sync_event(s, LOG_INFO, "would delete task %s (%s)", e->task_id, e->path);
        free(url);
        return 0;
    }
    r = api_delete(s->o->http, url, &status, &body);
    if (r < 0)
        r = transport_error(s, "DELETE", url);
    else if (status != 204 && status != 404)
        r = server_error(s, "DELETE", status, body);
    json_decref(body);
    free(url);
    if (r < 0)
        return r;
    e->task_deleted = true;
    state_entry_touch(e);
    sync_event(s, LOG_INFO, "deleted task %s (%s)", e->task_id, e->path);
    return sync_save(s);
}

/* ---- fetching the result ---- */

typedef struct Result {
    const char *name, *sha256;
    uint64_t size;
} Result;

static int result_info(json_t *task, Result *ret)
{
    json_t *res = json_object_get(task, "result"), *size = json_object_get(res, "size");
    const char *sha = str_of(res, "sha256"), *name = str_of(res, "file_name");

    if (task_file_name_problem(name) || !strrchr(name, '.') || !json_is_integer(size) ||
        json_integer_value(size) < 0 || strlen(sha) != SHA256_HEX_LEN ||
        strspn(sha, "0123456789abcdefABCDEF") != SHA256_HEX_LEN)
        return -EBADMSG;
    *ret = (Result){.name = name, .sha256 = sha, .size = (uint64_t)json_integer_value(size)};
    return 0;
}

static void resume_note(Sync *s, SyncEntry *e, const char *dest)
{
    char *partial = NULL;
    struct stat st;

    if (asprintf(&partial, "%s.partial", dest) < 0)
        return;
    if (stat(partial, &st) == 0 && st.st_size > 0)
        sync_event(s, LOG_INFO, "resuming %s -> %s at %lld bytes", e->path, dest,
                   (long long)st.st_size);
    free(partial);
}

/* Records the result in place; the task is then deleted, which frees its key. */
static int fetched(Sync *s, SyncEntry *e, const char *dest, const Result *res)
{
    int r = place_commit(&s->place, e->path, dest);

    if (r < 0) {
        sync_event(s, LOG_ERR, "fetched %s -> %s, but cannot finish: %s", e->path, dest,
                   strerror(-r));
        s->env_errors++;
        return 0;
    }
    sync_crash_point("after_fetch");
    if (state_entry_set_result(e, dest, res->sha256, res->size) < 0)
        return -ENOMEM;
    state_entry_set_error(e, NULL, NULL);
    e->status = SYNC_FETCHED;
    state_entry_touch(e);
    s->n_fetched++;
    sync_event(s, LOG_INFO, "fetched %s -> %s (sha256 ok)", e->path, dest);
    r = sync_save(s);
    return r < 0 ? r : entry_delete(s, e);
}

/* api_fetch_file's answer: 0 and the result in place, 1 when it was not (recorded or left for
 * later), -errno to stop the run. */
static int fetch_outcome(Sync *s, SyncEntry *e, const char *url, int r, long status, json_t *j)
{
    char code[64], msg[512];

    if (r == -EBADMSG) {
        entry_record_failure(s, e, "bad_download", api_strerror(s->o->http));
        return sync_save(s) < 0 ? -EIO : 1;
    }
    if (r == -EHOSTUNREACH || r == -ECONNREFUSED || r == -ETIMEDOUT || r == -EIO)
        return transport_error(s, "GET", url); /* the partial stays for a Range next time */
    if (r < 0) {
        sync_event(s, LOG_ERR, "cannot fetch %s: %s", e->path, api_strerror(s->o->http));
        s->env_errors++;
        return 1;
    }
    if (status == 200 || status == 206)
        return 0;
    if (status >= 500)
        return server_error(s, "GET result", status, j);
    answer_error(status, j, code, sizeof(code), msg, sizeof(msg));
    if (status == 404) {
        e->task_deleted = true;
        entry_record_failure(s, e, code, msg);
        return sync_save(s) < 0 ? -EIO : 1;
    }
    sync_event(s, LOG_NOTICE, "cannot fetch %s yet: %s: %s", e->path, code, msg);
    return 1;
}

static int fetch_into(Sync *s, SyncEntry *e, const char *dest, const Result *res)
{
    char *url = task_url(s, e->task_id, "/result");
    long status = 0;
    json_t *j = NULL;
    int r = url ? place_prepare(dest) : -ENOMEM;

    if (r < 0) {
        sync_event(s, LOG_ERR, "cannot fetch %s -> %s: %s", e->path, dest, strerror(-r));
        s->env_errors++;
        free(url);
        return r == -ENOMEM ? r : 0;
    }
    resume_note(s, e, dest);
    api_set_progress_name(s->o->http, base_name(dest));
    r = api_fetch_file(s->o->http, url, dest, res->size, res->sha256, &status, &j);
    api_set_progress_name(s->o->http, NULL);
    r = fetch_outcome(s, e, url, r, status, j);
    json_decref(j);
    free(url);
    if (r == 0)
        return fetched(s, e, dest, res);
    if (r < 0 || e->status == SYNC_SUBMITTED || e->task_deleted)
        return r < 0 ? r : 0;  /* stop the run, or try again later, or the task is gone */
    return entry_delete(s, e); /* a bad download: this task's result is no use */
}

static int fetch(Sync *s, SyncEntry *e, json_t *task)
{
    const char *folder = sync_folder_of(s, e->path), *ext = place_result_ext(e->path);
    char *dest = NULL;
    Result res;
    int r;

    /* The extension comes from the source, never from the server: a hostile server (or a man
     * in the middle on plain HTTP) naming "x.srt" must not make replace overwrite a sibling. */
    if (result_info(task, &res) < 0 || strcasecmp(strrchr(res.name, '.'), ext)) {
        entry_record_failure(s, e, "bad_answer",
                             "the task's result object is not usable, or names another extension "
                             "than this source's result");
        r = sync_save(s);
        return r < 0 ? r : entry_delete(s, e);
    }
    r = place_dest(&s->place, folder ? folder : "/", e->path, ext, &dest);
    if (r < 0) {
        sync_event(s, LOG_ERR, "%s: no place for its result: %s", e->path, strerror(-r));
        s->env_errors++;
        return 0;
    }
    if (s->o->dry_run)
        sync_event(s, LOG_INFO, "would fetch %s -> %s and delete task %s", e->path, dest,
                   e->task_id);
    else
        r = fetch_into(s, e, dest, &res);
    free(dest);
    return r;
}

/* ---- polling ---- */

static void poll_show(Sync *s, SyncEntry *e, json_t *task)
{
    double pct = json_number_value(json_object_get(json_object_get(task, "progress"), "percent"));

    s->in_flight++;
    if (!s->o->tty)
        return;
    api_progress_draw(!strcmp(str_of(task, "state"), "in_progress") ? "converting"
                                                                    : str_of(task, "state"),
                      base_name(e->path), (int)(pct * 10));
    s->progress = true;
}

static int poll_failed(Sync *s, SyncEntry *e, json_t *task)
{
    json_t *err = json_object_get(task, "error");
    int r;

    if (s->o->dry_run) {
        sync_event(s, LOG_INFO, "would record %s as failed (%s: %s) and delete task %s", e->path,
                   str_of(err, "code"), str_of(err, "message"), e->task_id);
        return 0;
    }
    entry_record_failure(s, e, *str_of(err, "code") ? str_of(err, "code") : "failed",
                         str_of(err, "message"));
    r = sync_save(s);
    return r < 0 ? r : entry_delete(s, e);
}

static int poll_gone(Sync *s, SyncEntry *e, long status, json_t *body)
{
    char code[64], msg[512];

    answer_error(status, body, code, sizeof(code), msg, sizeof(msg));
    if (s->o->dry_run) {
        sync_event(s, LOG_INFO, "task %s of %s is gone: %s", e->task_id, e->path, msg);
        return 0;
    }
    e->task_deleted = true;
    entry_record_failure(s, e, code, msg);
    return sync_save(s);
}

int entry_poll(Sync *s, SyncEntry *e)
{
    char *url = task_url(s, e->task_id, "");
    long status = 0;
    json_t *task = NULL;
    int r;

    if (!url)
        return -ENOMEM;
    r = api_get_json(s->o->http, url, &status, &task);
    if (r < 0)
        r = transport_error(s, "GET", url);
    else if (status == 404)
        r = poll_gone(s, e, status, task);
    else if (status != 200 || !json_is_object(task))
        r = server_error(s, "GET task", status, task);
    else if (!strcmp(str_of(task, "state"), "done"))
        r = fetch(s, e, task);
    else if (!strcmp(str_of(task, "state"), "failed"))
        r = poll_failed(s, e, task);
    else
        poll_show(s, e, task);
    json_decref(task);
    free(url);
    return r;
}
