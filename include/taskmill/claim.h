/* claim.h - claim.json: the attempts and interruptions of one job.
 *
 * An attempt is counted when a worker takes the job (claim_start). An attempt that ends
 * without a verdict - the converter was stopped, the queue or the machine went down - is an
 * interruption, not an attempt (claim_interrupt), so only real crashes bring a job closer to
 * worker_crashed. "active" marks an attempt in flight, which makes claim_interrupt safe to
 * repeat after a crash in the middle of recovery. Written by the queue and by recovery. */
#ifndef TASKMILL_CLAIM_H
#define TASKMILL_CLAIM_H

#include <stdbool.h>
#include <stdint.h>

typedef struct JobClaim {
    int64_t attempts, interruptions;
    int64_t started_ns;      /* when the current (or last) attempt began */
    bool active;             /* an attempt is in flight */
    int64_t next_attempt_ns; /* a transient failure waits until then (0: no wait) */
    char last_code[40];      /* the last failed attempt's error, "" when none */
    char last_message[512];
} JobClaim;

/* A missing claim.json reads as all zeros. */
int claim_read(int job_fd, JobClaim *ret);
/* A new attempt: attempts + 1, active, started now. Removes what an earlier attempt left. */
int claim_start(int job_fd, JobClaim *ret);
/* The attempt in flight ended with a verdict (done, failed, crashed). */
int claim_end(int job_fd);
/* The attempt in flight was interrupted and another began at once in the same pool (a cluster
 * node went silent and the task went to another node): interruptions + 1, the attempt count
 * unchanged, started now. Unlike claim_start nothing is removed: the new attempt's files are
 * being written already. */
int claim_restart(int job_fd);
/* The attempt failed in a way worth another try (error.json says how): its error is kept as the
 * last error, and the next attempt waits until next_ns. */
int claim_retry(int job_fd, int64_t next_ns);
/* A failed task asked to run again (POST /v1/tasks/ID/retry): attempts start from zero. */
int claim_rearm(int job_fd);
/* The attempt in flight was interrupted: it no longer counts as an attempt, but as an
 * interruption. An attempt whose converter died (error.json says worker_crashed) keeps
 * counting as an attempt. Does nothing when no attempt is active. */
int claim_interrupt(int job_fd);

#endif
