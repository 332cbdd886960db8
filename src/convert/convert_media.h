/* convert_media.h - transcode one media file to HEVC with FFmpeg's libraries.
 *
 * The interface (for the job worker): transcode_run (convert_transcode.c), verify_output
 * (convert_verify.c), plan_format_for (convert_plan.c). Below CONVERT_MEDIA_INTERNAL, what the
 * media files share: opening inputs (convert_input.c), planning outputs (convert_plan.c),
 * errors (convert_error.c). */
#ifndef TASKMILL_CONVERT_MEDIA_H
#define TASKMILL_CONVERT_MEDIA_H
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

/* Zero fields mean the defaults: 8192x8192, 64 streams, 24 hours. */
typedef struct ConvertLimits {
    int max_width, max_height, max_streams;
    double max_duration_seconds;
} ConvertLimits;
typedef struct ConvertOptions {
    int crf;                /* 0..51 */
    const char *preset;     /* x265 preset name; NULL = "medium" */
    int threads;            /* x265 pools, 0 = default */
    const char *out_format; /* "mp4" or "matroska" */
    ConvertLimits limits;
    volatile sig_atomic_t *cancel; /* nonzero = stop now; may be NULL */
} ConvertOptions;
typedef struct ConvertProgress {
    double percent, fps, eta_seconds;
    int64_t frames;
} ConvertProgress;
typedef int (*ConvertProgressFn)(const ConvertProgress *p, void *userdata); /* nonzero = cancel */
/* code is one of: input_unreadable, decode_error, encode_error, unsupported_stream, io_error,
 * canceled, limits_exceeded (transcode_run) and verify_failed (verify_output). */
typedef struct ConvertError {
    char code[32];
    char message[512];
} ConvertError;

/* Returns 0, or a negative errno/AVERROR with *ret_err filled. */
int transcode_run(const char *in_path, const char *out_path, const ConvertOptions *opt,
                  ConvertProgressFn progress, void *userdata, ConvertError *ret_err);
/* Checks a finished output against its input. 0 or negative with *ret_err filled. */
int verify_output(const char *in_path, const char *out_path, ConvertError *ret_err);
/* "mp4" for .mp4/.mov/.m4v inputs (case-insensitive), else "matroska"; and the matching
 * ".mp4"/".mkv". */
const char *plan_format_for(const char *file_name, const char **ret_ext);

#ifdef CONVERT_MEDIA_INTERNAL
/* ---- Internals of the convert_{transcode,input,plan,verify,error}.c files: no other file
 * defines CONVERT_MEDIA_INTERNAL, so nothing below is part of the module's interface. ---- */
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/audio_fifo.h>
#include <libswresample/swresample.h>

struct SwsContext;

enum ConvertStreamKind {
    CONVERT_KIND_SKIP,  /* input_dropped(): no output stream */
    CONVERT_KIND_COPY,  /* remuxed as is */
    CONVERT_KIND_VIDEO, /* decoded, re-encoded with libx265 */
    CONVERT_KIND_AUDIO, /* decoded, re-encoded to AAC */
    CONVERT_KIND_SUB,   /* text subtitle converted to mov_text or subrip */
    CONVERT_KIND_ATTACH /* cover art stored as a matroska attachment; its packet is dropped */
};

/* One input stream and what becomes of it. */
typedef struct ConvertStream {
    enum ConvertStreamKind kind;
    AVStream *ist, *ost;
    AVCodecContext *dec, *enc;
    struct SwsContext *sws;
    SwrContext *swr;
    AVChannelLayout swr_layout; /* input side swr was set up for */
    int swr_format, swr_rate;
    AVAudioFifo *fifo;
    AVFrame *conv;    /* converted picture, or one AAC frame */
    int64_t next_pts; /* audio: next encoder pts (1/sample_rate) */
    int64_t last_pts; /* video: last pts given to the encoder */
    int64_t last_dts; /* last dts muxed (output time base) */
} ConvertStream;

/* One transcode_run() call. */
typedef struct ConvertJob {
    const ConvertOptions *opt;
    ConvertLimits limits;
    ConvertError *err;
    ConvertProgressFn progress;
    void *userdata;
    AVFormatContext *ic, *oc;
    ConvertStream *sc;
    unsigned nb_sc;
    AVPacket *pkt, *opkt;
    AVFrame *frame;
    int main_video, mp4, canceled;
    int64_t t_start, t_last, frames;
    double pos, end_seen; /* seconds from input start: main video decoded / any packet end */
} ConvertJob;

/* Opens and probes path with the demuxer/protocol whitelists; limits NULL = no limit checks.
 * Fails unless there is at least one video stream that is not cover art. */
int input_open(const char *path, const ConvertLimits *limits, volatile sig_atomic_t *cancel,
               AVFormatContext **ret_ic, ConvertError *ret_err);
/* Plans every output stream, opens decoders/encoders, creates path and writes the header. */
int plan_open_output(ConvertJob *j, const char *path);
/* Index of the first video stream that is not an attached picture, or -1. */
int input_main_video(const AVFormatContext *fc);
/* Nonzero for a stream the output leaves out: a hidden mov chapter track (the chapters are
 * copied) or a data track (timecode, camera telemetry, Apple metadata), which neither players
 * nor the muxers make use of; the ffmpeg program drops them too. */
int input_dropped(const AVStream *st);
/* Number of streams the output keeps of fc's: those not dropped. */
unsigned input_kept_streams(const AVFormatContext *fc);
/* Fills *err (first error wins) with code and "<fmt>: <av_strerror(averr)>"; returns averr. */
int error_fail(ConvertError *err, const char *code, int averr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Same without the ": <reason>" suffix, for refusals this module decides itself. */
int error_refuse(ConvertError *err, const char *code, int averr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#endif /* CONVERT_MEDIA_INTERNAL */
#endif
