/* batch.h - batches: tasks followed together, with one callback when the last of them ends.
 *
 * A batch is the folder data/batches/<id>/:
 *   batch.json     written by rest when the batch is made (and again when it is closed):
 *                  {version, id, created_ns, owner?, context?, size?, closed, callback_url?,
 *                  callback_method?}
 *   tasks/<id>     one empty file per task that joined, made by rest before the task is
 *                  published; a member whose task is gone (deleted, expired) no longer counts
 *   callback.json  written by taskmill-callback once the batch finished: {finished,
 *                  finished_ns, url?, attempts, delivered, gave_up, next_attempt_ns}
 * A batch is sealed when it was closed (POST /v1/batches/<id>/close) or when as many tasks as
 * its size joined; it is finished once it is sealed and every task of it has ended (done or
 * failed). Sealed batches take no more tasks. */
#ifndef TASKMILL_BATCH_H
#define TASKMILL_BATCH_H

#include <jansson.h>
#include <stdbool.h>

#define BATCH_SIZE_MAX 100000

/* What the members of a batch are doing now. */
typedef struct BatchCounts {
    unsigned total;       /* members whose task still exists */
    unsigned joined;      /* member files, gone tasks included (counts against size) */
    unsigned unfinished;  /* received, scheduled, pending or in progress */
    unsigned by_state[7]; /* received, scheduled, pending, in_progress, done, failed, (spare) */
    double percent_sum;   /* each task's progress, 100 for an ended one */
} BatchCounts;

/* Opens data/batches/<id> (O_DIRECTORY): 0, -ENOENT, -errno. */
int batch_open(int batches_fd, const char *id, int *ret_fd);
/* batch.json and callback.json (NULL when there is none yet) of an open batch. */
int batch_read(int batch_fd, json_t **ret_batch, json_t **ret_callback);
/* Records that task joined (tasks/<task>, fsynced). */
int batch_add_member(int batch_fd, const char *task);
/* How much batch_count looks at: the member files only (joined: enough for batch_sealed), where
 * each task is (total, unfinished: enough for batch_finished), or each task's view too (the
 * counts by state and the progress, for the batch object). */
typedef enum BatchDepth { BATCH_MEMBERS, BATCH_STAGES, BATCH_VIEWS } BatchDepth;
int batch_count(int data_fd, int batch_fd, BatchDepth depth, BatchCounts *ret);
bool batch_sealed(json_t *batch, const BatchCounts *n); /* reads n->joined only */
bool batch_finished(json_t *batch, const BatchCounts *n);
/* The batch object of the API: id, context, size, closed, sealed, counts, total, progress,
 * created_at, finished, finished_at, callback. */
json_t *batch_view(json_t *batch, json_t *callback, const BatchCounts *n);

#endif
