/* index.h - the task index: which task is in which stage, whose it is, since when.
 *
 * ROOT/data/index/tasks.db, an SQLite database in WAL mode. It is a cache of the folders, never
 * the truth: the queue, the only writer, brings it in line with the folders at every start
 * (index_rebuild reads only the jobs whose stage differs) and after every move it makes; rest
 * and the callback daemon open it read-only so that lists, per-token counts and the callback
 * daemon's start-up never read every request.json. Deleting the folder costs one rebuild. */
#ifndef TASKMILL_INDEX_H
#define TASKMILL_INDEX_H

#include <stdbool.h>
#include <stdint.h>

#include "taskmill/jobdir.h"
#include "taskmill/task.h"

typedef struct Index Index;

typedef struct IndexRow {
    char id[TASK_ID_LEN + 1];
    Stage stage;
    int64_t created_ns;
} IndexRow;

/* The index of the data root ROOT; writer creates it (and its folder) when missing. Readers
 * fail with -ENOENT until the queue has created it. */
int index_open(const char *root, bool writer, Index **ret);
void index_close(Index *ix);
/* Reader: *ix open on the current file - opened when NULL, reopened when the queue replaced
 * a damaged or deleted index since (a cheap stat otherwise). */
int index_keep_open(Index **ix, const char *root);

/* Writer: the row of job id as its folder in stage s says now (removed when the folder has no
 * readable request.json), and a removed job's row. */
int index_refresh(Index *ix, int data_fd, Stage s, const char *id);
int index_forget(Index *ix, const char *id);
/* Writer: the whole index in line with the folders (committed every few thousand jobs read,
 * telling systemd the start goes on). It walks every stage folder anyway, so it says how many
 * jobs each holds (the queue's done and failed counts come from here). */
typedef struct IndexRebuilt {
    unsigned changed;                /* rows read again, rewritten or dropped */
    unsigned jobs[STAGE_FAILED + 1]; /* job folders per stage */
} IndexRebuilt;
int index_rebuild(Index *ix, int data_fd, IndexRebuilt *ret);

/* A list query: rows ordered by (created_ns, id) after the cursor. NULL strings and
 * STAGE_INVALID match anything; timing (pending/ only) is 1 for due, 2 for scheduled. */
typedef struct IndexQuery {
    const char *owner, *context, *batch;
    Stage stage;
    int timing;
    int64_t now_ns;
    int64_t after_ns;
    const char *after_id; /* "" for the first page */
    unsigned limit;
    bool newest; /* newest first: the rows before (after_ns, after_id) */
} IndexQuery;

int index_list(Index *ix, const IndexQuery *q, IndexRow **ret, size_t *ret_n);

/* What a token holds: unfinished tasks, and the bytes of all its job folders. */
int index_usage(Index *ix, const char *owner, unsigned *ret_unfinished, uint64_t *ret_bytes);

/* Finished jobs whose callback is still owed; finished jobs that finished before before_ns. */
typedef int (*IndexEachFn)(const IndexRow *row, void *userdata);
int index_each_owed(Index *ix, IndexEachFn fn, void *userdata);
int index_each_finished_before(Index *ix, int64_t before_ns, IndexEachFn fn, void *userdata);

#endif
