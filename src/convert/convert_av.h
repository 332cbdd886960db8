/* convert_av.h - transcode one media file to HEVC with FFmpeg's libraries. */
#ifndef TASKMILL_CONVERT_AV_H
#define TASKMILL_CONVERT_AV_H
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

/* Zero fields mean the defaults: 8192x8192, 64 streams, 24 hours. */
typedef struct ConvertLimits { int max_width, max_height, max_streams; double max_duration_seconds; } ConvertLimits;
typedef struct ConvertOptions {
        int crf;                 /* 0..51 */
        const char *preset;      /* x265 preset name; NULL = "medium" */
        int threads;             /* x265 pools, 0 = default */
        const char *out_format;  /* "mp4" or "matroska" */
        ConvertLimits limits;
        volatile sig_atomic_t *cancel; /* nonzero = stop now; may be NULL */
} ConvertOptions;
typedef struct ConvertProgress { double percent, fps, eta_seconds; int64_t frames; } ConvertProgress;
typedef int (*ConvertProgressFn)(const ConvertProgress *p, void *userdata); /* nonzero = cancel */
/* code is one of: input_unreadable, decode_error, encode_error, unsupported_stream, io_error,
 * canceled, limits_exceeded (convert_av_run) and verify_failed (convert_av_verify). */
typedef struct ConvertError { char code[32]; char message[512]; } ConvertError;

/* Returns 0, or a negative errno/AVERROR with *ret_err filled. */
int convert_av_run(const char *in_path, const char *out_path, const ConvertOptions *opt,
                   ConvertProgressFn progress, void *userdata, ConvertError *ret_err);
/* Checks a finished output against its input. 0 or negative with *ret_err filled. */
int convert_av_verify(const char *in_path, const char *out_path, ConvertError *ret_err);
/* "mp4" for .mp4/.mov/.m4v inputs (case-insensitive), else "matroska"; and the matching ".mp4"/".mkv". */
const char *convert_av_format_for(const char *file_name, const char **ret_ext);

/* ---- Shared between convert_av.c and convert_av_verify.c only; not for other callers. ---- */
struct AVFormatContext;
/* Opens and probes path with the demuxer/protocol whitelists; limits NULL = no limit checks.
 * Fails unless there is at least one video stream that is not cover art. */
int convert_av_open_input(const char *path, const ConvertLimits *limits,
                          volatile sig_atomic_t *cancel, struct AVFormatContext **ret_ic,
                          ConvertError *ret_err);
/* Index of the first video stream that is not an attached picture, or -1. */
int convert_av_main_video(const struct AVFormatContext *fc);
/* Number of streams the demuxer exposes (hidden mov chapter tracks not counted). */
unsigned convert_av_visible_streams(const struct AVFormatContext *fc);
/* Fills *err (first error wins) with code and "<fmt>: <av_strerror(averr)>"; returns averr. */
int convert_av_fail(ConvertError *err, const char *code, int averr, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
#endif
