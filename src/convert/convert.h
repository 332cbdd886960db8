/* convert.h - the parts of taskmill-convert: the worker pool (convert.c) and the one-job child
 * process (convert_job.c).
 *
 * Each job runs in its own child so a crash inside a decoder fails one attempt, never the
 * daemon. The child tells its outcome by exit status. */
#ifndef TASKMILL_CONVERT_H
#define TASKMILL_CONVERT_H

#include <stdbool.h>
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

/* convert_jail.c: what a conversion child may do. */
typedef struct JailSpec {
    uint64_t max_memory_bytes; /* address space; 0 = unlimited */
    uint64_t max_output_bytes; /* largest file it may write; 0 = unlimited */
    unsigned max_cpu_seconds;  /* 0 = unlimited */
    unsigned max_processes;    /* new tasks (threads included) it may start; 0 = unlimited */
    unsigned max_open_files;   /* 0 = unlimited */
    bool allow_exec;           /* may run programs from the system paths (exec task types) */
} JailSpec;

/* The jail of a child of this config for an input of input_size bytes. */
JailSpec jail_spec(const Conf *c, uint64_t input_size);
/* Enters the jail; the current directory is the job folder, the only place it may write.
 * Irreversible. 0 or -errno. */
int jail_enter(const JailSpec *j);
/* The Landlock ABI of the running kernel, 0 when it has none (then the filesystem is not
 * confined beyond the service's own sandbox). */
int jail_landlock_abi(void);

/* Records in in_progress/<id>/error.json that the child died without saying why. */
int job_write_crash(int data_fd, const char *id, const char *message);

#endif
