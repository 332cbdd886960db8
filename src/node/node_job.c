/* node_job.c - one task on a conversion node, in a runner process of taskmill-node.
 *
 * The runner fetches the task's input from the server (GET /v1/node/tasks/<id>/input with the
 * node token, resumed with Range after a broken transfer, checked against the size and SHA-256
 * the bridge published), runs the conversion in a child exactly as taskmill-convert does
 * (convert_job.c: the same runners, the same jail), then uploads the result (PUT
 * /v1/node/tasks/<id>/output?delivery=N with its SHA-256), retrying a failed transfer. The
 * server answers 404 or 409 when this delivery is no longer the one that runs the task: the
 * runner stops there (NODE_EXIT_STALE) and the node drops the task. SIGTERM stops the
 * conversion (JOB_EXIT_INTERRUPTED). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../client/client.h"
#include "../convert/convert.h"
#include "node.h"
#include "taskmill/files.h"
#include "taskmill/jobdir.h"
#include "taskmill/log.h"
#include "taskmill/result.h"
#include "taskmill/task.h"

#define TRANSFER_TRIES 5

static volatile sig_atomic_t stop_asked;

static void on_term(int sig)
{
    (void)sig;
    stop_asked = 1;
}

/* Waits before try n (1, 2, 4, 8 s); false when asked to stop. */
static bool backoff(int n)
{
    for (int i = 0; i < (1 << n) * 10 && !stop_asked; i++)
        usleep(100000);
    return !stop_asked;
}

static int fetch_input(Api *h, const Conf *c, const char *id, const char *path, uint64_t size,
                       const char *sha256)
{
    char url[1024];
    long status = 0;
    json_t *j = NULL;
    int r = -EIO;

    snprintf(url, sizeof(url), "%s/v1/node/tasks/%s/input", c->node_server, id);
    for (int n = 0; n < TRANSFER_TRIES && (n == 0 || backoff(n - 1)); n++) {
        r = api_fetch_file(h, url, path, size, sha256, &status, &j);
        json_decref(j);
        j = NULL;
        if (r == 0 && (status == 200 || status == 206))
            return 0;
        if (r == 0 && (status == 404 || status == 403))
            return NODE_EXIT_STALE;
        log_task(LOG_WARNING, id, "fetching the input: %s (status %ld)",
                 r < 0 ? api_strerror(h) : "refused", status);
    }
    job_error("input_unavailable", "the node could not fetch the input: %s",
              r < 0 ? api_strerror(h) : "the server refused");
    return JOB_EXIT_RETRY;
}

static int upload_result(Api *h, const Conf *c, const char *id, int64_t delivery)
{
    json_t *result = NULL, *j = NULL;
    const char *disk, *sha;
    char url[1024];
    long status = 0;
    int r = json_read_at(AT_FDCWD, "result.json", &result);

    disk = json_string_value(json_object_get(result, "disk_name"));
    sha = json_string_value(json_object_get(result, "sha256"));
    if (r < 0 || !disk || !sha || task_file_name_problem(disk)) {
        json_decref(result);
        job_error("worker_crashed", "the conversion left no readable result.json");
        return NODE_EXIT_CRASHED;
    }
    snprintf(url, sizeof(url), "%s/v1/node/tasks/%s/output?delivery=%" PRId64, c->node_server, id,
             delivery);
    for (int n = 0; n < TRANSFER_TRIES && (n == 0 || backoff(n - 1)); n++) {
        r = api_put_file(h, url, disk, sha, &status, &j);
        json_decref(j);
        j = NULL;
        if (r == 0 && status == 201)
            break;
        if (r == 0 && (status == 404 || status == 409)) {
            json_decref(result);
            return NODE_EXIT_STALE;
        }
        log_task(LOG_WARNING, id, "uploading the result: %s (status %ld)",
                 r < 0 ? api_strerror(h) : "refused", status);
        r = -EIO;
    }
    json_decref(result);
    if (r == 0 && status == 201)
        return JOB_EXIT_DONE;
    if (stop_asked)
        return JOB_EXIT_INTERRUPTED;
    unlink("result.json"); /* the result never reached the server: this attempt failed */
    job_error("result_upload_failed", "the node could not upload the result: %s", api_strerror(h));
    return JOB_EXIT_RETRY;
}

/* The conversion, in a child of its own (convert_job.c); its exit status. */
static int convert(const Conf *c, int work_fd, const char *id, int threads)
{
    pid_t pid, w;
    int status, r = job_spawn(c, work_fd, id, threads, &pid);
    char line[32];

    if (r < 0) {
        job_error("worker_crashed", "cannot start the conversion: %s", strerror(-r));
        return NODE_EXIT_CRASHED;
    }
    snprintf(line, sizeof(line), "%d\n", (int)pid);
    file_write_atomic(AT_FDCWD, ".converter.pid", line, strlen(line)); /* for the node's report */
    while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        if (stop_asked && kill(-pid, SIGTERM) < 0)
            kill(pid, SIGTERM);
    if (w < 0)
        return NODE_EXIT_CRASHED;
    if (WIFEXITED(status) &&
        (WEXITSTATUS(status) == JOB_EXIT_DONE || WEXITSTATUS(status) == JOB_EXIT_FAILED ||
         WEXITSTATUS(status) == JOB_EXIT_RETRY || WEXITSTATUS(status) == JOB_EXIT_INTERRUPTED))
        return WEXITSTATUS(status);
    job_error("worker_crashed", "the conversion process died (%s %d)",
              WIFSIGNALED(status) ? "signal" : "exit status",
              WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    return NODE_EXIT_CRASHED;
}

int node_job_run(const Conf *c, int work_fd, const char *id, int64_t delivery,
                 const char *input_sha256, uint64_t input_size, int threads)
{
    struct sigaction sa = {.sa_handler = on_term}; /* no SA_RESTART: waitpid returns */
    char err[256];
    sigset_t all;
    Api *h = NULL;
    Task t;
    int fd, r;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, NULL);
    if (jobdir_open(work_fd, STAGE_IN_PROGRESS, id, &fd) < 0 || fchdir(fd) < 0)
        return JOB_EXIT_INTERRUPTED;
    close(fd);
    if (task_load(AT_FDCWD, &t, err, sizeof(err)) < 0) {
        job_error("bad_request_file", "%s", err);
        return JOB_EXIT_FAILED;
    }
    if (api_new(&h) < 0 || api_set_token(h, c->node_token) < 0) {
        task_free(&t);
        return NODE_EXIT_CRASHED;
    }
    r = input_sha256 && t.input_name ? fetch_input(h, c, id, t.input_name, input_size, input_sha256)
                                     : 0;
    task_free(&t);
    if (r == 0)
        r = stop_asked ? JOB_EXIT_INTERRUPTED : convert(c, work_fd, id, threads);
    if (r == JOB_EXIT_DONE)
        r = stop_asked ? JOB_EXIT_INTERRUPTED : upload_result(h, c, id, delivery);
    api_free(h);
    return r;
}
