/* convert.h - the parts of taskmill-convert: the worker pool (convert.c) and the one-job child
 * process (convert_job.c).
 *
 * Each job runs in its own child so a crash inside a decoder fails one attempt, never the
 * daemon. The child tells its outcome by exit status. */
#ifndef TASKMILL_CONVERT_H
#define TASKMILL_CONVERT_H

#include <stdint.h>
#include <sys/types.h>

#include "taskmill/conf.h"

enum {
    JOB_EXIT_DONE = 0,         /* output verified, result.json written */
    JOB_EXIT_FAILED = 10,      /* error.json written: the input cannot be converted */
    JOB_EXIT_INTERRUPTED = 11, /* stopped by SIGTERM, partial output removed */
    JOB_EXIT_JAIL = 12,        /* the limits or the syscall filter could not be set */
};

/* Forks the child for job id (in data/in_progress/<id>); returns its pid. */
int job_spawn(const Conf *c, int data_fd, const char *id, pid_t *ret_pid);

/* Resource limits and the syscall filter of a conversion child (convert_jail.c). */
int job_jail(const Conf *c, uint64_t input_size);

/* Records in in_progress/<id>/error.json that the child died without saying why. */
int job_write_crash(int data_fd, const char *id, const char *message);

#endif
