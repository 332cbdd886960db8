/* client_sync.h - `taskmill sync`, the folder scanner, and `taskmill status` without an id.
 *
 * client_state.c keeps the record of every file and task (state.json, written atomically) and
 * the run lock; client_scan.c walks the folders and probes for HEVC; client_place.c decides
 * where a result goes and puts it there; client_entry.c talks to the server about one file;
 * client_sync.c runs the whole thing. Only client.c calls sync_run() and sync_status_table();
 * the rest is shared between these files. Library-style: errors are -errno; only client_sync.c
 * and client_entry.c print, through sync_event(). */
#ifndef TASKMILL_CLIENT_SYNC_H
#define TASKMILL_CLIENT_SYNC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "client.h"
#include "taskmill/conf.h"
#include "taskmill/task.h"

/* What client.c hands to the sync command. */
typedef struct SyncOptions {
    const Conf *conf;
    Api *http;
    const char *server; /* base URL without a trailing '/' */
    bool tty;           /* stderr is a terminal: progress bars instead of log lines */
    bool dry_run;       /* say what would be done; write nothing, POST and DELETE nothing */
    bool wait;          /* keep polling every 2 s until nothing is in flight */
    bool json;          /* status: print the state file's JSON */
} SyncOptions;

/* Runs `taskmill sync`; returns the exit status (CLIENT_EXIT_*). */
int sync_run(const SyncOptions *o);
/* The options of a sync or status run from the client's command line (client_wait.c). */
SyncOptions sync_options(const Client *cl, const Args *a);
/* `taskmill status` without an id: the table of this client's tasks. *ret_shown is false (and
 * nothing printed) when there is no state file, so the caller can show the server's counts. */
int sync_status_table(const SyncOptions *o, bool *ret_shown);

/* ---- client_state.c: state.json and the lock ---- */

#define SYNC_KEY_MAX 80 /* sha256 hex, '-', an attempt number */

typedef enum SyncStatus {
    SYNC_SENDING,   /* key recorded, POST not yet answered: re-POST with the same key */
    SYNC_SUBMITTED, /* the server has task_id */
    SYNC_FETCHED,   /* the result is in place (result_path) */
    SYNC_FAILED,    /* the task failed; sent again with a new key while attempts allow */
    SYNC_GAVE_UP,   /* failed for good (or refused by the server); not sent again */
    SYNC_SKIPPED,   /* never sent: already HEVC, or already converted */
    SYNC_STATUS_MAX
} SyncStatus;

typedef struct SyncEntry {
    char *path;       /* the source, absolute */
    uint64_t size;    /* of the source when it was sent (or skipped) */
    int64_t mtime_ns; /* likewise */
    char key[SYNC_KEY_MAX + 1];
    char task_id[TASK_ID_LEN + 1]; /* "" when the server has no task for it */
    SyncStatus status;
    int attempts;                     /* submissions so far */
    char *error_code, *error_message; /* the last failure, or NULL */
    char *result_path;                /* where the result went, or NULL */
    char result_sha256[SHA256_HEX_LEN + 1];
    uint64_t result_size;
    bool task_deleted; /* task_id has been deleted on the server */
    char updated_at[40];
} SyncEntry;

typedef struct SyncState {
    char *dir;
    int dir_fd;  /* -1 when the directory does not exist (dry run) */
    int lock_fd; /* -1 until locked */
    SyncEntry **files;
    size_t n, cap;
    json_t *index; /* path -> position in files */
} SyncState;

const char *state_status_name(SyncStatus s);
/* Opens dir, creating it with mode 0700 when create is set; -ENOENT when it is missing. */
int state_open(SyncState *s, const char *dir, bool create);
/* Takes <dir>/lock without waiting: -EWOULDBLOCK when another run holds it. */
int state_lock(SyncState *s);
/* Reads state.json (none yet is an empty state). -EBADMSG with err filled when it is unusable. */
int state_load(SyncState *s, char *err, size_t errlen);
/* Writes state.json atomically: a temporary file, fsync, rename, fsync of the directory. */
int state_save(SyncState *s);
void state_close(SyncState *s);
SyncEntry *state_find(const SyncState *s, const char *path);
int state_add(SyncState *s, const char *path, SyncEntry **ret);
/* Makes e a new file of size and mtime: attempts 0, no task, no error, no result. */
void state_entry_reset(SyncEntry *e, const struct stat *st);
int state_entry_set_error(SyncEntry *e, const char *code, const char *message);
int state_entry_set_result(SyncEntry *e, const char *path, const char *sha256, uint64_t size);
void state_entry_touch(SyncEntry *e);
int64_t state_mtime_ns(const struct stat *st);
/* The idempotency key of attempt n: sha256 hex of "<path>\n<size>\n<mtime ns>", and "-n"
 * after it from the second attempt on. */
int state_key(const char *path, uint64_t size, int64_t mtime_ns, int attempt,
              char ret[SYNC_KEY_MAX + 1]);

/* ---- client_scan.c: the folder walk and the HEVC probe ---- */

typedef struct ScanVisitor {
    /* A regular file whose name passed the patterns; a negative return stops the walk. */
    int (*file)(void *userdata, const char *folder, const char *path, const struct stat *st);
    /* A folder or file that could not be read; the walk goes on. */
    void (*error)(void *userdata, const char *path, int err);
    void *userdata;
} ScanVisitor;

typedef struct ScanRules {
    const char *include, *exclude; /* space-separated fnmatch patterns, case-insensitive */
    const char *suffix;            /* names whose stem ends with it are our results */
    dev_t skip_dev[2];             /* folders never entered: the state dir, the output dir */
    ino_t skip_ino[2];
    size_t n_skip;
} ScanRules;

/* Walks folder (absolute, resolved) recursively without following symbolic links; hidden
 * names, *.partial files, our results and excluded names are left out. */
int scan_folder(const char *folder, const ScanRules *rules, const ScanVisitor *v);
bool scan_patterns_match(const char *patterns, const char *name);
/* *ret_hevc: the first video stream is HEVC. -errno when libavformat cannot read the file. */
int scan_probe_hevc(const char *path, bool *ret_hevc);

/* ---- client_place.c: where results go ---- */

typedef enum PlaceMode { PLACE_BESIDE, PLACE_MIRROR, PLACE_REPLACE } PlaceMode;

typedef struct Place {
    PlaceMode mode;
    const char *output_dir; /* mirror */
    const char *suffix;     /* beside, mirror */
} Place;

/* -EINVAL: mirror without an absolute output_dir, beside without a suffix, a suffix with '/'. */
int place_init(Place *p, const Conf *c);
/* ".mp4" for mp4/mov/m4v sources, else ".mkv": the extension the server will give. */
const char *place_result_ext(const char *source);
/* The result's path for source (found under folder) when the result has extension ext. */
int place_dest(const Place *p, const char *folder, const char *source, const char *ext, char **ret);
/* Creates the folders dest needs (mirror), mode 0755. */
int place_prepare(const char *dest);
/* After the result was renamed to dest: fsyncs its folder and, for replace with a new
 * extension, removes the source (and fsyncs again). */
int place_commit(const Place *p, const char *source, const char *dest);

/* ---- client_sync.c and client_entry.c: the run ---- */

typedef struct Sync {
    const SyncOptions *o;
    const Conf *conf;
    Place place;
    SyncState state;
    char **folders; /* the configured folders, resolved */
    size_t n_folders;
    int env_errors;                       /* local failures that make the exit status 1 */
    int in_flight;                        /* tasks the server is still working on, after a pass */
    int n_submitted, n_fetched, n_failed; /* this run's events, for its last line */
    char *output_dir;                     /* [client] output_dir without trailing '/' */
    bool progress;                        /* a progress line is on the screen */
    bool throttled; /* the server said 429 in this pass: send nothing more until the next */
    char batch[TASK_ID_LEN + 1]; /* this run's batch, "" until the first upload made it */
    bool batch_tried;            /* a batch was asked for (the server may not make one) */
} Sync;

void sync_event(Sync *s, int prio, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* TASKMILL_SYNC_TEST_CRASH=point: kill ourselves there (tests only). */
void sync_crash_point(const char *point);
const char *sync_folder_of(const Sync *s, const char *path);
int sync_save(Sync *s);

/* Each returns -errno when the server cannot be reached (the run stops), else 0. */
int entry_send(Sync *s, SyncEntry *e);
int entry_poll(Sync *s, SyncEntry *e);
int entry_delete(Sync *s, SyncEntry *e);
/* This run's batch: made before its first upload, closed at the end of the run, so the server
 * tells (GET /v1/batches/ID, its callback) when every file of the run has been converted. A
 * server that makes no batch is used without. */
void entry_batch_open(Sync *s);
void entry_batch_close(Sync *s);
/* Records a failed attempt: status failed while resubmissions are left, else gave_up. */
void entry_record_failure(Sync *s, SyncEntry *e, const char *code, const char *message);
bool entry_retry_due(const Sync *s, const SyncEntry *e);

#endif
