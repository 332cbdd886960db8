/* index.c - the task index (index.h): an SQLite cache of what the job folders say.
 *
 * One table, one row per task, keyed by id, with the few facts lists and counts need. The
 * queue writes it in WAL mode with synchronous=NORMAL: a commit costs no fsync, and a power
 * cut can lose the last commits but never leaves the file inconsistent - the rebuild at the
 * next start puts back whatever the folders say differently. Readers (rest, callback) open
 * it read-only; the WAL files are kept after the writer closes so a reader never has to
 * create them. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <systemd/sd-daemon.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "taskmill/claim.h"
#include "taskmill/files.h"
#include "taskmill/index.h"
#include "taskmill/log.h"

#define INDEX_VERSION       1    /* PRAGMA user_version: another value, and the writer rebuilds */
#define INDEX_REBUILD_CHUNK 5000 /* jobs read between two commits of a rebuild */

struct Index {
    sqlite3 *db;
    char path[4200];
    dev_t dev; /* of the file opened: a reader reopens when the writer replaced it */
    ino_t ino;
    sqlite3_stmt *put, *del; /* the writer's two statements, prepared once */
};

static const char schema[] =
    "DROP TABLE IF EXISTS tasks;"
    "CREATE TABLE tasks (id TEXT PRIMARY KEY NOT NULL, stage INTEGER NOT NULL, owner TEXT,"
    " created_ns INTEGER NOT NULL, context TEXT, batch TEXT, due_ns INTEGER NOT NULL,"
    " bytes INTEGER NOT NULL, finished_ns INTEGER NOT NULL, callback INTEGER NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE INDEX tasks_created ON tasks (created_ns, id);"
    "CREATE INDEX tasks_owner ON tasks (owner, created_ns, id);"
    "CREATE INDEX tasks_stage ON tasks (stage, created_ns, id);"
    "CREATE INDEX tasks_batch ON tasks (batch, created_ns, id) WHERE batch IS NOT NULL;"
    "CREATE INDEX tasks_context ON tasks (context, created_ns, id) WHERE context IS NOT NULL;"
    "CREATE INDEX tasks_owed ON tasks (callback) WHERE callback = 1;"
    "CREATE INDEX tasks_finished ON tasks (finished_ns) WHERE finished_ns > 0;";

/* Callback states of a row. */
enum { CALLBACK_NONE, CALLBACK_OWED, CALLBACK_SETTLED };

static int fail(Index *ix, const char *what)
{
    int rc = sqlite3_extended_errcode(ix->db);

    log_err("task index: %s: %s", what, sqlite3_errmsg(ix->db));
    if (rc == SQLITE_FULL)
        return -ENOSPC;
    if ((rc & 0xff) == SQLITE_CORRUPT || rc == SQLITE_NOTADB)
        return -EBADMSG;
    return -EIO;
}

static int exec(Index *ix, const char *sql)
{
    return sqlite3_exec(ix->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : fail(ix, sql);
}

void index_close(Index *ix)
{
    if (!ix)
        return;
    sqlite3_finalize(ix->put);
    sqlite3_finalize(ix->del);
    sqlite3_close(ix->db);
    free(ix);
}

static int writer_setup(Index *ix)
{
    sqlite3_stmt *st;
    int one = 1, version = -1, r;

    sqlite3_file_control(ix->db, "main", SQLITE_FCNTL_PERSIST_WAL, &one);
    if ((r = exec(ix, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")) < 0)
        return r;
    if (sqlite3_prepare_v2(ix->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return fail(ix, "user_version");
    if (sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version != INDEX_VERSION) {
        char sql[sizeof(schema) + 64];
        snprintf(sql, sizeof(sql), "BEGIN; %s PRAGMA user_version = %d; COMMIT;", schema,
                 INDEX_VERSION);
        if ((r = exec(ix, sql)) < 0)
            return r;
    }
    if (sqlite3_prepare_v3(ix->db,
                           "INSERT OR REPLACE INTO tasks VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
                           "?9, ?10)",
                           -1, SQLITE_PREPARE_PERSISTENT, &ix->put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(ix->db, "DELETE FROM tasks WHERE id = ?1", -1, SQLITE_PREPARE_PERSISTENT,
                           &ix->del, NULL) != SQLITE_OK)
        return fail(ix, "prepare");
    return 0;
}

static int open_at(const char *path, bool writer, Index **ret)
{
    int flags = (writer ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY) |
                SQLITE_OPEN_FULLMUTEX;
    Index *ix = calloc(1, sizeof(*ix));
    struct stat st;
    int r = 0;

    if (!ix)
        return -ENOMEM;
    snprintf(ix->path, sizeof(ix->path), "%s", path);
    if (sqlite3_open_v2(path, &ix->db, flags, NULL) != SQLITE_OK)
        r = ix->db ? fail(ix, path) : -ENOMEM;
    if (r == 0)
        sqlite3_busy_timeout(ix->db, 5000);
    if (r == 0 && writer)
        r = writer_setup(ix);
    if (r == 0 && stat(path, &st) == 0) {
        ix->dev = st.st_dev;
        ix->ino = st.st_ino;
    }
    if (r < 0) {
        index_close(ix);
        return r;
    }
    *ret = ix;
    return 0;
}

/* The database and its two WAL files, when the writer finds them unusable. */
static void remove_files(const char *path)
{
    static const char *const ext[] = {"", "-wal", "-shm"};
    char name[sizeof(((Index *)0)->path) + 8];

    for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
        snprintf(name, sizeof(name), "%s%s", path, ext[i]);
        unlink(name);
    }
}

int index_open(const char *root, bool writer, Index **ret)
{
    char dir[4096], path[4200];
    int r;

    snprintf(dir, sizeof(dir), "%s/data/index", root);
    snprintf(path, sizeof(path), "%s/tasks.db", dir);
    if (writer && mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    if (!writer && access(path, R_OK) < 0)
        return -errno;
    r = open_at(path, writer, ret);
    if (r == -EBADMSG && writer) { /* a cache: a damaged one is thrown away and rebuilt */
        log_warning("task index %s is damaged: rebuilding it", path);
        remove_files(path);
        r = open_at(path, writer, ret);
    }
    return r;
}

int index_keep_open(Index **ix, const char *root)
{
    struct stat st;

    if (*ix && stat((*ix)->path, &st) == 0 && st.st_dev == (*ix)->dev && st.st_ino == (*ix)->ino)
        return 0;
    if (*ix)
        log_info("task index %s was replaced: reopening it", (*ix)->path);
    index_close(*ix);
    *ix = NULL;
    return index_open(root, false, ix);
}

/* --- what a job folder says ------------------------------------------------------------------ */

typedef struct Facts {
    const char *owner, *context, *batch;
    int64_t created_ns, due_ns, finished_ns;
    uint64_t bytes;
    int callback;
} Facts;

static int64_t int_member(json_t *j, const char *key)
{
    return json_integer_value(json_object_get(j, key));
}

/* Bytes of the regular files in a job folder: input, output, partials. */
static uint64_t folder_bytes(int fd)
{
    int dup_fd = dup(fd);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    struct dirent *de;
    struct stat st;
    uint64_t n = 0;

    if (!d) {
        if (dup_fd >= 0)
            close(dup_fd);
        return 0;
    }
    while ((de = readdir(d)))
        if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            n += (uint64_t)st.st_size;
    closedir(d);
    return n;
}

static int callback_state(int fd, json_t *req)
{
    json_t *rec = NULL;
    int state = CALLBACK_NONE;

    if (!json_is_string(json_object_get(req, "callback_url")))
        return CALLBACK_NONE;
    state = CALLBACK_OWED;
    if (json_read_at(fd, "callback.json", &rec) == 0 &&
        (json_is_true(json_object_get(rec, "delivered")) ||
         json_is_true(json_object_get(rec, "gave_up"))))
        state = CALLBACK_SETTLED;
    json_decref(rec);
    return state;
}

static int64_t finished_ns(int fd, Stage s)
{
    json_t *j = NULL;
    int64_t ns = 0;

    if (s != STAGE_DONE && s != STAGE_FAILED)
        return 0;
    if (json_read_at(fd, s == STAGE_DONE ? "result.json" : "error.json", &j) == 0)
        ns = int_member(j, "finished_ns");
    json_decref(j);
    return ns;
}

/* The facts of one job; the strings point into *ret_req. Leniently read: a request.json that
 * task_load refuses (a job failed with bad_request_file) is still listed. */
static int facts_read(int fd, Stage s, json_t **ret_req, Facts *ret)
{
    JobClaim c = {0};
    json_t *req;
    int64_t run_at;
    int r = json_read_at(fd, "request.json", &req);

    if (r < 0)
        return r;
    if (!json_is_object(req)) {
        json_decref(req);
        return -EBADMSG;
    }
    claim_read(fd, &c);
    run_at = int_member(req, "run_at_ns");
    *ret = (Facts){.owner = json_string_value(json_object_get(req, "owner")),
                   .context = json_string_value(json_object_get(req, "context")),
                   .batch = json_string_value(json_object_get(req, "batch")),
                   .created_ns = int_member(req, "created_ns"),
                   .due_ns = run_at > c.next_attempt_ns ? run_at : c.next_attempt_ns,
                   .finished_ns = finished_ns(fd, s),
                   .bytes = folder_bytes(fd),
                   .callback = callback_state(fd, req)};
    *ret_req = req;
    return 0;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static int put(Index *ix, const char *id, Stage s, const Facts *f)
{
    sqlite3_stmt *st = ix->put;
    int rc;

    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)s);
    bind_text(st, 3, f->owner);
    sqlite3_bind_int64(st, 4, f->created_ns);
    bind_text(st, 5, f->context);
    bind_text(st, 6, f->batch);
    sqlite3_bind_int64(st, 7, f->due_ns);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)f->bytes);
    sqlite3_bind_int64(st, 9, f->finished_ns);
    sqlite3_bind_int(st, 10, f->callback);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : fail(ix, "insert");
}

int index_forget(Index *ix, const char *id)
{
    int rc;

    sqlite3_reset(ix->del);
    sqlite3_bind_text(ix->del, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(ix->del);
    sqlite3_reset(ix->del);
    return rc == SQLITE_DONE ? 0 : fail(ix, "delete");
}

int index_refresh(Index *ix, int data_fd, Stage s, const char *id)
{
    json_t *req = NULL;
    Facts f = {0};
    int fd, r = jobdir_open(data_fd, s, id, &fd);

    if (r == 0) {
        r = facts_read(fd, s, &req, &f);
        close(fd);
    }
    if (r < 0) /* no folder, or no request.json we can read: not listed */
        return index_forget(ix, id);
    r = put(ix, id, s, &f);
    json_decref(req);
    return r;
}

typedef struct Rows {
    IndexRow *v;
    size_t n, cap;
} Rows;

/* Steps st to the end, collecting (id, stage, created_ns) rows; finalizes st. */
static int collect(Index *ix, sqlite3_stmt *st, Rows *rows)
{
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *id = sqlite3_column_text(st, 0);
        if (rows->n == rows->cap) {
            size_t cap = rows->cap ? rows->cap * 2 : 64;
            IndexRow *v = realloc(rows->v, cap * sizeof(*v));
            if (!v) {
                sqlite3_finalize(st);
                return -ENOMEM;
            }
            rows->v = v;
            rows->cap = cap;
        }
        if (!id || !task_id_valid((const char *)id))
            continue;
        memcpy(rows->v[rows->n].id, id, TASK_ID_LEN + 1);
        rows->v[rows->n].stage = (Stage)sqlite3_column_int(st, 1);
        rows->v[rows->n].created_ns = sqlite3_column_int64(st, 2);
        rows->n++;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : fail(ix, "select");
}

/* --- the rebuild ----------------------------------------------------------------------------- */

typedef struct Rebuild {
    Index *ix;
    int data_fd;
    Stage stage;
    Rows known;          /* the rows before the rebuild, by id */
    unsigned char *seen; /* known.v[i] has a folder */
    unsigned read;
    IndexRebuilt got;
    int error;
} Rebuild;

/* A long rebuild (many jobs added behind the index's back: an upgrade, an admin's copy) is
 * committed in chunks, so a start that is killed halfway keeps what it read, and tells systemd
 * it is still starting (EXTEND_TIMEOUT_USEC; STATUS= for systemctl status). */
static void rebuild_chunk(Rebuild *rb)
{
    if (exec(rb->ix, "COMMIT") < 0 || exec(rb->ix, "BEGIN IMMEDIATE") < 0) {
        if (!rb->error)
            rb->error = -EIO;
        return;
    }
    sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%llu\nSTATUS=rebuilding the task index: %u jobs read",
               60000000ULL, rb->read);
    log_info("rebuilding the task index: %u jobs read", rb->read);
}

static int row_cmp(const void *a, const void *b)
{
    return strcmp(((const IndexRow *)a)->id, ((const IndexRow *)b)->id);
}

static int known_load(Rebuild *rb)
{
    sqlite3_stmt *st;
    int r;

    if (sqlite3_prepare_v2(rb->ix->db, "SELECT id, stage, created_ns FROM tasks", -1, &st, NULL) !=
        SQLITE_OK)
        return fail(rb->ix, "select");
    if ((r = collect(rb->ix, st, &rb->known)) < 0)
        return r;
    if (!(rb->seen = calloc(rb->known.n + 1, 1)))
        return -ENOMEM;
    if (rb->known.n) /* qsort and bsearch want an array, even of nothing */
        qsort(rb->known.v, rb->known.n, sizeof(*rb->known.v), row_cmp);
    return 0;
}

/* Unfinished jobs are always read again (few, and their due time can change without a move);
 * a finished one only when its row says another stage or is missing. */
static int rebuild_one(const char *id, void *userdata)
{
    Rebuild *rb = userdata;
    IndexRow key = {0}, *k;
    int r;

    rb->got.jobs[rb->stage]++;
    memcpy(key.id, id, sizeof(key.id));
    k = rb->known.n ? bsearch(&key, rb->known.v, rb->known.n, sizeof(*k), row_cmp) : NULL;
    if (k) {
        bool same = k->stage == rb->stage && !rb->seen[k - rb->known.v];
        rb->seen[k - rb->known.v] = 1;
        if (same && rb->stage >= STAGE_DONE)
            return 0;
    }
    r = index_refresh(rb->ix, rb->data_fd, rb->stage, id);
    if (r < 0 && !rb->error)
        rb->error = r;
    rb->got.changed += !k || k->stage != rb->stage;
    if (++rb->read % INDEX_REBUILD_CHUNK == 0)
        rebuild_chunk(rb);
    return 0;
}

int index_rebuild(Index *ix, int data_fd, IndexRebuilt *ret)
{
    Rebuild rb = {.ix = ix, .data_fd = data_fd};
    int r = exec(ix, "BEGIN IMMEDIATE");

    if (r == 0)
        r = known_load(&rb);
    for (rb.stage = STAGE_REQUEST; r == 0 && rb.stage <= STAGE_FAILED; rb.stage++)
        if ((r = jobdir_each(data_fd, rb.stage, rebuild_one, &rb)) == 0)
            r = rb.error;
    for (size_t i = 0; r == 0 && i < rb.known.n; i++)
        if (!rb.seen[i]) {
            r = index_forget(ix, rb.known.v[i].id);
            rb.got.changed++;
        }
    free(rb.known.v);
    free(rb.seen);
    if (r == 0)
        r = exec(ix, "COMMIT");
    if (r < 0)
        exec(ix, "ROLLBACK");
    *ret = rb.got;
    return r;
}

/* --- readers ------------------------------------------------------------------------------- */

int index_list(Index *ix, const IndexQuery *q, IndexRow **ret, size_t *ret_n)
{
    char sql[512] = "SELECT id, stage, created_ns FROM tasks WHERE (created_ns, id) ";
    sqlite3_stmt *st;
    Rows rows = {0};
    int r;

    strcat(sql, q->newest ? "< (?1, ?2)" : "> (?1, ?2)");
    if (q->owner)
        strcat(sql, " AND owner = ?3");
    if (q->stage != STAGE_INVALID)
        strcat(sql, " AND stage = ?4");
    if (q->context)
        strcat(sql, " AND context = ?5");
    if (q->batch)
        strcat(sql, " AND batch = ?6");
    if (q->timing)
        strcat(sql, q->timing == 2 ? " AND due_ns > ?7" : " AND due_ns <= ?7");
    strcat(sql, q->newest ? " ORDER BY created_ns DESC, id DESC LIMIT ?8"
                          : " ORDER BY created_ns, id LIMIT ?8");
    if (sqlite3_prepare_v2(ix->db, sql, -1, &st, NULL) != SQLITE_OK)
        return fail(ix, "list");
    sqlite3_bind_int64(st, 1, q->after_ns);
    sqlite3_bind_text(st, 2, q->after_id, -1, SQLITE_STATIC);
    if (q->owner)
        sqlite3_bind_text(st, 3, q->owner, -1, SQLITE_STATIC);
    if (q->stage != STAGE_INVALID)
        sqlite3_bind_int(st, 4, (int)q->stage);
    if (q->context)
        sqlite3_bind_text(st, 5, q->context, -1, SQLITE_STATIC);
    if (q->batch)
        sqlite3_bind_text(st, 6, q->batch, -1, SQLITE_STATIC);
    if (q->timing)
        sqlite3_bind_int64(st, 7, q->now_ns);
    sqlite3_bind_int64(st, 8, q->limit);
    r = collect(ix, st, &rows);
    if (r < 0) {
        free(rows.v);
        return r;
    }
    *ret = rows.v;
    *ret_n = rows.n;
    return 0;
}

int index_usage(Index *ix, const char *owner, unsigned *ret_unfinished, uint64_t *ret_bytes)
{
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(ix->db,
                           "SELECT TOTAL(stage <= ?2), TOTAL(bytes) FROM tasks WHERE owner = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(ix, "usage");
    sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, STAGE_IN_PROGRESS);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *ret_unfinished = (unsigned)sqlite3_column_double(st, 0);
        *ret_bytes = (uint64_t)sqlite3_column_double(st, 1);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : fail(ix, "usage");
}

/* Collects first, then calls fn: fn may have the writer change the rows. */
static int each(Index *ix, sqlite3_stmt *st, IndexEachFn fn, void *userdata)
{
    Rows rows = {0};
    int r = collect(ix, st, &rows);

    for (size_t i = 0; r == 0 && i < rows.n; i++)
        r = fn(&rows.v[i], userdata);
    free(rows.v);
    return r;
}

int index_each_owed(Index *ix, IndexEachFn fn, void *userdata)
{
    sqlite3_stmt *st;

    if (sqlite3_prepare_v2(ix->db,
                           "SELECT id, stage, created_ns FROM tasks WHERE callback = 1 AND "
                           "stage IN (?1, ?2)",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(ix, "owed");
    sqlite3_bind_int(st, 1, STAGE_DONE);
    sqlite3_bind_int(st, 2, STAGE_FAILED);
    return each(ix, st, fn, userdata);
}

int index_each_finished_before(Index *ix, int64_t before_ns, IndexEachFn fn, void *userdata)
{
    sqlite3_stmt *st;

    if (sqlite3_prepare_v2(ix->db,
                           "SELECT id, stage, created_ns FROM tasks WHERE finished_ns > 0 AND "
                           "finished_ns < ?1 AND stage IN (?2, ?3)",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(ix, "finished");
    sqlite3_bind_int64(st, 1, before_ns);
    sqlite3_bind_int(st, 2, STAGE_DONE);
    sqlite3_bind_int(st, 3, STAGE_FAILED);
    return each(ix, st, fn, userdata);
}
