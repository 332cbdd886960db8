/* client_sync.c - `taskmill sync`: one run of the folder scanner, and `taskmill status` without
 * an id (the table of this client's tasks).
 *
 * A run takes the lock in the state folder (a second run exits at once), reads state.json, walks
 * the folders once, then makes passes: delete finished tasks not yet deleted, POST again what
 * was being sent when a run died (same key), resubmit failed tasks that have attempts left (new
 * key), submit the new files, and look once at every submitted task, fetching what is done.
 * Without --wait that is one pass (the timer comes back); with --wait passes repeat every 2 s
 * until nothing is in flight. Events are lines on stderr (the journal under systemd), or
 * progress bars when stderr is a terminal. Exit 0 when the run did its work, 1 when the server
 * could not be reached or something local failed (the state is intact either way). */
#define _GNU_SOURCE
#include "client_sync.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "taskmill/log.h"
#include "taskmill/clock.h"
#include "taskmill/text.h"

#define WAIT_POLL_SECONDS 2

typedef struct Candidate {
    char *path;
    const char *folder;
    struct stat st;
} Candidate;

typedef struct Scan {
    Sync *s;
    Candidate *v;
    size_t n, cap;
    size_t next;      /* the first candidate not yet submitted */
    json_t *reserved; /* paths that are (or will be) our results -> their size, or -1 */
    bool dirty;       /* skip records to save */
} Scan;

/* ---- events ---- */

void sync_event(Sync *s, int prio, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!s->o->tty) {
        log_task(prio, NULL, "%s", msg);
        return;
    }
    if (prio > s->conf->log_level)
        return;
    fprintf(stderr, "%s%s\n", s->progress ? "\r\033[K" : "", msg);
    s->progress = false;
}

void sync_crash_point(const char *point)
{
    const char *want = getenv("TASKMILL_SYNC_TEST_CRASH");

    if (want && !strcmp(want, point))
        raise(SIGKILL); /* as if killed -9 right here */
}

const char *sync_folder_of(const Sync *s, const char *path)
{
    const char *best = NULL;

    for (size_t i = 0; i < s->n_folders; i++) {
        size_t n = strlen(s->folders[i]);

        if (n == 1)
            n = 0; /* "/" */
        if (!strncmp(path, s->folders[i], n) && path[n] == '/' && (!best || n > strlen(best)))
            best = s->folders[i];
    }
    return best;
}

int sync_save(Sync *s)
{
    int r;

    if (s->o->dry_run)
        return 0;
    r = state_save(&s->state);
    if (r < 0)
        sync_event(s, LOG_ERR, "cannot write %s/state.json: %s", s->state.dir, strerror(-r));
    return r;
}

/* ---- start ---- */

static int folders_resolve(Sync *s)
{
    const Conf *c = s->conf;

    s->folders = calloc(c->n_client_folders + 1, sizeof(*s->folders));
    if (!s->folders)
        return -ENOMEM;
    for (size_t i = 0; i < c->n_client_folders; i++) {
        char *real = realpath(c->client_folders[i], NULL);

        if (!real) {
            sync_event(s, LOG_ERR, "folder %s: %s", c->client_folders[i], strerror(errno));
            s->env_errors++;
            continue;
        }
        s->folders[s->n_folders++] = real;
    }
    return 0;
}

static int place_setup(Sync *s)
{
    Conf c = *s->conf;
    size_t n;

    if (c.client_output_dir) {
        s->output_dir = strdup(c.client_output_dir);
        if (!s->output_dir)
            return -ENOMEM;
        for (n = strlen(s->output_dir); n > 1 && s->output_dir[n - 1] == '/'; n--)
            s->output_dir[n - 1] = '\0';
        c.client_output_dir = s->output_dir;
    }
    if (place_init(&s->place, &c) < 0) {
        sync_event(s, LOG_ERR, "[client] output = %s: %s", s->conf->client_output,
                   s->place.mode == PLACE_MIRROR ? "needs an absolute output_dir"
                                                 : "needs a suffix without '/'");
        return -EINVAL;
    }
    return 0; /* place_init took output_dir from c, i.e. s->output_dir */
}

static int state_setup(Sync *s)
{
    const char *dir = s->conf->client_state_dir;
    char err[512];
    int r = state_open(&s->state, dir, !s->o->dry_run);

    if (r == -ENOENT && s->o->dry_run)
        return 0; /* a dry run creates nothing: an empty state */
    if (r == 0 && !s->o->dry_run && (r = state_lock(&s->state)) == -EWOULDBLOCK) {
        fprintf(stderr, "taskmill sync: another run is in progress (lock %s/lock); exiting\n", dir);
        return r;
    }
    if (r < 0) {
        sync_event(s, LOG_ERR, "state folder %s: %s", dir, strerror(-r));
        return r;
    }
    r = state_load(&s->state, err, sizeof(err));
    if (r < 0)
        sync_event(s, LOG_ERR, "%s/state.json: %s; fix or move it away (nothing was sent)", dir,
                   err);
    return r;
}

static int sync_setup(Sync *s)
{
    int r;

    if (s->conf->n_client_folders == 0) {
        sync_event(s, LOG_ERR, "no [client] folder configured%s%s", s->conf->path ? " in " : "",
                   s->conf->path ? s->conf->path : "");
        return -EINVAL;
    }
    if (!s->conf->client_state_dir || s->conf->client_state_dir[0] != '/') {
        sync_event(s, LOG_ERR, "[client] state_dir must be an absolute path");
        return -EINVAL;
    }
    r = place_setup(s);
    if (r == 0)
        r = state_setup(s);
    if (r == 0)
        r = folders_resolve(s);
    return r;
}

static void sync_free(Sync *s)
{
    for (size_t i = 0; i < s->n_folders; i++)
        free(s->folders[i]);
    free(s->folders);
    free(s->output_dir);
    state_close(&s->state);
}

/* ---- the scan ---- */

static bool in_flight(const SyncEntry *e)
{
    return e->status == SYNC_SENDING || e->status == SYNC_SUBMITTED || e->status == SYNC_FAILED;
}

/* Being sent, or the server has it: a change of the file waits until it is back. */
static bool with_server(const SyncEntry *e)
{
    return e->status == SYNC_SENDING || e->status == SYNC_SUBMITTED;
}

static bool entry_changed(const SyncEntry *e, const struct stat *st)
{
    return e->size != (uint64_t)st->st_size || e->mtime_ns != state_mtime_ns(st);
}

static bool same_file_state(const struct stat *a, const struct stat *b)
{
    return a->st_size == b->st_size && state_mtime_ns(a) == state_mtime_ns(b);
}

/* dest is (or will be) the result of owner; size is the result's, -1 while unknown. */
static int reserve(Scan *sc, const char *dest, json_int_t size, const char *owner)
{
    json_t *v = json_pack("{s:I, s:s}", "size", size, "owner", owner);

    return v && json_object_set_new(sc->reserved, dest, v) == 0 ? 0 : -ENOMEM;
}

/* Our results, and where the results of files in flight will go, are never sources. */
static int reserved_build(Scan *sc)
{
    const SyncState *st = &sc->s->state;
    int r = 0;

    sc->reserved = json_object();
    for (size_t i = 0; sc->reserved && r == 0 && i < st->n; i++) {
        const SyncEntry *e = st->files[i];
        const char *folder = sync_folder_of(sc->s, e->path);
        char *dest = NULL;

        if (e->result_path && e->status == SYNC_FETCHED)
            r = reserve(sc, e->result_path, (json_int_t)e->result_size, e->path);
        if (r == 0 && in_flight(e) && folder &&
            place_dest(&sc->s->place, folder, e->path, place_result_ext(e->path), &dest) == 0 &&
            strcmp(dest, e->path))
            r = reserve(sc, dest, -1, e->path);
        free(dest);
    }
    return sc->reserved && r == 0 ? 0 : -ENOMEM;
}

static bool reserved(const Scan *sc, const char *path, const struct stat *st)
{
    json_int_t size =
        json_integer_value(json_object_get(json_object_get(sc->reserved, path), "size"));

    return json_object_get(sc->reserved, path) && (size < 0 || size == st->st_size);
}

static int record_skip(Scan *sc, const char *path, const struct stat *st, const char *code,
                       const char *msg)
{
    Sync *s = sc->s;
    SyncEntry *e = state_find(&s->state, path);
    int r = 0;

    sync_event(s, LOG_INFO, "%sskipped %s: %s", s->o->dry_run ? "would have " : "", path, msg);
    if (s->o->dry_run)
        return 0;
    if (!e)
        r = state_add(&s->state, path, &e);
    if (r < 0)
        return r;
    state_entry_reset(e, st);
    e->status = SYNC_SKIPPED;
    sc->dirty = true;
    return state_entry_set_error(e, code, msg);
}

static int candidate_add(Scan *sc, const char *folder, const char *path, const struct stat *st)
{
    if (sc->n == sc->cap) {
        size_t cap = sc->cap ? 2 * sc->cap : 16;
        Candidate *v = realloc(sc->v, cap * sizeof(*v));

        if (!v)
            return -ENOMEM;
        sc->v = v;
        sc->cap = cap;
    }
    sc->v[sc->n] = (Candidate){.path = strdup(path), .folder = folder, .st = *st};
    return sc->v[sc->n++].path ? 0 : -ENOMEM;
}

/* Two sources with one result (movie.mp4 and movie.mov beside each other): the first one found
 * is sent, the other waits until a human renames one of them. 1 when dest is taken. */
static int dest_claim(Scan *sc, const char *path, const char *dest)
{
    const char *owner =
        json_string_value(json_object_get(json_object_get(sc->reserved, dest), "owner"));

    if (!strcmp(dest, path))
        return 0; /* replace, same name: the result takes the source's place */
    if (owner && strcmp(owner, path)) {
        sync_event(sc->s, LOG_WARNING,
                   "left %s: its result %s would also be the result of %s; rename one of them",
                   path, dest, owner);
        return 1;
    }
    return reserve(sc, dest, -1, path);
}

/* 1 when the result is there already; a stale result of this very file (it changed since) does
 * not count: it is replaced by the new one. */
static int already_converted(Scan *sc, const SyncEntry *e, const char *folder, const char *path,
                             char **ret_dest)
{
    int r = place_dest(&sc->s->place, folder, path, place_result_ext(path), ret_dest);

    if (r < 0)
        return r;
    if (e && e->result_path && !strcmp(e->result_path, *ret_dest))
        return 0;
    return strcmp(*ret_dest, path) && access(*ret_dest, F_OK) == 0;
}

/* A file we have not sent (or that changed since): skip it, or make it a candidate. */
static int consider_new(Scan *sc, const SyncEntry *e, const char *folder, const char *path,
                        const struct stat *st)
{
    char *dest = NULL, msg[PATH_MAX + 32];
    struct stat again;
    bool hevc = false;
    int r = already_converted(sc, e, folder, path, &dest);

    if (r > 0) {
        snprintf(msg, sizeof(msg), "already converted (%s exists)", dest);
        r = record_skip(sc, path, st, "already_converted", msg);
    } else if (r == 0 && scan_probe_hevc(path, &hevc) == 0 && hevc) {
        r = record_skip(sc, path, st, "already_hevc", "already hevc");
    } else if (r == 0 && (lstat(path, &again) < 0 || !same_file_state(&again, st))) {
        sync_event(sc->s, LOG_INFO, "left %s for the next run: it is being written", path);
    } else if (r == 0 && (r = dest_claim(sc, path, dest)) == 0) {
        r = candidate_add(sc, folder, path, st);
    }
    free(dest);
    return r < 0 ? r : 0;
}

static bool settling(Scan *sc, const char *path, const struct stat *st)
{
    int64_t age = now_ns() - state_mtime_ns(st), settle = sc->s->conf->client_settle;

    if (age >= settle * 1000000000)
        return false;
    sync_event(sc->s, LOG_INFO, "left %s for the next run: changed %llds ago (settle_seconds %lld)",
               path, (long long)(age > 0 ? age / 1000000000 : 0), (long long)settle);
    return true;
}

static int scan_file(void *userdata, const char *folder, const char *path, const struct stat *st)
{
    Scan *sc = userdata;
    SyncEntry *e = state_find(&sc->s->state, path);

    if (!utf8_valid(path)) {
        sync_event(sc->s, LOG_NOTICE, "skipped a file in %s: its name is not UTF-8", folder);
        return 0;
    }
    if (reserved(sc, path, st) || (e && (!entry_changed(e, st) || with_server(e))))
        return 0; /* ours, or known: the passes deal with it */
    if (settling(sc, path, st))
        return 0;
    return consider_new(sc, e, folder, path, st);
}

static void scan_error(void *userdata, const char *path, int err)
{
    Scan *sc = userdata;

    sync_event(sc->s, LOG_WARNING, "cannot read %s: %s", path, strerror(err));
}

static void scan_rules(const Sync *s, ScanRules *r)
{
    const char *skip[] = {s->conf->client_state_dir, s->output_dir};
    struct stat st;

    *r = (ScanRules){.include = s->conf->client_include,
                     .exclude = s->conf->client_exclude,
                     .suffix = s->place.mode == PLACE_REPLACE ? NULL : s->place.suffix};
    for (size_t i = 0; i < 2; i++)
        if (skip[i] && stat(skip[i], &st) == 0) {
            r->skip_dev[r->n_skip] = st.st_dev;
            r->skip_ino[r->n_skip++] = st.st_ino;
        }
}

static int sync_scan(Sync *s, Scan *sc)
{
    ScanVisitor v = {.file = scan_file, .error = scan_error, .userdata = sc};
    ScanRules rules;
    int r = reserved_build(sc);

    scan_rules(s, &rules);
    for (size_t i = 0; r == 0 && i < s->n_folders; i++) {
        r = scan_folder(s->folders[i], &rules, &v);
        if (r < 0 && r != -ENOMEM) {
            sync_event(s, LOG_ERR, "folder %s: %s", s->folders[i], strerror(-r));
            s->env_errors++;
            r = 0;
        }
    }
    if (r == 0 && sc->dirty)
        r = sync_save(s);
    return r;
}

static void scan_free(Scan *sc)
{
    for (size_t i = 0; i < sc->n; i++)
        free(sc->v[i].path);
    free(sc->v);
    json_decref(sc->reserved);
}

/* ---- the passes ---- */

/* Starts attempt n of e, whose file is st: a fresh key, recorded before the POST. */
/* A partial download of an earlier task is not a prefix of the next task's result. */
static void partial_drop(Sync *s, const SyncEntry *e)
{
    const char *folder = sync_folder_of(s, e->path);
    char *dest = NULL, *partial = NULL;

    if (folder && place_dest(&s->place, folder, e->path, place_result_ext(e->path), &dest) == 0 &&
        asprintf(&partial, "%s.partial", dest) >= 0 && unlink(partial) == 0)
        sync_event(s, LOG_INFO, "removed %s, left by an earlier task", partial);
    free(partial);
    free(dest);
}

static int attempt_start(Sync *s, SyncEntry *e, int attempt)
{
    int r = state_key(e->path, e->size, e->mtime_ns, attempt, e->key);

    if (r < 0)
        return r;
    partial_drop(s, e);
    e->attempts = attempt;
    e->status = SYNC_SENDING;
    e->task_id[0] = '\0';
    e->task_deleted = false;
    state_entry_touch(e);
    r = sync_save(s);
    return r < 0 ? r : entry_send(s, e);
}

static int submit_candidate(Sync *s, const Candidate *c)
{
    SyncEntry *e = state_find(&s->state, c->path);
    struct stat st;
    int r = 0;

    if (s->o->dry_run) {
        sync_event(s, LOG_INFO, "would submit %s", c->path);
        return 0;
    }
    if (lstat(c->path, &st) < 0 || !same_file_state(&st, &c->st)) {
        sync_event(s, LOG_INFO, "left %s for the next run: it changed since the scan", c->path);
        return 0;
    }
    if (!e)
        r = state_add(&s->state, c->path, &e);
    if (r < 0)
        return r;
    state_entry_reset(e, &c->st);
    return attempt_start(s, e, 1);
}

/* The source of an entry about to be sent again: 0 when it is still the file we recorded. */
static int source_check(Sync *s, SyncEntry *e)
{
    struct stat st;

    if (lstat(e->path, &st) == 0 && S_ISREG(st.st_mode))
        return entry_changed(e, &st) ? -ESTALE : 0;
    if (!s->o->dry_run) {
        e->attempts = s->conf->client_max_resubmits + 1;
        entry_record_failure(s, e, "source_missing", "the file is gone");
        sync_save(s);
    }
    return -ENOENT;
}

static int pass_entry(Sync *s, SyncEntry *e, int step)
{
    if (step == 0 && *e->task_id && !e->task_deleted &&
        (e->status == SYNC_FETCHED || e->status == SYNC_FAILED || e->status == SYNC_GAVE_UP))
        return entry_delete(s, e); /* a DELETE that did not get through last time */
    if (step == 1 && e->status == SYNC_SENDING && !s->throttled && source_check(s, e) != -ENOENT)
        return entry_send(s, e); /* the same key: the server answers with its task, if any */
    if (step == 2 && entry_retry_due(s, e) && !s->throttled && source_check(s, e) == 0) {
        if (!s->o->dry_run)
            return attempt_start(s, e, e->attempts + 1);
        sync_event(s, LOG_INFO, "would resubmit %s (attempt %d)", e->path, e->attempts + 1);
    }
    if (step == 3 && e->status == SYNC_SUBMITTED)
        return entry_poll(s, e);
    return 0;
}

static int pass_step(Sync *s, int step)
{
    int r = 0;

    for (size_t i = 0; r == 0 && i < s->state.n; i++)
        r = pass_entry(s, s->state.files[i], step);
    return r;
}

static int sync_pass(Sync *s, Scan *sc)
{
    int r = 0;

    s->throttled = false;
    for (int step = 0; r == 0 && step < 3; step++)
        r = pass_step(s, step);
    for (; r == 0 && !s->throttled && sc->next < sc->n; sc->next++)
        r = submit_candidate(s, &sc->v[sc->next]);
    s->in_flight = 0;
    if (r == 0)
        r = pass_step(s, 3);
    if (s->progress)
        fputs("\r\033[K", stderr);
    s->progress = false;
    return r;
}

/* Something is still to be done by the server, or by the next pass. */
static bool sync_busy(const Sync *s, const Scan *sc)
{
    if (sc->next < sc->n)
        return true;
    for (size_t i = 0; i < s->state.n; i++) {
        const SyncEntry *e = s->state.files[i];

        struct stat st;

        if (e->status == SYNC_SENDING || e->status == SYNC_SUBMITTED)
            return true;
        if (entry_retry_due(s, e) && lstat(e->path, &st) == 0 && !entry_changed(e, &st))
            return true; /* a changed file waits for the next run's scan */
    }
    return false;
}

static int sync_loop(Sync *s, Scan *sc)
{
    int errors = s->env_errors, r = sync_pass(s, sc);

    /* A local failure (a folder we cannot write) would repeat every pass: leave it to a run. */
    while (r == 0 && s->o->wait && !s->o->dry_run && sync_busy(s, sc) && s->env_errors == errors) {
        sleep(WAIT_POLL_SECONDS);
        r = sync_pass(s, sc);
    }
    return r;
}

static void sync_summary(Sync *s)
{
    int prio = s->n_submitted + s->n_fetched + s->n_failed + s->in_flight ? LOG_INFO : LOG_DEBUG;

    sync_event(s, prio, "run %s: %d submitted, %d fetched, %d failed, %d still on the server",
               s->o->dry_run ? "(dry) done" : "done", s->n_submitted, s->n_fetched, s->n_failed,
               s->in_flight);
}

int sync_run(const SyncOptions *o)
{
    Sync s = {.o = o, .conf = o->conf, .state = {.dir_fd = -1, .lock_fd = -1}};
    Scan sc = {.s = &s};
    int r;

    log_open("taskmill");
    log_set_max_level(o->conf->log_level);
    r = sync_setup(&s);
    if (r == 0)
        r = sync_scan(&s, &sc);
    if (r == 0)
        r = sync_loop(&s, &sc);
    if (r == 0)
        sync_summary(&s);
    entry_batch_close(&s);
    scan_free(&sc);
    sync_free(&s);
    if (r == -EWOULDBLOCK)
        return CLIENT_EXIT_OK;
    return r < 0 || s.env_errors ? CLIENT_EXIT_FAIL : CLIENT_EXIT_OK;
}

/* ---- status ---- */

static void status_row(const SyncOptions *o, const SyncEntry *e)
{
    char url[512], pct[16] = "-";
    long status = 0;
    json_t *t = NULL;

    if (e->status == SYNC_SUBMITTED) {
        snprintf(url, sizeof(url), "%s/v1/tasks/%s", o->server, e->task_id);
        if (api_get_json(o->http, url, &status, &t) == 0 && status == 200)
            snprintf(pct, sizeof(pct), "%.1f%%",
                     json_number_value(json_object_get(json_object_get(t, "progress"), "percent")));
        json_decref(t);
    }
    printf("%-9s  %-36s  %7s  %s", state_status_name(e->status), *e->task_id ? e->task_id : "-",
           pct, e->path);
    if (e->error_code && e->status != SYNC_FETCHED)
        printf("  (%s: %s)", e->error_code, e->error_message ? e->error_message : "");
    putchar('\n');
}

static int status_json(const SyncState *st)
{
    char path[PATH_MAX];
    json_t *j;

    snprintf(path, sizeof(path), "%s/state.json", st->dir);
    j = json_load_file(path, 0, NULL);
    if (!j)
        return -EBADMSG;
    json_dumpf(j, stdout, JSON_INDENT(2));
    putchar('\n');
    json_decref(j);
    return 0;
}

int sync_status_table(const SyncOptions *o, bool *ret_shown)
{
    SyncState st;
    char err[512];
    int r = state_open(&st, o->conf->client_state_dir, false);

    *ret_shown = false;
    if (r == 0 && faccessat(st.dir_fd, "state.json", F_OK, 0) < 0)
        r = -ENOENT;
    if (r == 0 && (r = state_load(&st, err, sizeof(err))) < 0)
        fprintf(stderr, "taskmill: %s/state.json: %s\n", st.dir, err);
    if (r == 0) {
        *ret_shown = true;
        if (o->json)
            r = status_json(&st);
        else
            printf("%-9s  %-36s  %7s  %s\n", "STATUS", "TASK", "PERCENT", "PATH");
        for (size_t i = 0; !o->json && i < st.n; i++)
            status_row(o, st.files[i]);
    }
    state_close(&st);
    return r == -ENOENT ? CLIENT_EXIT_OK : r < 0 ? CLIENT_EXIT_FAIL : CLIENT_EXIT_OK;
}

/* TASKMILL_SYNC_TEST_THROTTLE=BYTES: slows every transfer to BYTES per second, so that tests
 * can kill a run in the middle of an upload or a download. Not for production use. */
static void sync_test_throttle(Client *cl)
{
    const char *v = getenv("TASKMILL_SYNC_TEST_THROTTLE");

    if (v && *v)
        api_set_throttle(cl->api, strtoull(v, NULL, 10));
}

int sync_main(Client *cl, const Args *a)
{
    SyncOptions o = sync_options(cl, a);

    sync_test_throttle(cl);
    return sync_run(&o);
}
