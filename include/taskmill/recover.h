/* recover.h - puts the file queue back to "not started" after a stop or a crash.
 *
 * Safe to run any number of times while no worker runs: every job in in_progress/ goes back to
 * pending/ with its partial outputs removed (claim.json counts the interruption, not an
 * attempt), complete uploads in request/ (request.json present) go to pending/, trash/ is
 * emptied. With RECOVER_UPLOADS (at boot, before rest runs) incomplete uploads in request/ are
 * removed too. Called by taskmill-init at boot and shutdown and by taskmill-queue at start. */
#ifndef TASKMILL_RECOVER_H
#define TASKMILL_RECOVER_H

#include "taskmill/jobdir.h"

typedef struct RecoverStats {
    unsigned requeued, published, dropped_uploads, errors;
} RecoverStats;

/* Hears about each job moved or removed, for logging (error is 0 or -errno). */
typedef void (*RecoverFn)(const char *name, Stage from, Stage to, int error, void *userdata);

#define RECOVER_UPLOADS 1

int recover_run(int data_fd, int flags, RecoverFn on_move, void *userdata, RecoverStats *ret);

#endif
