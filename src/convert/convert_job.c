/* convert_job.c - one conversion, in a child process of taskmill-convert.
 *
 * The child works inside in_progress/<id>/ only (it chdirs there): it reads request.json,
 * encodes input.* to output.<ext>.partial, checks the output against the input, computes its
 * sha256, renames it to output.<ext> and writes result.json. Progress goes to progress.json
 * about once a second. SIGTERM stops the encode within a second and removes the partial
 * output. The outcome is the exit status (convert.h); error.json says why a job failed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libavutil/mem.h>
#include <libavutil/sha.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "convert.h"
#include "convert_media.h"
#include "taskmill/jobdir.h"
#include "taskmill/task.h"
#include "taskmill/clock.h"
#include "taskmill/files.h"

static volatile sig_atomic_t job_cancel;

typedef struct ProgressCtx {
    int64_t last_ns;
} ProgressCtx;

static void on_term(int sig)
{
    (void)sig;
    job_cancel = 1;
}

static int on_progress(const ConvertProgress *p, void *userdata)
{
    ProgressCtx *ctx = userdata;
    int64_t now = now_ns();
    json_t *j;

    if (now - ctx->last_ns < 900000000LL)
        return job_cancel;
    ctx->last_ns = now;
    j = json_pack("{s:f, s:f, s:f, s:I, s:I}", "percent", p->percent, "fps", p->fps, "eta_seconds",
                  p->eta_seconds, "frames", (json_int_t)p->frames, "updated_ns", (json_int_t)now);
    json_write_at(AT_FDCWD, "progress.json", j);
    json_decref(j);
    return job_cancel;
}

static int write_error(const char *code, const char *message)
{
    json_t *j = json_pack("{s:s, s:s, s:I}", "code", code, "message", message, "finished_ns",
                          (json_int_t)now_ns());
    int r = json_write_at(AT_FDCWD, "error.json", j);

    json_decref(j);
    return r;
}

static int sha256_file(const char *path, char hex[65], uint64_t *ret_size)
{
    struct AVSHA *sha = av_sha_alloc();
    uint8_t buf[1 << 16], digest[32];
    uint64_t size = 0;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || !sha) {
        av_free(sha);
        if (fd >= 0)
            close(fd);
        return -EIO;
    }
    av_sha_init(sha, 256);
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        av_sha_update(sha, buf, (size_t)n);
        size += (uint64_t)n;
    }
    av_sha_final(sha, digest);
    av_free(sha);
    close(fd);
    if (n < 0)
        return -EIO;
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    *ret_size = size;
    return 0;
}

/* "movie.MOV" -> "movie" + ext: the result keeps the input's base name. */
static void result_name(const char *file_name, const char *ext, char *buf, size_t len)
{
    const char *dot = strrchr(file_name, '.');
    int base = dot ? (int)(dot - file_name) : (int)strlen(file_name);

    snprintf(buf, len, "%.*s%s", base, file_name, ext);
}

static int publish_result(const Task *t, const char *partial, const char *out, const char *ext)
{
    char hex[65], name[300];
    uint64_t size;
    json_t *j;
    int r;

    if (sha256_file(partial, hex, &size) < 0 || rename(partial, out) < 0)
        return -EIO;
    result_name(t->file_name, ext, name, sizeof(name));
    j = json_pack("{s:s, s:s, s:I, s:s, s:I}", "file_name", name, "disk_name", out, "size",
                  (json_int_t)size, "sha256", hex, "finished_ns", (json_int_t)now_ns());
    r = json_write_at(AT_FDCWD, "result.json", j); /* fsyncs the directory: rename is durable */
    json_decref(j);
    return r;
}

static int fail_job(const char *partial, const ConvertError *err)
{
    unlink(partial);
    if (!strcmp(err->code, "canceled") || job_cancel)
        return JOB_EXIT_INTERRUPTED;
    write_error(err->code, err->message);
    return JOB_EXIT_FAILED;
}

static int fsync_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;

    if (fd < 0 || fsync(fd) < 0)
        r = -errno;
    if (fd >= 0)
        close(fd);
    return r;
}

static int run_job(const Conf *c, const Task *t)
{
    const char *ext, *fmt = plan_format_for(t->file_name, &ext);
    char out[64], partial[80];
    ProgressCtx pctx = {0};
    ConvertError err = {0};
    ConvertOptions opt = {
        .crf = (int)json_integer_value(json_object_get(t->params, "crf")),
        .preset = json_string_value(json_object_get(t->params, "preset")),
        .threads = c->threads,
        .out_format = fmt,
        .limits = {c->max_width, c->max_height, c->max_streams, c->max_duration},
        .cancel = &job_cancel,
    };

    snprintf(out, sizeof(out), "output%s", ext);
    snprintf(partial, sizeof(partial), "%s.partial", out);
    if (transcode_run(t->input_name, partial, &opt, on_progress, &pctx, &err) < 0 ||
        verify_output(t->input_name, partial, &err) < 0)
        return fail_job(partial, &err);
    if (fsync_file(partial) < 0 || publish_result(t, partial, out, ext) < 0) {
        unlink(partial);
        write_error("io_error", "cannot store the converted file");
        return JOB_EXIT_FAILED;
    }
    return JOB_EXIT_DONE;
}

static int job_main(const Conf *c, int data_fd, const char *id)
{
    struct sigaction sa = {.sa_handler = on_term};
    JailSpec jail;
    char err[256];
    sigset_t all;
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
        write_error("bad_request_file", err);
        return JOB_EXIT_FAILED;
    }
    jail = jail_spec(c, t.size);
    if (jail_enter(&jail) < 0) {
        task_free(&t);
        return JOB_EXIT_JAIL;
    }
    r = run_job(c, &t);
    task_free(&t);
    return r;
}

int job_spawn(const Conf *c, int data_fd, const char *id, pid_t *ret_pid)
{
    pid_t pid = fork();

    if (pid < 0)
        return -errno;
    if (pid == 0)
        _exit(job_main(c, data_fd, id));
    *ret_pid = pid;
    return 0;
}

int job_write_crash(int data_fd, const char *id, const char *message)
{
    json_t *j = json_pack("{s:s, s:s, s:I}", "code", "worker_crashed", "message", message,
                          "finished_ns", (json_int_t)now_ns());
    int fd, r = jobdir_open(data_fd, STAGE_IN_PROGRESS, id, &fd);

    if (r == 0) {
        jobdir_reset(fd); /* drops the half-written output */
        r = json_write_at(fd, "error.json", j);
        close(fd);
    }
    json_decref(j);
    return r;
}
