/* node.h - taskmill-node, a conversion node on another machine (docs/cluster.md).
 *
 * node.c is the pool: it pulls tasks from the JetStream stream while a slot is free, asks the
 * bridge before it starts one, runs each in a runner process, keeps the message alive with
 * in-progress acks, reports its slots every second and hands in the verdict. node_job.c is the
 * runner: it fetches the input from the server's REST API, converts it with the same code and
 * jail as taskmill-convert (convert_job.c, in a child of its own), and uploads the result. */
#ifndef TASKMILL_NODE_H
#define TASKMILL_NODE_H

#include <stdint.h>

#include "taskmill/conf.h"

/* Exit statuses of a runner besides convert.h's JOB_EXIT_* (done, failed, interrupted, retry). */
enum {
    NODE_EXIT_STALE = 20,   /* the server no longer lets this delivery fetch or upload */
    NODE_EXIT_CRASHED = 21, /* the conversion child died; error.json says worker_crashed */
};

/* The runner, in a child of the node: the task's folder is work_fd's in_progress/<id>/ with
 * request.json written. input_sha256 NULL: the task has no input. Returns the exit status. */
int node_job_run(const Conf *c, int work_fd, const char *id, int64_t delivery,
                 const char *input_sha256, uint64_t input_size, int threads);

#endif
