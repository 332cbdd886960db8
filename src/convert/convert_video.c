/* convert_video.c - the runner of the video kind, in a conversion child: input.* to H.265.
 *
 * Encodes to output.<ext>.partial, checks the output against the input, and publishes it as
 * output.<ext> with result.json (job_publish). Progress goes to progress.json about once a
 * second; a cancel (SIGTERM) stops the encode within a second and removes the partial output.
 * A problem with the input fails the task; one of the disk (io_error) is worth another try. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "convert.h"
#include "convert_media.h"
#include "taskmill/clock.h"
#include "taskmill/files.h"
#include "taskmill/log.h"

typedef struct ProgressCtx {
    int64_t last_ns;
    volatile sig_atomic_t *cancel;
} ProgressCtx;

static int on_progress(const ConvertProgress *p, void *userdata)
{
    ProgressCtx *ctx = userdata;
    int64_t now = now_ns();
    json_t *j;

    if (now - ctx->last_ns < 900000000LL)
        return *ctx->cancel;
    ctx->last_ns = now;
    j = json_pack("{s:f, s:f, s:f, s:I, s:I}", "percent", p->percent, "fps", p->fps, "eta_seconds",
                  p->eta_seconds, "frames", (json_int_t)p->frames, "updated_ns", (json_int_t)now);
    json_write_at(AT_FDCWD, "progress.json", j);
    json_decref(j);
    return *ctx->cancel;
}

/* "movie.MOV" -> "movie" + ext: the result keeps the input's base name. */
static void result_name(const char *file_name, const char *ext, char *buf, size_t len)
{
    const char *dot = strrchr(file_name, '.');
    int base = dot ? (int)(dot - file_name) : (int)strlen(file_name);

    snprintf(buf, len, "%.*s%s", base, file_name, ext);
}

int video_run(const Conf *c, const TaskType *tt, const Task *t, volatile sig_atomic_t *cancel)
{
    const char *ext, *fmt = plan_format_for(t->file_name, &ext);
    char out[64], partial[80], name[300];
    int64_t t0, t1 = 0, t2;
    ProgressCtx pctx = {.cancel = cancel};
    ConvertError err = {0};
    ConvertOptions opt = {
        .crf = (int)json_integer_value(json_object_get(t->params, "crf")),
        .preset = json_string_value(json_object_get(t->params, "preset")),
        .threads = c->threads,
        .out_format = fmt,
        .limits = {c->max_width, c->max_height, c->max_streams, c->max_duration},
        .cancel = cancel,
    };

    (void)tt;
    snprintf(out, sizeof(out), "output%s", ext);
    snprintf(partial, sizeof(partial), "%s.partial", out);
    t0 = now_ns();
    if (transcode_run(t->input_name, partial, &opt, on_progress, &pctx, &err) < 0 ||
        (t1 = now_ns(), verify_output(t->input_name, partial, &err)) < 0) {
        unlink(partial);
        if (!strcmp(err.code, "canceled") || *cancel)
            return JOB_EXIT_INTERRUPTED;
        job_error(err.code, "%s", err.message);
        return !strcmp(err.code, "io_error") ? JOB_EXIT_RETRY : JOB_EXIT_FAILED;
    }
    result_name(t->file_name, ext, name, sizeof(name));
    t2 = now_ns();
    if (job_publish(partial, out, name, NULL) < 0) {
        unlink(partial);
        job_error("io_error", "cannot store the converted file");
        return JOB_EXIT_RETRY;
    }
    /* Where a job's wall time goes (bench/run reads it): the encode, the check of the output,
     * and its sha256, fsync and rename. */
    log_task(LOG_INFO, t->id, "phases encode=%.3f verify=%.3f store=%.3f threads=%d",
             (double)(t1 - t0) / 1e9, (double)(t2 - t1) / 1e9, (double)(now_ns() - t2) / 1e9,
             c->threads);
    return JOB_EXIT_DONE;
}
