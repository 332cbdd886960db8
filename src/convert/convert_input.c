/* convert_input.c - the only way the conversion code opens a media file, and the limits it
 * holds it to.
 *
 * input_open() uses a fixed demuxer whitelist, the "file" protocol only, no mov external
 * references, and refuses pictures, stream counts and durations over the configured limits
 * (limits_exceeded) before anything is decoded. Also which streams the output keeps. */
#define CONVERT_MEDIA_INTERNAL
#include "convert_media.h"

#include <stdio.h>
#include <string.h>

#include <libavutil/dict.h>
#include <libavutil/error.h>

/* Containers a job may carry. Not hls, concat, image2, tty, lavfi, data or any playlist. */
static const char INPUT_FORMATS[] = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,mpeg,"
                                    "flv,ogg,asf,wav,mp3,aac,flac,nut,mxf,dv,rm,ivf";

static int interrupt_cb(void *opaque)
{
    const volatile sig_atomic_t *cancel = opaque;

    return cancel && *cancel;
}

int input_main_video(const AVFormatContext *fc)
{
    for (unsigned i = 0; i < fc->nb_streams; i++) {
        const AVStream *st = fc->streams[i];

        if (st->codecpar->codec_type == AVMEDIA_TYPE_VIDEO &&
            !(st->disposition & AV_DISPOSITION_ATTACHED_PIC))
            return (int)i;
    }
    return -1;
}

int input_dropped(const AVStream *st)
{
    enum AVMediaType t = st->codecpar->codec_type;

    return st->discard == AVDISCARD_ALL || t == AVMEDIA_TYPE_DATA || t == AVMEDIA_TYPE_UNKNOWN;
}

unsigned input_kept_streams(const AVFormatContext *fc)
{
    unsigned n = 0;

    for (unsigned i = 0; i < fc->nb_streams; i++)
        n += !input_dropped(fc->streams[i]);
    return n;
}

static AVDictionary *input_options(void)
{
    AVDictionary *o = NULL;

    av_dict_set(&o, "format_whitelist", INPUT_FORMATS, 0);
    av_dict_set(&o, "protocol_whitelist", "file", 0);
    av_dict_set(&o, "enable_drefs", "0", 0);
    av_dict_set(&o, "use_absolute_path", "0", 0);
    return o;
}

static int check_video_size(const AVFormatContext *ic, const ConvertLimits *lim, ConvertError *err)
{
    for (unsigned i = 0; i < ic->nb_streams; i++) {
        const AVCodecParameters *par = ic->streams[i]->codecpar;

        if (par->codec_type != AVMEDIA_TYPE_VIDEO ||
            (ic->streams[i]->disposition & AV_DISPOSITION_ATTACHED_PIC))
            continue;
        if (par->width > lim->max_width || par->height > lim->max_height)
            return error_refuse(err, "limits_exceeded", AVERROR(ERANGE),
                                "video stream #%u is %dx%d, larger than the limit of %dx%d", i,
                                par->width, par->height, lim->max_width, lim->max_height);
    }
    return 0;
}

static int check_input(const AVFormatContext *ic, const ConvertLimits *lim, ConvertError *err)
{
    int v = input_main_video(ic);

    if (v < 0)
        return error_refuse(err, "input_unreadable", AVERROR_STREAM_NOT_FOUND,
                            "input has no video stream to convert");
    if (ic->streams[v]->codecpar->width <= 0 || ic->streams[v]->codecpar->height <= 0)
        return error_refuse(err, "input_unreadable", AVERROR_INVALIDDATA,
                            "cannot find the picture size of video stream #%d", v);
    if (!lim)
        return 0;
    if (ic->nb_streams > (unsigned)lim->max_streams)
        return error_refuse(err, "limits_exceeded", AVERROR(ERANGE),
                            "input has %u streams, more than the limit of %d", ic->nb_streams,
                            lim->max_streams);
    if (ic->duration != AV_NOPTS_VALUE &&
        (double)ic->duration / AV_TIME_BASE > lim->max_duration_seconds)
        return error_refuse(err, "limits_exceeded", AVERROR(ERANGE),
                            "input lasts %.0f s, longer than the limit of %.0f s",
                            (double)ic->duration / AV_TIME_BASE, lim->max_duration_seconds);
    return check_video_size(ic, lim, err);
}

static int open_error(int ret, volatile sig_atomic_t *cancel, ConvertError *err)
{
    if (cancel && *cancel)
        return error_refuse(err, "canceled", AVERROR(ECANCELED), "conversion canceled");
    if (ret == AVERROR(EINVAL))
        return error_refuse(err, "input_unreadable", AVERROR_INVALIDDATA,
                            "input is not a media file this server can read "
                            "(unknown or refused container format)");
    return error_fail(err, "input_unreadable", ret,
                      "input is not a media file this server can read");
}

int input_open(const char *path, const ConvertLimits *limits, volatile sig_atomic_t *cancel,
               AVFormatContext **ret_ic, ConvertError *err)
{
    AVFormatContext *ic = avformat_alloc_context();
    AVDictionary *o;
    int ret;

    *ret_ic = NULL;
    if (!ic || !(ic->protocol_whitelist = av_strdup("file"))) {
        avformat_free_context(ic);
        return error_fail(err, "input_unreadable", AVERROR(ENOMEM), "cannot open input");
    }
    ic->interrupt_callback.callback = interrupt_cb;
    ic->interrupt_callback.opaque = (void *)cancel;
    o = input_options();
    ret = avformat_open_input(&ic, path, NULL, &o);
    av_dict_free(&o);
    if (ret < 0)
        return open_error(ret, cancel, err);
    ret = avformat_find_stream_info(ic, NULL);
    if (ret < 0)
        ret = cancel && *cancel ? open_error(ret, cancel, err)
                                : error_fail(err, "input_unreadable", ret,
                                             "cannot find the streams of the input");
    if (ret >= 0)
        ret = check_input(ic, limits, err);
    if (ret < 0)
        avformat_close_input(&ic);
    *ret_ic = ic;
    return ret < 0 ? ret : 0;
}
