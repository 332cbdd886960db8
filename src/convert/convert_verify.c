/* convert_verify.c - verify_output(): a finished output is checked against its input before
 * it may be published: it opens, its streams are the ones kept, its video is HEVC and decodes,
 * and its duration matches. Never deletes files; the caller does. */
#define CONVERT_MEDIA_INTERNAL
#include "convert_media.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <libavutil/error.h>

#define VERIFY_FRAMES 5
/* Output duration may differ from the input's by 1 %, or by 0.1 s for very short clips
 * (a few frames or one audio packet of rounding at either end). */
#define VERIFY_REL_SLACK 0.01
#define VERIFY_ABS_SLACK 0.1

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
        return error_fail(err, "verify_failed", ret, "output video does not decode");
    if (!got)
        return error_refuse(err, "verify_failed", AVERROR_INVALIDDATA,
                            "output video has no decodable frame");
    return 0;
}

static int compare_files(const AVFormatContext *ic, const AVFormatContext *oc, ConvertError *err)
{
    double din = (double)ic->duration / AV_TIME_BASE, dout = (double)oc->duration / AV_TIME_BASE;
    double slack =
        din * VERIFY_REL_SLACK > VERIFY_ABS_SLACK ? din * VERIFY_REL_SLACK : VERIFY_ABS_SLACK;
    int v = input_main_video(oc);

    if (input_kept_streams(ic) != input_kept_streams(oc))
        return error_refuse(err, "verify_failed", AVERROR_INVALIDDATA,
                            "output has %u streams but the input has %u to keep",
                            input_kept_streams(oc), input_kept_streams(ic));
    if (oc->streams[v]->codecpar->codec_id != AV_CODEC_ID_HEVC)
        return error_refuse(err, "verify_failed", AVERROR_INVALIDDATA,
                            "output video is %s, not HEVC",
                            avcodec_get_name(oc->streams[v]->codecpar->codec_id));
    /* An input without a known duration cannot be compared; everything else can. */
    if (ic->duration == AV_NOPTS_VALUE)
        return 0;
    if (oc->duration == AV_NOPTS_VALUE || dout < din - slack || dout > din + slack)
        return error_refuse(err, "verify_failed", AVERROR_INVALIDDATA,
                            "output lasts %.3f s but the input lasts %.3f s",
                            oc->duration == AV_NOPTS_VALUE ? 0.0 : dout, din);
    return 0;
}

static int open_output_again(const char *path, AVFormatContext **ret_oc, ConvertError *err)
{
    ConvertError why = {{0}, {0}};
    int ret = input_open(path, NULL, NULL, ret_oc, &why);

    if (ret < 0)
        error_refuse(err, "verify_failed", ret, "output cannot be read back (%s)", why.message);
    return ret;
}

int verify_output(const char *in_path, const char *out_path, ConvertError *ret_err)
{
    AVFormatContext *ic = NULL, *oc = NULL;
    ConvertError scratch;
    ConvertError *err = ret_err ? ret_err : &scratch;
    int ret;

    memset(err, 0, sizeof(*err));
    av_log_set_level(AV_LOG_ERROR);
    ret = input_open(in_path, NULL, NULL, &ic, err);
    if (ret >= 0)
        ret = open_output_again(out_path, &oc, err);
    if (ret >= 0)
        ret = compare_files(ic, oc, err);
    if (ret >= 0)
        ret = decode_first_frames(oc, input_main_video(oc), err);
    avformat_close_input(&ic);
    avformat_close_input(&oc);
    if (ret < 0)
        snprintf(err->code, sizeof(err->code), "verify_failed");
    return ret;
}
