/* convert_job.c - one task, in a child process of taskmill-convert.
 *
 * The child works inside in_progress/<id>/ only (it chdirs there): it reads request.json,
 * enters the jail (convert_jail.c) and hands the task to its kind's runner: convert_video.c,
 * convert_exec.c. A runner publishes its result through job_publish (sha256, rename, then
 * result.json) or says why it failed through job_error (error.json). SIGTERM asks the runner to
 * stop. The outcome is the exit status (convert.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "convert.h"
#include "taskmill/jobdir.h"
#include "taskmill/result.h"
#include "taskmill/task.h"
#include "taskmill/clock.h"
#include "taskmill/files.h"
#include "taskmill/text.h"
#include "taskmill/tasktype.h"

static volatile sig_atomic_t job_cancel;

/* The runner of each kind this daemon runs. */
static const struct {
    const TaskKind *kind;
    bool exec; /* the jail lets it run programs; the runner ends them at the timeout itself */
    int (*run)(const Conf *c, const TaskType *tt, const Task *t, volatile sig_atomic_t *cancel);
} runners[] = {
    {&kind_video, false, video_run},
    {&kind_exec, true, exec_run},
};

int job_timeout_grace(const char *kind)
{
    for (size_t i = 0; i < sizeof(runners) / sizeof(runners[0]); i++)
        if (!strcmp(runners[i].kind->name, kind))
            return runners[i].exec ? JOB_TIMEOUT_GRACE_S : 0;
    return 0;
}

json_t *job_kinds(void)
{
    json_t *a = json_array();

    for (size_t i = 0; i < sizeof(runners) / sizeof(runners[0]); i++)
        json_array_append_new(a, json_string(runners[i].kind->name));
    return a;
}

static void on_term(int sig)
{
    (void)sig;
    job_cancel = 1;
}

int job_error(const char *code, const char *fmt, ...)
{
    char message[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    return result_error(AT_FDCWD, code, message);
}

int job_publish(const char *partial, const char *disk, const char *file_name, json_t *extra)
{
    return result_publish(AT_FDCWD, partial, disk, file_name, extra);
}

static int job_main(const Conf *c, int data_fd, const char *id)
{
    struct sigaction sa = {.sa_handler = on_term};
    const TaskType *tt;
    JailSpec jail;
    char err[256];
    sigset_t all;
    size_t k = 0;
    Task t;
    int fd, r;

    /* If the pool dies, so does its work: the queue puts the job back. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, NULL);
    if (getppid() == 1)
        return JOB_EXIT_INTERRUPTED;
    if (jobdir_open(data_fd, STAGE_IN_PROGRESS, id, &fd) < 0 || fchdir(fd) < 0)
        return JOB_EXIT_INTERRUPTED; /* the job was taken back meanwhile */
    close(fd);
    if (task_load(AT_FDCWD, &t, err, sizeof(err)) < 0) {
        job_error("bad_request_file", "%s", err);
        return JOB_EXIT_FAILED;
    }
    tt = tasktype_find(c, t.task_type);
    while (tt && k < sizeof(runners) / sizeof(runners[0]) && runners[k].kind != tt->kind)
        k++;
    if (!tt || k == sizeof(runners) / sizeof(runners[0])) {
        job_error("unknown_task_type", "task type '%s' is not one this server runs", t.task_type);
        task_free(&t);
        return JOB_EXIT_FAILED;
    }
    jail = jail_spec(c, t.size);
    jail.allow_exec = runners[k].exec;
    if (jail_enter(&jail) < 0) {
        task_free(&t);
        return JOB_EXIT_JAIL;
    }
    r = runners[k].run(c, tt, &t, &job_cancel);
    task_free(&t);
    return r;
}

int job_spawn(const Conf *c, int data_fd, const char *id, int threads, pid_t *ret_pid)
{
    pid_t pid = fork();

    if (pid < 0)
        return -errno;
    if (pid == 0) {
        Conf mine = *c; /* the child's own copy: its pointers stay the pool's, read-only */
        mine.threads = threads;
        _exit(job_main(&mine, data_fd, id));
    }
    *ret_pid = pid;
    return 0;
}

int job_write_error(int data_fd, const char *id, const char *code, const char *message)
{
    int fd, r = jobdir_open(data_fd, STAGE_IN_PROGRESS, id, &fd);

    if (r == 0) {
        jobdir_reset(fd); /* drops the half-written output */
        r = result_error(fd, code, message);
        close(fd);
    }
    return r;
}
