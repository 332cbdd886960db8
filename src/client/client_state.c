/* client_state.c - the sync client's record of files and tasks, <state_dir>/state.json, and the
 * lock that keeps two runs apart.
 *
 * The file is rewritten whole on every change that matters: a temporary file in the same
 * folder, fsync, rename over state.json, fsync of the folder (maildir's rule: at the rename it is
 * delivered). A crash at any instant leaves the old or the new file, never a mix. The decoder is
 * strict: a state file we cannot read stops the run rather than risk sending files twice.
 * Called by client_sync.c and client_entry.c; nothing here prints. */
#define _GNU_SOURCE
#include "client_sync.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
#include "taskmill/files.h"
#include "taskmill/clock.h"

#define STATE_FILE    "state.json"
#define STATE_TMP     ".tmp." STATE_FILE /* file_write_atomic() writes there */
#define STATE_VERSION 1

static const char *const status_names[SYNC_STATUS_MAX] = {
    "sending", "submitted", "fetched", "failed", "gave_up", "skipped",
};

const char *state_status_name(SyncStatus s)
{
    return s < SYNC_STATUS_MAX ? status_names[s] : "?";
}

static int status_parse(const char *name, SyncStatus *ret)
{
    for (int i = 0; i < SYNC_STATUS_MAX; i++)
        if (!strcmp(name, status_names[i])) {
            *ret = (SyncStatus)i;
            return 0;
        }
    return -EINVAL;
}

int64_t state_mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* ---- the folder and the lock ---- */

int state_open(SyncState *s, const char *dir, bool create)
{
    *s = (SyncState){.dir_fd = -1, .lock_fd = -1, .index = json_object()};
    s->dir = strdup(dir);
    if (!s->dir || !s->index)
        return -ENOMEM;
    if (create && mkdir(dir, 0700) < 0 && errno != EEXIST)
        return -errno;
    s->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return s->dir_fd < 0 ? -errno : 0;
}

/* The temporary file of a run killed while it wrote state.json (file_write_atomic's name);
 * only the lock holder may remove it. */
static int state_clean(SyncState *s)
{
    return unlinkat(s->dir_fd, STATE_TMP, 0) < 0 && errno != ENOENT ? -errno : 0;
}

int state_lock(SyncState *s)
{
    int fd = openat(s->dir_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int r = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;

        close(fd);
        return r;
    }
    s->lock_fd = fd; /* held until the process ends: a killed run frees it at once */
    return state_clean(s);
}

static void entry_free(SyncEntry *e)
{
    if (!e)
        return;
    free(e->path);
    free(e->error_code);
    free(e->error_message);
    free(e->result_path);
    free(e);
}

void state_close(SyncState *s)
{
    for (size_t i = 0; i < s->n; i++)
        entry_free(s->files[i]);
    free(s->files);
    json_decref(s->index);
    if (s->dir_fd >= 0)
        close(s->dir_fd);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s->dir);
    *s = (SyncState){.dir_fd = -1, .lock_fd = -1};
}

/* ---- entries ---- */

SyncEntry *state_find(const SyncState *s, const char *path)
{
    json_t *i = json_object_get(s->index, path);

    return i ? s->files[json_integer_value(i)] : NULL;
}

/* Takes e (freed on failure). */
static int state_append(SyncState *s, SyncEntry *e)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        SyncEntry **f = realloc(s->files, cap * sizeof(*f));

        if (!f) {
            entry_free(e);
            return -ENOMEM;
        }
        s->files = f;
        s->cap = cap;
    }
    if (json_object_set_new(s->index, e->path, json_integer((json_int_t)s->n)) < 0) {
        entry_free(e);
        return -ENOMEM;
    }
    s->files[s->n++] = e;
    return 0;
}

int state_add(SyncState *s, const char *path, SyncEntry **ret)
{
    SyncEntry *e = calloc(1, sizeof(*e));
    int r;

    if (!e || !(e->path = strdup(path))) {
        free(e);
        return -ENOMEM;
    }
    r = state_append(s, e);
    if (r == 0)
        *ret = e;
    return r;
}

static int str_replace(char **field, const char *v)
{
    char *copy = v ? strdup(v) : NULL;

    if (v && !copy)
        return -ENOMEM;
    free(*field);
    *field = copy;
    return 0;
}

void state_entry_touch(SyncEntry *e)
{
    format_time(now_ns(), e->updated_at, sizeof(e->updated_at));
}

void state_entry_reset(SyncEntry *e, const struct stat *st)
{
    e->size = (uint64_t)st->st_size;
    e->mtime_ns = state_mtime_ns(st);
    e->key[0] = e->task_id[0] = e->result_sha256[0] = '\0';
    e->attempts = 0;
    e->result_size = 0;
    e->task_deleted = false;
    str_replace(&e->error_code, NULL);
    str_replace(&e->error_message, NULL);
    str_replace(&e->result_path, NULL);
    state_entry_touch(e);
}

int state_entry_set_error(SyncEntry *e, const char *code, const char *message)
{
    int r = str_replace(&e->error_code, code);

    return r < 0 ? r : str_replace(&e->error_message, message);
}

int state_entry_set_result(SyncEntry *e, const char *path, const char *sha256, uint64_t size)
{
    int r = str_replace(&e->result_path, path);

    if (r < 0)
        return r;
    snprintf(e->result_sha256, sizeof(e->result_sha256), "%s", sha256 ? sha256 : "");
    e->result_size = size;
    return 0;
}

/* ---- the idempotency key ---- */

int state_key(const char *path, uint64_t size, int64_t mtime_ns, int attempt,
              char ret[SYNC_KEY_MAX + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    char *text = NULL;
    int n = asprintf(&text, "%s\n%llu\n%lld", path, (unsigned long long)size, (long long)mtime_ns);

    if (n < 0)
        return -ENOMEM;
    if (!EVP_Digest(text, (size_t)n, md, &len, EVP_sha256(), NULL) || len != 32) {
        free(text);
        return -EIO;
    }
    free(text);
    for (unsigned int i = 0; i < len; i++)
        snprintf(ret + 2 * i, 3, "%02x", md[i]);
    if (attempt > 1)
        snprintf(ret + 2 * len, SYNC_KEY_MAX + 1 - 2 * len, "-%d", attempt);
    return 0;
}

/* ---- encoding ---- */

static json_t *jstr_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

static json_t *entry_error_json(const SyncEntry *e)
{
    if (!e->error_code)
        return json_null();
    return json_pack("{s:s, s:s}", "code", e->error_code, "message",
                     e->error_message ? e->error_message : "");
}

static json_t *entry_to_json(const SyncEntry *e)
{
    return json_pack(
        "{s:s, s:I, s:I, s:s, s:o, s:s, s:i, s:o, s:o, s:o, s:I, s:b, s:s}", "path", e->path,
        "size", (json_int_t)e->size, "mtime_ns", (json_int_t)e->mtime_ns, "key", e->key, "task_id",
        jstr_or_null(e->task_id), "status", state_status_name(e->status), "attempts", e->attempts,
        "error", entry_error_json(e), "result_path", jstr_or_null(e->result_path), "result_sha256",
        jstr_or_null(e->result_sha256), "result_size", (json_int_t)e->result_size, "task_deleted",
        e->task_deleted, "updated_at", e->updated_at);
}

static json_t *state_to_json(const SyncState *s)
{
    json_t *files = json_array(), *e;

    for (size_t i = 0; files && i < s->n; i++) {
        e = entry_to_json(s->files[i]);
        if (!e || json_array_append_new(files, e) < 0) {
            json_decref(files);
            return NULL;
        }
    }
    return files ? json_pack("{s:i, s:o}", "version", STATE_VERSION, "files", files) : NULL;
}

int state_save(SyncState *s)
{
    json_t *j = state_to_json(s);
    char *text = j ? json_dumps(j, JSON_INDENT(1)) : NULL;
    int r = text ? file_write_atomic(s->dir_fd, STATE_FILE, text, strlen(text)) : -ENOMEM;

    free(text);
    json_decref(j);
    return r;
}

/* ---- decoding ---- */

static int copy_str(char *dst, size_t len, json_t *v)
{
    const char *s = json_is_null(v) ? "" : json_string_value(v);

    if (!s || strlen(s) >= len)
        return -EINVAL;
    snprintf(dst, len, "%s", s);
    return 0;
}

static int entry_error_from_json(SyncEntry *e, json_t *err)
{
    const char *code, *msg;

    if (json_is_null(err))
        return 0;
    if (json_unpack(err, "{s:s, s:s !}", "code", &code, "message", &msg) < 0)
        return -EINVAL;
    return state_entry_set_error(e, code, msg);
}

static int entry_fields(SyncEntry *e, json_t *task, json_t *err, json_t *rpath, json_t *rsha,
                        const char *key, const char *updated)
{
    const char *p = json_string_value(rpath);

    if ((!p && !json_is_null(rpath)) || copy_str(e->task_id, sizeof(e->task_id), task) < 0 ||
        copy_str(e->result_sha256, sizeof(e->result_sha256), rsha) < 0 ||
        strlen(key) > SYNC_KEY_MAX || strlen(updated) >= sizeof(e->updated_at) ||
        (*e->task_id && !task_id_valid(e->task_id)))
        return -EINVAL;
    snprintf(e->key, sizeof(e->key), "%s", key);
    snprintf(e->updated_at, sizeof(e->updated_at), "%s", updated);
    if (entry_error_from_json(e, err) < 0 || str_replace(&e->result_path, p) < 0)
        return -EINVAL;
    return 0;
}

static int entry_from_json(json_t *j, SyncEntry **ret)
{
    json_t *task, *err, *rpath, *rsha;
    const char *path, *key, *status, *updated;
    json_int_t size = 0, mtime = 0, rsize = 0;
    int attempts = 0, deleted = 0, r;
    SyncEntry *e = calloc(1, sizeof(*e));

    if (!e)
        return -ENOMEM;
    r = json_unpack(j, "{s:s, s:I, s:I, s:s, s:o, s:s, s:i, s:o, s:o, s:o, s:I, s:b, s:s !}",
                    "path", &path, "size", &size, "mtime_ns", &mtime, "key", &key, "task_id", &task,
                    "status", &status, "attempts", &attempts, "error", &err, "result_path", &rpath,
                    "result_sha256", &rsha, "result_size", &rsize, "task_deleted", &deleted,
                    "updated_at", &updated) < 0
            ? -EINVAL
            : 0;
    if (r == 0 && (size < 0 || rsize < 0 || attempts < 0 || *path != '/' ||
                   status_parse(status, &e->status) < 0 || !(e->path = strdup(path)) ||
                   entry_fields(e, task, err, rpath, rsha, key, updated) < 0))
        r = -EINVAL;
    e->size = (uint64_t)size;
    e->mtime_ns = mtime;
    e->attempts = attempts;
    e->result_size = (uint64_t)rsize;
    e->task_deleted = deleted;
    if (r < 0)
        entry_free(e);
    else
        *ret = e;
    return r;
}

static int state_from_json(SyncState *s, json_t *j, char *err, size_t errlen)
{
    json_t *files, *f;
    int version;
    size_t i;

    if (json_unpack(j, "{s:i, s:o !}", "version", &version, "files", &files) < 0 ||
        version != STATE_VERSION || !json_is_array(files)) {
        snprintf(err, errlen, "not a version %d state file", STATE_VERSION);
        return -EBADMSG;
    }
    json_array_foreach(files, i, f)
    {
        SyncEntry *e = NULL;

        if (entry_from_json(f, &e) < 0 || state_find(s, e->path)) {
            snprintf(err, errlen, "entry %zu is not valid%s", i, e ? " (a repeated path)" : "");
            entry_free(e);
            return -EBADMSG;
        }
        if (state_append(s, e) < 0)
            return -ENOMEM;
    }
    return 0;
}

int state_load(SyncState *s, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j;
    int fd = s->dir_fd < 0 ? -1 : openat(s->dir_fd, STATE_FILE, O_RDONLY | O_CLOEXEC), r;

    if (fd < 0 && (s->dir_fd < 0 || errno == ENOENT))
        return 0; /* the first run */
    if (fd < 0) {
        r = -errno;
        snprintf(err, errlen, "%s", strerror(errno));
        return r;
    }
    j = json_loadfd(fd, JSON_REJECT_DUPLICATES, &je);
    close(fd);
    if (!j) {
        snprintf(err, errlen, "line %d: %s", je.line, je.text);
        return -EBADMSG;
    }
    r = state_from_json(s, j, err, errlen);
    json_decref(j);
    return r;
}
