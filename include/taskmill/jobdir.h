/* jobdir.h - the file queue: job directories under ROOT/data/<stage>/<uuid>/.
 *
 * A job lives in exactly one stage folder at any instant and moves only by rename(2) of its
 * whole directory, followed by an fsync of both parent folders. Files inside a job directory are
 * published with file_write_atomic (temp name, fsync, rename, fsync). */
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

/* Removes a job for good: renames it into trash/ (atomic), then deletes the tree. */
int jobdir_remove(int data_fd, Stage s, const char *id);

/* Calls fn for every job id in a stage folder (names that are not task ids are skipped). */
typedef int (*JobdirEachFn)(const char *id, void *userdata);
int jobdir_each(int data_fd, Stage s, JobdirEachFn fn, void *userdata);
/* The same for every entry of the folder, temporary names included. */
int jobdir_each_entry(int data_fd, Stage s, JobdirEachFn fn, void *userdata);

/* write(2) until done, through EINTR and short writes. */
int fd_write_all(int fd, const void *buf, size_t len);

/* Writes name inside dir_fd atomically and durably. */
int file_write_atomic(int dir_fd, const char *name, const void *buf, size_t len);
/* Reads a whole (small) file; caller frees *ret. */
int file_read_all(int dir_fd, const char *name, size_t max, char **ret, size_t *ret_len);
int fsync_at(int dir_fd, const char *name);
/* Deletes name (file or tree) under dir_fd; missing is not an error. */
int rm_rf_at(int dir_fd, const char *name);
/* Puts a job directory back to "not started": removes what an attempt produced or half-wrote
 * ("*.partial", ".tmp*", "output.*", progress.json, result.json, error.json). Returns how many
 * entries it removed. */
int jobdir_reset(int job_fd);
/* Recovery, safe to run any number of times while no worker runs: every job in in_progress/
 * goes back to pending/ with its partial outputs removed, complete uploads in request/
 * (request.json present) go to pending/, trash/ is emptied. With JOBDIR_RECOVER_UPLOADS (at boot,
 * before rest runs) incomplete uploads in request/ are removed too.
 * on_move (may be NULL) hears about each job moved or removed, for logging. */
typedef struct RecoverStats {
    unsigned requeued, published, dropped_uploads, errors;
} RecoverStats;
typedef void (*RecoverFn)(const char *name, Stage from, Stage to, int error, void *userdata);
#define JOBDIR_RECOVER_UPLOADS 1
int jobdir_recover(int data_fd, int flags, RecoverFn on_move, void *userdata, RecoverStats *ret);

/* The queue lock, data/.queue.lock: the queue daemon holds it for its whole life, so nothing
 * else resets jobs under a running queue and no second queue starts. Returns the fd holding
 * the lock (closing it releases), or -EWOULDBLOCK when someone holds it. */
int jobdir_lock(int data_fd, int *ret_fd);

/* mkdir -p with mode. */
int mkdir_p(const char *path, int mode);

#endif
