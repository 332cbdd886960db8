/* jobdir.h - the file queue: job directories under ROOT/data/<stage>/<uuid>/.
 *
 * A job lives in exactly one stage folder at any instant and moves only by rename(2) of its
 * whole directory, followed by an fsync of both parent folders. Every rename of a job folder in
 * the tree is a function of this file. Files inside a job directory are published with
 * file_write_atomic (files.h). */
#ifndef TASKMILL_JOBDIR_H
#define TASKMILL_JOBDIR_H

#include <stdbool.h>
#include <stddef.h>

typedef enum Stage {
    STAGE_REQUEST,
    STAGE_PENDING,
    STAGE_IN_PROGRESS,
    STAGE_DONE,
    STAGE_FAILED,
    STAGE_CORRUPT,
    STAGE_TRASH,
    _STAGE_MAX,
    STAGE_INVALID = -1,
} Stage;

/* Folder name ("in_progress") and API state name ("received" for request) of a stage. */
const char *stage_dir(Stage s);
const char *stage_state(Stage s);
Stage stage_from_state(const char *state);

/* Opens (creating when asked) ROOT/data and its stage folders, checks they are on one
 * filesystem, and returns an O_DIRECTORY fd for ROOT/data. */
int jobdir_open_data(const char *root, bool create, int *ret_fd);

/* Moves <from>/<id> to <to>/<id>: no-replace rename, then fsync of both folders. */
int jobdir_move(int data_fd, const char *id, Stage from, Stage to);

/* Finds which stage holds id (-ENOENT if none). */
int jobdir_find(int data_fd, const char *id, Stage *ret_stage);

/* Opens <stage>/<id> as a directory fd. */
int jobdir_open(int data_fd, Stage s, const char *id, int *ret_fd);

/* jobdir_find, then jobdir_open of what it found; a job the queue moves between the two is
 * looked up again. The fd follows the directory wherever the queue moves it next. */
int jobdir_find_open(int data_fd, const char *id, Stage *ret_stage, int *ret_fd);

/* Removes a job for good: renames it into trash/ (atomic: from then on the task is gone),
 * then deletes the tree. A tree that cannot be deleted stays in trash/ for the next recovery
 * and is not an error. */
int jobdir_remove(int data_fd, Stage s, const char *id);

/* Publishes a complete upload: renames request/<tmp_name> to request/<id> (no replace), then
 * fsyncs request/. If the fsync fails the job is withdrawn again (renamed back), so a job that
 * was not made durable is not left published. *ret_published says whether request/<id>
 * exists when the call returns (true only after a failed withdrawal, on error). */
int jobdir_publish(int data_fd, const char *tmp_name, const char *id, bool *ret_published);

/* Calls fn for every job id in a stage folder (names that are not task ids are skipped). */
typedef int (*JobdirEachFn)(const char *id, void *userdata);
int jobdir_each(int data_fd, Stage s, JobdirEachFn fn, void *userdata);
/* The same for every entry of the folder, temporary names included. */
int jobdir_each_entry(int data_fd, Stage s, JobdirEachFn fn, void *userdata);

/* Puts a job directory back to "not started": removes what an attempt produced or half-wrote
 * ("*.partial", ".tmp*", "output*", stdout.txt, tmp/, progress.json, result.json, error.json).
 * Returns how many entries it removed. */
int jobdir_reset(int job_fd);
/* The queue lock, data/.queue.lock: the queue daemon holds it for its whole life, so nothing
 * else resets jobs under a running queue and no second queue starts. Returns the fd holding
 * the lock (closing it releases), or -EWOULDBLOCK when someone holds it. */
int jobdir_lock(int data_fd, int *ret_fd);

#endif
