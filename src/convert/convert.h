/* convert.h - the parts of taskmill-convert: the worker pool (convert.c) and the one-job child
 * process (convert_job.c).
 *
 * Each job runs in its own child so a crash inside a decoder fails one attempt, never the
 * daemon. The child tells its outcome by exit status. */
#ifndef TASKMILL_CONVERT_H
#define TASKMILL_CONVERT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <jansson.h>
#include <signal.h>

#include "taskmill/conf.h"
#include "taskmill/task.h"
#include "taskmill/tasktype.h"

enum {
    JOB_EXIT_DONE = 0,         /* result published, result.json written */
    JOB_EXIT_FAILED = 10,      /* error.json written: this task cannot succeed */
    JOB_EXIT_INTERRUPTED = 11, /* stopped by SIGTERM, partial output removed */
    JOB_EXIT_JAIL = 12,        /* the limits or the syscall filter could not be set */
    JOB_EXIT_RETRY = 13,       /* error.json written: worth another attempt later */
};

/* The runners, one per kind, called in the child inside its job folder and its jail
 * (convert_video.c, convert_exec.c). cancel turns nonzero on SIGTERM. They return JOB_EXIT_*. */
int video_run(const Conf *c, const TaskType *tt, const Task *t, volatile sig_atomic_t *cancel);
int exec_run(const Conf *c, const TaskType *tt, const Task *t, volatile sig_atomic_t *cancel);

/* For the runners (the current directory is the job folder): error.json with a code and a
 * message; and the result published: partial fsynced, hashed, renamed to disk, then
 * result.json {file_name, disk_name, size, sha256, finished_ns, ...extra}. */
int job_error(const char *code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int job_publish(const char *partial, const char *disk, const char *file_name, json_t *extra);

/* convert_usage.c: CPU seconds and resident memory of a running process (0 when it is gone);
 * and an ended attempt's figures {slot, pid, host, task_type, started_at, finished_at,
 * wall_seconds, cpu_seconds, max_rss_bytes}, ru being its resource use. */
void child_usage(pid_t pid, double *ret_cpu, uint64_t *ret_rss);
json_t *attempt_figures(const char *host, int slot, pid_t pid, const char *type, int64_t started_ns,
                        const struct rusage *ru);

/* convert_load.c: how many tasks may run now, and why a slot is held. */
typedef struct LoadGate {
    double load;       /* the measure now, -1 when unknown */
    const char *level; /* low, medium, high */
    int allowed;       /* tasks that may run at this level */
    bool cooling;      /* a start must wait for [convert] cooldown */
    char reason[128];  /* why a free slot is held, "" when none is */
} LoadGate;
LoadGate load_gate(const Conf *c, int busy, int64_t last_start_ns);

/* The kinds the runners run, for the pool's hello: ["video", "exec"]. */
json_t *job_kinds(void);
/* Seconds the pool waits past a task's timeout before it kills the child: an exec runner ends
 * its program at the timeout itself (and reports it with the program's stderr); a video has
 * no other guard than the pool's. */
#define JOB_TIMEOUT_GRACE_S 5
int job_timeout_grace(const char *kind);

/* Forks the child for job id (in data/in_progress/<id>); returns its pid. threads replaces
 * [convert] threads for this job (0: x265 decides). */
int job_spawn(const Conf *c, int data_fd, const char *id, int threads, pid_t *ret_pid);

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

/* Records in in_progress/<id>/error.json why the pool ended an attempt the child could not
 * report itself (it died, or outlived its timeout); the half-written output goes. */
int job_write_error(int data_fd, const char *id, const char *code, const char *message);

#endif
