/* convert_exec.c - the runner of the exec kind, in a conversion child: the admin's program.
 *
 * The command template is expanded element by element (each placeholder fills part of one
 * argv element and never splits it: no shell anywhere); the program runs as a grandchild in
 * the same job folder and jail, with a clean environment, in a process group of its own. This
 * child watches it: stdout is kept up to the type's max_stdout_bytes (the rest dropped),
 * stderr's last 64 KiB, and its whole group is killed when the task's timeout passes, when the
 * task is cancelled, and once the program has exited (nothing it started outlives the task).
 * Exit 0 publishes the result (stdout, or the file the type names); an exit code the type
 * lists as transient, or the timeout, asks for another attempt later; anything else fails the
 * task with the code and the tail of stderr. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "convert.h"
#include "taskmill/clock.h"
#include "taskmill/files.h"
#include "taskmill/text.h"

#define STDERR_KEEP (64 << 10)
#define TAIL_SHOWN  400

typedef struct Capture {
    int out_fd;         /* stdout.partial */
    uint64_t out_bytes; /* kept */
    bool out_truncated; /* more came than max_stdout_bytes */
    char *err;          /* stderr's last STDERR_KEEP bytes, in order */
    size_t err_len;
} Capture;

/* --- argv ----------------------------------------------------------------------------------- */

/* The command with its placeholders filled; an element naming {input} is left out when the
 * type's input is optional and the task has none. */
static int build_argv(const TaskType *tt, const Task *t, char ***ret)
{
    const char *vars[] = {
        "input", t->input_name ? t->input_name : "", "output", "output", "task_id", t->id, NULL};
    size_t n = 0, k = 0;
    char **argv;
    int r = 0;

    while (tt->argv[n])
        n++;
    if (!(argv = calloc(n + 1, sizeof(*argv))))
        return -ENOMEM;
    for (size_t i = 0; i < n && r == 0; i++) {
        if (!t->input_name && strstr(tt->argv[i], "{input}"))
            continue;
        r = tasktype_expand(tt->argv[i], t->params, vars, TEMPLATE_RAW, &argv[k]);
        k += r == 0;
    }
    if (r < 0) {
        strv_free(argv);
        return r;
    }
    *ret = argv;
    return 0;
}

/* --- watching the program ---------------------------------------------------------------- */

static void keep_stdout(Capture *cap, const TaskType *tt, const char *buf, size_t n)
{
    size_t room = cap->out_bytes < tt->max_stdout_bytes ? tt->max_stdout_bytes - cap->out_bytes : 0;

    if (n > room)
        cap->out_truncated = true;
    n = n < room ? n : room;
    if (n && fd_write_all(cap->out_fd, buf, n) == 0)
        cap->out_bytes += n;
}

static void keep_stderr(Capture *cap, const char *buf, size_t n)
{
    if (n >= STDERR_KEEP) {
        memcpy(cap->err, buf + n - STDERR_KEEP, STDERR_KEEP);
        cap->err_len = STDERR_KEEP;
        return;
    }
    if (cap->err_len + n > STDERR_KEEP) {
        size_t drop = cap->err_len + n - STDERR_KEEP;
        memmove(cap->err, cap->err + drop, cap->err_len - drop);
        cap->err_len -= drop;
    }
    memcpy(cap->err + cap->err_len, buf, n);
    cap->err_len += n;
}

/* Reads both pipes until they close or the deadline; returns -ETIMEDOUT or -ECANCELED when the
 * program had to be stopped. */
static int watch(pid_t pid, int out, int err, const TaskType *tt, Capture *cap, int64_t deadline,
                 volatile sig_atomic_t *cancel)
{
    struct pollfd p[2] = {{.fd = out, .events = POLLIN}, {.fd = err, .events = POLLIN}};
    char buf[65536];
    int open_pipes = 2;

    while (open_pipes > 0) {
        int64_t left = (deadline - now_ns()) / 1000000;
        if (*cancel || left <= 0) {
            kill(-pid, SIGKILL); /* the program and everything it started */
            return *cancel ? -ECANCELED : -ETIMEDOUT;
        }
        if (poll(p, 2, left < 500 ? (int)left : 500) < 0 && errno != EINTR)
            return -errno;
        for (int i = 0; i < 2; i++) {
            ssize_t n;
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            n = read(p[i].fd, buf, sizeof(buf));
            if (n <= 0) {
                close(p[i].fd);
                p[i].fd = -1;
                open_pipes--;
            } else if (i == 0) {
                keep_stdout(cap, tt, buf, (size_t)n);
            } else {
                keep_stderr(cap, buf, (size_t)n);
            }
        }
    }
    return 0;
}

/* The program, in the grandchild: its own process group (so it can be ended with all it
 * started), killed if this child dies, pipes on stdout and stderr, /dev/null on stdin, a clean
 * environment, no PATH search. */
static void program(char **argv, int out, int err, const char *id)
{
    char task_env[64];
    char *envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin",
                    "HOME=.",
                    "TMPDIR=./tmp",
                    "LANG=C.UTF-8",
                    task_env,
                    NULL};
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

    snprintf(task_env, sizeof(task_env), "TASKMILL_TASK_ID=%s", id);
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
        _exit(126);
    execve(argv[0], argv, envp);
    dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* Starts the program and waits for it; *ret_status is its wait status. */
static int run_program(char **argv, const TaskType *tt, const Task *t, Capture *cap,
                       volatile sig_atomic_t *cancel, int *ret_status)
{
    int out[2], err[2], r;
    int64_t deadline = now_ns() + (int64_t)(t->timeout ? t->timeout : tt->timeout) * 1000000000;
    pid_t pid;

    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
        return -errno;
    pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0)
        program(argv, out[1], err[1], t->id);
    setpgid(pid, pid); /* also here: no kill(-pid) may miss the group */
    close(out[1]);
    close(err[1]);
    r = watch(pid, out[0], err[0], tt, cap, deadline, cancel);
    while (waitpid(pid, ret_status, 0) < 0 && errno == EINTR)
        ;
    kill(-pid, SIGKILL); /* what the program left running in its group ends with it */
    return r;
}

/* --- the outcome ---------------------------------------------------------------------------- */

/* The last TAIL_SHOWN bytes of stderr as one line of valid UTF-8. */
static void stderr_tail(const Capture *cap, char *buf, size_t len)
{
    size_t n = cap->err_len < TAIL_SHOWN ? cap->err_len : TAIL_SHOWN;
    const char *p = cap->err + cap->err_len - n;
    char raw[TAIL_SHOWN + 1];

    while (n > 0 && (*p & 0xc0) == 0x80) /* a character cut in two at the start */
        p++, n--;
    memcpy(raw, p, n);
    raw[n] = '\0';
    while (n > 0 && (raw[n - 1] == '\n' || raw[n - 1] == '\r'))
        raw[--n] = '\0';
    text_escape(raw, buf, len);
}

static bool listed(const TaskType *tt, int code)
{
    for (size_t i = 0; i < tt->n_retry_codes; i++)
        if (tt->retry_codes[i] == code)
            return true;
    return false;
}

/* Exit 0: the result, stdout or the file the type names. */
static int publish(const TaskType *tt, const Task *t, const Capture *cap)
{
    json_t *extra = json_pack("{s:i, s:b}", "exit_code", 0, "stdout_truncated", cap->out_truncated);
    char *disk = NULL, name[300];
    int r;

    if (!strcmp(tt->result, "stdout")) {
        r = job_publish("stdout.partial", "stdout.txt", "stdout.txt", extra);
    } else {
        const char *vars[] = {"output", "output", NULL};
        struct stat st;
        r = tasktype_expand(tt->result + 5, t->params, vars, TEMPLATE_RAW, &disk);
        if (r == 0 && (lstat(disk, &st) < 0 || !S_ISREG(st.st_mode))) {
            job_error("no_output", "the program exited 0 but wrote no %s", disk);
            free(disk);
            json_decref(extra);
            return JOB_EXIT_FAILED;
        }
        snprintf(name, sizeof(name), "%s", disk ? disk : "output");
        if (r == 0)
            r = job_publish(disk, disk, name, extra);
        unlink("stdout.partial");
    }
    free(disk);
    json_decref(extra);
    if (r < 0) {
        job_error("io_error", "cannot store the result");
        return JOB_EXIT_RETRY;
    }
    return JOB_EXIT_DONE;
}

static int outcome(const TaskType *tt, const Task *t, const Capture *cap, int r, int status)
{
    char tail[TAIL_SHOWN * 4 + 1];

    stderr_tail(cap, tail, sizeof(tail));
    if (r == -ECANCELED)
        return JOB_EXIT_INTERRUPTED;
    if (r == -ETIMEDOUT) {
        job_error("timeout", "the program ran longer than %d s; stderr: %s",
                  t->timeout ? t->timeout : tt->timeout, tail);
        return JOB_EXIT_RETRY;
    }
    if (r < 0) {
        job_error("io_error", "cannot run the program: %s", strerror(-r));
        return JOB_EXIT_RETRY;
    }
    if (WIFSIGNALED(status)) {
        job_error("exit_signal", "the program died of signal %d; stderr: %s", WTERMSIG(status),
                  tail);
        return JOB_EXIT_FAILED;
    }
    if (WEXITSTATUS(status) == 0)
        return publish(tt, t, cap);
    job_error("exit_status", "the program exited %d%s; stderr: %s", WEXITSTATUS(status),
              listed(tt, WEXITSTATUS(status)) ? " (a code the type retries)" : "", tail);
    return listed(tt, WEXITSTATUS(status)) ? JOB_EXIT_RETRY : JOB_EXIT_FAILED;
}

int exec_run(const Conf *c, const TaskType *tt, const Task *t, volatile sig_atomic_t *cancel)
{
    Capture cap = {.out_fd = -1};
    char **argv = NULL;
    int r, status = 0, exit_code;

    (void)c;
    mkdir("tmp", 0700); /* the program's TMPDIR, inside its job folder */
    cap.err = malloc(STDERR_KEEP);
    cap.out_fd = open("stdout.partial", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (!cap.err || cap.out_fd < 0 || build_argv(tt, t, &argv) < 0) {
        job_error("io_error", "cannot prepare the program's run");
        free(cap.err);
        return JOB_EXIT_RETRY;
    }
    r = run_program(argv, tt, t, &cap, cancel, &status);
    close(cap.out_fd);
    exit_code = outcome(tt, t, &cap, r, status);
    if (exit_code != JOB_EXIT_DONE)
        unlink("stdout.partial");
    rm_rf_at(AT_FDCWD, "tmp");
    strv_free(argv);
    free(cap.err);
    return exit_code;
}
