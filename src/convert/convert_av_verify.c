/* convert_av_verify.c - safe input opening, error reporting and output verification.
 * convert_av_open_input() is the only way this module opens a media file: a fixed demuxer
 * whitelist, the "file" protocol only, no mov external references, optional size limits.
 * convert_av_verify() re-opens a finished output and checks it against its input (duration,
 * stream count, HEVC video that decodes). convert_av_format_for() picks the output container.
 * Called by convert_av.c and by the job worker; never logs, never deletes files. */
#include "convert_av.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/dict.h>
#include <libavutil/error.h>

/* Containers a job may carry. Not hls, concat, image2, tty, lavfi, data or any playlist. */
static const char INPUT_FORMATS[] = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,mpeg,"
                                    "flv,ogg,asf,wav,mp3,aac,flac,nut,mxf,dv,rm,ivf";

#define VERIFY_FRAMES 5
/* Output duration may differ from the input's by 1 %, or by 0.1 s for very short clips
 * (a few frames or one audio packet of rounding at either end). */
#define VERIFY_REL_SLACK 0.01
#define VERIFY_ABS_SLACK 0.1

int convert_av_fail(ConvertError *err, const char *code, int averr, const char *fmt, ...)
{
    char why[AV_ERROR_MAX_STRING_SIZE];
    va_list ap;
    size_t n;

    if (!err || err->code[0])
        return averr;
    snprintf(err->code, sizeof(err->code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    n = strlen(err->message);
    if (averr < 0 && n < sizeof(err->message)) {
        av_strerror(averr, why, sizeof(why));
        snprintf(err->message + n, sizeof(err->message) - n, ": %s", why);
    }
    return averr;
}

static int interrupt_cb(void *opaque)
{
    const volatile sig_atomic_t *cancel = opaque;

    return cancel && *cancel;
}

int convert_av_main_video(const AVFormatContext *fc)
{
    for (unsigned i = 0; i < fc->nb_streams; i++) {
        const AVStream *st = fc->streams[i];

        if (st->codecpar->codec_type == AVMEDIA_TYPE_VIDEO
            && !(st->disposition & AV_DISPOSITION_ATTACHED_PIC))
            return (int)i;
    }
    return -1;
}

unsigned convert_av_visible_streams(const AVFormatContext *fc)
{
    unsigned n = 0;

    for (unsigned i = 0; i < fc->nb_streams; i++)
        n += fc->streams[i]->discard != AVDISCARD_ALL;
    return n;
}

static AVDictionary *input_options(const ConvertLimits *limits)
{
    AVDictionary *o = NULL;

    av_dict_set(&o, "format_whitelist", INPUT_FORMATS, 0);
    av_dict_set(&o, "protocol_whitelist", "file", 0);
    av_dict_set(&o, "enable_drefs", "0", 0);
    av_dict_set(&o, "use_absolute_path", "0", 0);
    if (limits)
        av_dict_set_int(&o, "max_streams", limits->max_streams + 1, 0);
    return o;
}

static int check_video_size(const AVFormatContext *ic, const ConvertLimits *lim, ConvertError *err)
{
    for (unsigned i = 0; i < ic->nb_streams; i++) {
        const AVCodecParameters *par = ic->streams[i]->codecpar;

        if (par->codec_type != AVMEDIA_TYPE_VIDEO
            || (ic->streams[i]->disposition & AV_DISPOSITION_ATTACHED_PIC))
            continue;
        if (par->width > lim->max_width || par->height > lim->max_height)
            return convert_av_fail(err, "limits_exceeded", AVERROR(ERANGE),
                                   "video stream #%u is %dx%d, larger than the limit of %dx%d",
                                   i, par->width, par->height, lim->max_width, lim->max_height);
    }
    return 0;
}

static int check_input(const AVFormatContext *ic, const ConvertLimits *lim, ConvertError *err)
{
    if (convert_av_main_video(ic) < 0)
        return convert_av_fail(err, "input_unreadable", AVERROR_STREAM_NOT_FOUND,
                               "input has no video stream to convert");
    if (!lim)
        return 0;
    if (ic->nb_streams > (unsigned)lim->max_streams)
        return convert_av_fail(err, "limits_exceeded", AVERROR(ERANGE),
                               "input has %u streams, more than the limit of %d",
                               ic->nb_streams, lim->max_streams);
    if (ic->duration != AV_NOPTS_VALUE
        && (double)ic->duration / AV_TIME_BASE > lim->max_duration_seconds)
        return convert_av_fail(err, "limits_exceeded", AVERROR(ERANGE),
                               "input lasts %.0f s, longer than the limit of %.0f s",
                               (double)ic->duration / AV_TIME_BASE, lim->max_duration_seconds);
    return check_video_size(ic, lim, err);
}

static int open_error(int ret, volatile sig_atomic_t *cancel, ConvertError *err)
{
    if (cancel && *cancel)
        return convert_av_fail(err, "canceled", AVERROR(ECANCELED), "conversion canceled");
    if (ret == AVERROR(EINVAL))
        return convert_av_fail(err, "input_unreadable", AVERROR_INVALIDDATA,
                               "input is not a media file this server can read "
                               "(unknown or refused container format)");
    return convert_av_fail(err, "input_unreadable", ret,
                           "input is not a media file this server can read");
}

int convert_av_open_input(const char *path, const ConvertLimits *limits,
                          volatile sig_atomic_t *cancel, AVFormatContext **ret_ic,
                          ConvertError *err)
{
    AVFormatContext *ic = avformat_alloc_context();
    AVDictionary *o;
    int ret;

    *ret_ic = NULL;
    if (!ic || !(ic->protocol_whitelist = av_strdup("file"))) {
        avformat_free_context(ic);
        return convert_av_fail(err, "input_unreadable", AVERROR(ENOMEM), "cannot open input");
    }
    ic->interrupt_callback.callback = interrupt_cb;
    ic->interrupt_callback.opaque = (void *)cancel;
    o = input_options(limits);
    ret = avformat_open_input(&ic, path, NULL, &o);
    av_dict_free(&o);
    if (ret < 0)
        return open_error(ret, cancel, err);
    ret = avformat_find_stream_info(ic, NULL);
    if (ret < 0)
        ret = cancel && *cancel ? open_error(ret, cancel, err)
              : convert_av_fail(err, "input_unreadable", ret,
                                "cannot find the streams of the input");
    if (ret >= 0)
        ret = check_input(ic, limits, err);
    if (ret < 0)
        avformat_close_input(&ic);
    *ret_ic = ic;
    return ret < 0 ? ret : 0;
}

const char *convert_av_format_for(const char *file_name, const char **ret_ext)
{
    static const char *const mp4_ext[] = { ".mp4", ".mov", ".m4v" };
    const char *dot = file_name ? strrchr(file_name, '.') : NULL;
    int mp4 = 0;

    for (size_t i = 0; dot && i < sizeof(mp4_ext) / sizeof(mp4_ext[0]); i++)
        mp4 |= !strcasecmp(dot, mp4_ext[i]);
    if (ret_ext)
        *ret_ext = mp4 ? ".mp4" : ".mkv";
    return mp4 ? "mp4" : "matroska";
}

/* Sends pkt (NULL = drain) and counts the frames it yields; AVERROR_EOF is not an error. */
static int decode_count(AVCodecContext *dec, const AVPacket *pkt, AVFrame *frame, int *got)
{
    int ret = avcodec_send_packet(dec, pkt);

    if (ret < 0 && ret != AVERROR_EOF)
        return ret;
    for (;;) {
        ret = avcodec_receive_frame(dec, frame);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF)
            return 0;
        if (ret < 0)
            return ret;
        av_frame_unref(frame);
        (*got)++;
    }
}

static int read_and_decode(AVFormatContext *fc, int idx, AVCodecContext *dec, int *got)
{
    AVPacket *pkt = av_packet_alloc();
    AVFrame *frame = av_frame_alloc();
    int ret = pkt && frame ? 0 : AVERROR(ENOMEM);

    while (ret >= 0 && *got < VERIFY_FRAMES) {
        ret = av_read_frame(fc, pkt);
        if (ret >= 0 && pkt->stream_index == idx)
            ret = decode_count(dec, pkt, frame, got);
        av_packet_unref(pkt);
    }
    if (ret == AVERROR_EOF)
        ret = decode_count(dec, NULL, frame, got);
    av_packet_free(&pkt);
    av_frame_free(&frame);
    return ret;
}

static int decode_first_frames(AVFormatContext *fc, int idx, ConvertError *err)
{
    const AVCodec *codec = avcodec_find_decoder(fc->streams[idx]->codecpar->codec_id);
    AVCodecContext *dec = codec ? avcodec_alloc_context3(codec) : NULL;
    int got = 0, ret = dec ? 0 : AVERROR_DECODER_NOT_FOUND;

    if (ret >= 0)
        ret = avcodec_parameters_to_context(dec, fc->streams[idx]->codecpar);
    if (ret >= 0) {
        dec->pkt_timebase = fc->streams[idx]->time_base;
        ret = avcodec_open2(dec, codec, NULL);
    }
    if (ret >= 0)
        ret = read_and_decode(fc, idx, dec, &got);
    avcodec_free_context(&dec);
    if (ret < 0)
        return convert_av_fail(err, "verify_failed", ret, "output video does not decode");
    if (!got)
        return convert_av_fail(err, "verify_failed", AVERROR_INVALIDDATA,
                               "output video has no decodable frame");
    return 0;
}

static int compare_files(const AVFormatContext *ic, const AVFormatContext *oc, ConvertError *err)
{
    double din = (double)ic->duration / AV_TIME_BASE, dout = (double)oc->duration / AV_TIME_BASE;
    double slack = din * VERIFY_REL_SLACK > VERIFY_ABS_SLACK ? din * VERIFY_REL_SLACK
                                                             : VERIFY_ABS_SLACK;
    int v = convert_av_main_video(oc);

    if (convert_av_visible_streams(ic) != convert_av_visible_streams(oc))
        return convert_av_fail(err, "verify_failed", AVERROR_INVALIDDATA,
                               "output has %u streams but the input has %u",
                               convert_av_visible_streams(oc), convert_av_visible_streams(ic));
    if (oc->streams[v]->codecpar->codec_id != AV_CODEC_ID_HEVC)
        return convert_av_fail(err, "verify_failed", AVERROR_INVALIDDATA,
                               "output video is %s, not HEVC",
                               avcodec_get_name(oc->streams[v]->codecpar->codec_id));
    /* An input without a known duration cannot be compared; everything else can. */
    if (ic->duration == AV_NOPTS_VALUE)
        return 0;
    if (oc->duration == AV_NOPTS_VALUE || dout < din - slack || dout > din + slack)
        return convert_av_fail(err, "verify_failed", AVERROR_INVALIDDATA,
                               "output lasts %.3f s but the input lasts %.3f s",
                               oc->duration == AV_NOPTS_VALUE ? 0.0 : dout, din);
    return 0;
}

static int open_output_again(const char *path, AVFormatContext **ret_oc, ConvertError *err)
{
    ConvertError why = { { 0 }, { 0 } };
    int ret = convert_av_open_input(path, NULL, NULL, ret_oc, &why);

    if (ret < 0)
        convert_av_fail(err, "verify_failed", 0, "output cannot be read back (%s)", why.message);
    return ret;
}

int convert_av_verify(const char *in_path, const char *out_path, ConvertError *ret_err)
{
    AVFormatContext *ic = NULL, *oc = NULL;
    ConvertError scratch;
    ConvertError *err = ret_err ? ret_err : &scratch;
    int ret;

    memset(err, 0, sizeof(*err));
    av_log_set_level(AV_LOG_ERROR);
    ret = convert_av_open_input(in_path, NULL, NULL, &ic, err);
    if (ret >= 0)
        ret = open_output_again(out_path, &oc, err);
    if (ret >= 0)
        ret = compare_files(ic, oc, err);
    if (ret >= 0)
        ret = decode_first_frames(oc, convert_av_main_video(oc), err);
    avformat_close_input(&ic);
    avformat_close_input(&oc);
    if (ret < 0)
        snprintf(err->code, sizeof(err->code), "verify_failed");
    return ret;
}
