/* convert_transcode.c - transcode_run(): one input file to HEVC (libx265) in mp4 or matroska.
 * Runs the conversion once plan_open_output() (convert_plan.c) has planned the streams: demuxes,
 * re-encodes video with libx265, re-encodes audio to AAC or text subtitles to mov_text/subrip where
 * the plan says so, copies the rest, reports progress at most 4 times a second, and stops between
 * packets and frames when canceled, without flushing the encoder. Truncated or corrupt input fails
 * the run. Every path frees everything; a partial output file is left for the caller to delete.
 * Called by the job worker; never logs. */
#define CONVERT_MEDIA_INTERNAL
#include "convert_media.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <libavutil/channel_layout.h>
#include <libavutil/pixdesc.h>
#include <libavutil/time.h>
#include <libswscale/swscale.h>

#define PROGRESS_INTERVAL_US 250000
#define SUB_MAX_BYTES        (1 << 20)
#define MS_Q                 ((AVRational){1, 1000})

static int enomem(ConvertJob *j)
{
    return error_fail(j->err, "encode_error", AVERROR(ENOMEM), "cannot convert");
}

/* The output starts at 0: every timestamp is moved back by the input's start time. */
static int64_t start_offset(const ConvertJob *j, AVRational tb)
{
    return j->ic->start_time == AV_NOPTS_VALUE
               ? 0
               : av_rescale_q(j->ic->start_time, AV_TIME_BASE_Q, tb);
}

/* ---- progress and cancellation ---- */

static int report(ConvertJob *j, int64_t now, int done)
{
    ConvertProgress p = {0, 0, -1, j->frames};
    double elapsed = (double)(now - j->t_start) / 1e6;
    double dur = j->ic->duration == AV_NOPTS_VALUE ? 0 : (double)j->ic->duration / AV_TIME_BASE;

    if (done)
        p.percent = 100;
    else if (dur > 0)
        p.percent = j->pos <= 0 ? 0 : j->pos >= dur ? 100 : j->pos / dur * 100;
    if (elapsed > 0)
        p.fps = (double)j->frames / elapsed;
    if (done)
        p.eta_seconds = 0;
    else if (p.percent >= 0.5 && elapsed > 0)
        p.eta_seconds = elapsed * (100 - p.percent) / p.percent;
    return j->progress(&p, j->userdata);
}

/* Called between packets and between frames: stops on the flag or a nonzero callback. */
static int tick(ConvertJob *j)
{
    int64_t now;

    if (j->canceled || (j->opt->cancel && *j->opt->cancel))
        return AVERROR(ECANCELED);
    now = av_gettime_relative();
    if (!j->progress || now - j->t_last < PROGRESS_INTERVAL_US)
        return 0;
    j->t_last = now;
    if (report(j, now, 0)) {
        j->canceled = 1;
        return AVERROR(ECANCELED);
    }
    return 0;
}

/* ---- muxing ---- */

static void fix_dts(const ConvertJob *j, ConvertStream *s, AVPacket *p)
{
    int strict = !(j->oc->oformat->flags & AVFMT_TS_NONSTRICT);

    if (p->dts == AV_NOPTS_VALUE)
        return;
    if (s->last_dts != AV_NOPTS_VALUE && p->dts < s->last_dts + strict) {
        p->dts = s->last_dts + strict;
        if (p->pts != AV_NOPTS_VALUE && p->pts < p->dts)
            p->pts = p->dts;
    }
    s->last_dts = p->dts;
}

/* Takes the packet's reference. */
static int write_packet(ConvertJob *j, ConvertStream *s, AVPacket *p)
{
    int ret;

    p->stream_index = s->ost->index;
    p->pos = -1;
    fix_dts(j, s, p);
    ret = av_interleaved_write_frame(j->oc, p);
    if (ret < 0)
        return error_fail(j->err, "io_error", ret, "cannot write the output file");
    return 0;
}

/* Sends f (NULL = flush) and muxes every packet the encoder returns. */
static int encode_send(ConvertJob *j, ConvertStream *s, const AVFrame *f)
{
    int ret = avcodec_send_frame(s->enc, f);

    if (ret < 0 && !(ret == AVERROR_EOF && !f))
        return error_fail(j->err, "encode_error", ret, "cannot encode stream #%d", s->ist->index);
    for (;;) {
        ret = avcodec_receive_packet(s->enc, j->opkt);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF)
            return 0;
        if (ret < 0)
            return error_fail(j->err, "encode_error", ret, "cannot encode stream #%d",
                              s->ist->index);
        av_packet_rescale_ts(j->opkt, s->enc->time_base, s->ost->time_base);
        ret = write_packet(j, s, j->opkt);
        if (ret >= 0 && !f)
            ret = tick(j);
        if (ret < 0)
            return ret;
    }
}

/* ---- video ---- */

static int64_t next_video_pts(ConvertStream *s, const AVFrame *f)
{
    int64_t pts = f->best_effort_timestamp;
    int64_t step = av_rescale_q(1, av_inv_q(s->enc->framerate), s->enc->time_base);

    if (pts == AV_NOPTS_VALUE)
        pts = s->last_pts == AV_NOPTS_VALUE ? 0 : s->last_pts + (step > 0 ? step : 1);
    else if (s->last_pts != AV_NOPTS_VALUE && pts <= s->last_pts)
        pts = s->last_pts + 1;
    s->last_pts = pts;
    return pts;
}

static int scale_frame(ConvertJob *j, ConvertStream *s, const AVFrame *f)
{
    AVCodecContext *enc = s->enc;
    int ret;

    s->sws =
        sws_getCachedContext(s->sws, f->width, f->height, (enum AVPixelFormat)f->format, enc->width,
                             enc->height, enc->pix_fmt, SWS_BICUBIC, NULL, NULL, NULL);
    if (!s->sws)
        return error_refuse(
            j->err, "encode_error", AVERROR(EINVAL), "cannot convert %s video to %s",
            av_get_pix_fmt_name((enum AVPixelFormat)f->format), av_get_pix_fmt_name(enc->pix_fmt));
    av_frame_unref(s->conv);
    s->conv->format = enc->pix_fmt;
    s->conv->width = enc->width;
    s->conv->height = enc->height;
    ret = av_frame_get_buffer(s->conv, 0);
    if (ret >= 0)
        ret = sws_scale_frame(s->sws, s->conv, f);
    if (ret >= 0)
        ret = av_frame_copy_props(s->conv, f);
    if (ret < 0)
        return error_fail(j->err, "encode_error", ret, "cannot convert the video frames");
    return 0;
}

/* The encoder's size is rounded down to the chroma grid: drop the odd last column/row. */
static int crop_to_encoder(ConvertJob *j, ConvertStream *s, AVFrame *f)
{
    int dw = f->width - s->enc->width, dh = f->height - s->enc->height;
    int ret;

    if (f->format != s->enc->pix_fmt || dw < 0 || dw > 1 || dh < 0 || dh > 1 || !(dw || dh))
        return 0;
    f->crop_right = (size_t)dw;
    f->crop_bottom = (size_t)dh;
    ret = av_frame_apply_cropping(f, 0);
    if (ret < 0)
        return error_fail(j->err, "encode_error", ret, "cannot crop the video frames");
    return 0;
}

static int video_frame(ConvertJob *j, ConvertStream *s, AVFrame *f)
{
    AVFrame *in = f;
    int ret;

    if (f->width > j->limits.max_width || f->height > j->limits.max_height)
        return error_refuse(j->err, "limits_exceeded", AVERROR(ERANGE),
                            "video frame of %dx%d is larger than the limit of %dx%d", f->width,
                            f->height, j->limits.max_width, j->limits.max_height);
    ret = crop_to_encoder(j, s, f);
    if (ret < 0)
        return ret;
    f->pts = next_video_pts(s, f);
    if (s->ist->index == j->main_video)
        j->pos = (double)f->pts * av_q2d(s->ist->time_base);
    if (f->format != s->enc->pix_fmt || f->width != s->enc->width || f->height != s->enc->height) {
        ret = scale_frame(j, s, f);
        if (ret < 0)
            return ret;
        in = s->conv;
    }
    in->pict_type = AV_PICTURE_TYPE_NONE;
#if LIBAVCODEC_VERSION_MAJOR < 60
    /* libx265 in FFmpeg 5.1 mallocs a copy of a nonzero value per frame and leaks the copies
     * of frames still queued when the encoder is freed without a flush (cancel, error). */
    in->reordered_opaque = 0;
#endif
    j->frames++;
    return encode_send(j, s, in);
}

/* ---- audio (re-encode to AAC) ---- */

static int ensure_swr(ConvertJob *j, ConvertStream *s, const AVFrame *f)
{
    AVChannelLayout in = f->ch_layout; /* shallow: read-only view for swr */
    int ret;

    if (s->swr && f->format == s->swr_format && f->sample_rate == s->swr_rate &&
        !av_channel_layout_compare(&f->ch_layout, &s->swr_layout))
        return 0;
    swr_free(&s->swr);
    av_channel_layout_uninit(&s->swr_layout);
    s->swr_format = f->format;
    s->swr_rate = f->sample_rate;
    if (in.order == AV_CHANNEL_ORDER_UNSPEC)
        av_channel_layout_default(&in, f->ch_layout.nb_channels);
    ret = av_channel_layout_copy(&s->swr_layout, &f->ch_layout);
    if (ret >= 0)
        ret = swr_alloc_set_opts2(&s->swr, &s->enc->ch_layout, s->enc->sample_fmt,
                                  s->enc->sample_rate, &in, (enum AVSampleFormat)f->format,
                                  f->sample_rate, 0, NULL);
    if (ret >= 0)
        ret = swr_init(s->swr);
    if (ret < 0)
        return error_fail(j->err, "encode_error", ret, "cannot resample audio stream #%d",
                          s->ist->index);
    return 0;
}

/* Resamples f (NULL = what swr still holds) into the FIFO. */
static int resample_into_fifo(ConvertJob *j, ConvertStream *s, const AVFrame *f)
{
    int max = swr_get_out_samples(s->swr, f ? f->nb_samples : 0);
    uint8_t **buf = NULL;
    int ret;

    if (max <= 0)
        return 0;
    ret = av_samples_alloc_array_and_samples(&buf, NULL, s->enc->ch_layout.nb_channels, max,
                                             s->enc->sample_fmt, 0);
    if (ret >= 0)
        ret = swr_convert(s->swr, buf, max, f ? (const uint8_t **)f->extended_data : NULL,
                          f ? f->nb_samples : 0);
    if (ret > 0)
        ret = av_audio_fifo_write(s->fifo, (void **)buf, ret);
    if (buf)
        av_freep(&buf[0]);
    av_freep(&buf);
    if (ret < 0)
        return error_fail(j->err, "encode_error", ret, "cannot resample audio stream #%d",
                          s->ist->index);
    return 0;
}

/* Feeds the encoder whole frames; with flush also the short last one. */
static int drain_fifo(ConvertJob *j, ConvertStream *s, int flush)
{
    int size = s->enc->frame_size > 0 ? s->enc->frame_size : 1024;
    AVFrame *o = s->conv;
    int ret;

    while (av_audio_fifo_size(s->fifo) >= size || (flush && av_audio_fifo_size(s->fifo) > 0)) {
        av_frame_unref(o);
        o->nb_samples = FFMIN(av_audio_fifo_size(s->fifo), size);
        o->format = s->enc->sample_fmt;
        o->sample_rate = s->enc->sample_rate;
        ret = av_channel_layout_copy(&o->ch_layout, &s->enc->ch_layout);
        if (ret >= 0)
            ret = av_frame_get_buffer(o, 0);
        if (ret >= 0)
            ret = av_audio_fifo_read(s->fifo, (void **)o->extended_data, o->nb_samples);
        if (ret < 0)
            return error_fail(j->err, "encode_error", ret, "cannot encode audio stream #%d",
                              s->ist->index);
        o->pts = s->next_pts;
        s->next_pts += o->nb_samples;
        ret = encode_send(j, s, o);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int audio_frame(ConvertJob *j, ConvertStream *s, const AVFrame *f)
{
    int ret = ensure_swr(j, s, f);

    if (ret < 0)
        return ret;
    if (s->next_pts == AV_NOPTS_VALUE)
        s->next_pts = f->pts == AV_NOPTS_VALUE
                          ? 0
                          : av_rescale_q(f->pts, s->ist->time_base, s->enc->time_base);
    ret = resample_into_fifo(j, s, f);
    return ret < 0 ? ret : drain_fifo(j, s, 0);
}

/* ---- decoding, subtitles, copies ---- */

/* Sends pkt (NULL = drain) to the decoder and passes every frame on. */
static int decode_packet(ConvertJob *j, ConvertStream *s, const AVPacket *pkt)
{
    int ret = avcodec_send_packet(s->dec, pkt);

    if (ret < 0 && !(ret == AVERROR_EOF && !pkt))
        return error_fail(j->err, "decode_error", ret, "cannot decode stream #%d (%s)",
                          s->ist->index, avcodec_get_name(s->dec->codec_id));
    for (;;) {
        ret = avcodec_receive_frame(s->dec, j->frame);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF)
            return 0;
        if (ret < 0)
            return error_fail(j->err, "decode_error", ret, "cannot decode stream #%d (%s)",
                              s->ist->index, avcodec_get_name(s->dec->codec_id));
        ret = s->kind == CONVERT_KIND_VIDEO ? video_frame(j, s, j->frame)
                                            : audio_frame(j, s, j->frame);
        av_frame_unref(j->frame);
        if (ret >= 0)
            ret = tick(j);
        if (ret < 0)
            return ret;
    }
}

static int sub_encode(ConvertJob *j, ConvertStream *s, AVSubtitle *sub)
{
    AVPacket *p = j->opkt;
    int64_t start = sub->pts + av_rescale_q(sub->start_display_time, MS_Q, AV_TIME_BASE_Q);
    uint32_t dur = sub->end_display_time > sub->start_display_time
                       ? sub->end_display_time - sub->start_display_time
                       : 0;
    int ret;

    sub->pts = start;
    sub->start_display_time = 0;
    sub->end_display_time = dur;
    ret = av_new_packet(p, SUB_MAX_BYTES);
    if (ret >= 0)
        ret = avcodec_encode_subtitle(s->enc, p->data, p->size, sub);
    if (ret < 0) {
        av_packet_unref(p);
        return error_fail(j->err, "encode_error", ret, "cannot convert subtitle stream #%d",
                          s->ist->index);
    }
    av_shrink_packet(p, ret);
    p->pts = p->dts = av_rescale_q(start, AV_TIME_BASE_Q, s->ost->time_base);
    p->duration = av_rescale_q(dur, MS_Q, s->ost->time_base);
    return write_packet(j, s, p);
}

static int sub_packet(ConvertJob *j, ConvertStream *s, AVPacket *pkt)
{
    AVSubtitle sub;
    int got = 0;
    int ret = avcodec_decode_subtitle2(s->dec, &sub, &got, pkt);

    if (ret < 0)
        return error_fail(j->err, "decode_error", ret, "cannot decode subtitle stream #%d",
                          s->ist->index);
    if (!got)
        return 0;
    ret = sub.num_rects && sub.pts != AV_NOPTS_VALUE ? sub_encode(j, s, &sub) : 0;
    avsubtitle_free(&sub);
    return ret;
}

/* Tracks how far the input has got, for the truncation and duration checks. */
static int note_position(ConvertJob *j, const ConvertStream *s, const AVPacket *pkt)
{
    int64_t ts = pkt->pts != AV_NOPTS_VALUE ? pkt->pts : pkt->dts;
    double end;

    if (pkt->flags & AV_PKT_FLAG_CORRUPT)
        return error_refuse(j->err, "decode_error", AVERROR_INVALIDDATA,
                            "input is damaged or truncated (corrupt packet in stream #%d)",
                            s->ist->index);
    if (ts == AV_NOPTS_VALUE)
        return 0;
    end = (double)(ts + pkt->duration) * av_q2d(s->ist->time_base);
    if (end > j->end_seen)
        j->end_seen = end;
    if (j->end_seen > j->limits.max_duration_seconds)
        return error_refuse(j->err, "limits_exceeded", AVERROR(ERANGE),
                            "input lasts longer than the limit of %.0f s",
                            j->limits.max_duration_seconds);
    return 0;
}

static int handle_packet(ConvertJob *j, AVPacket *pkt)
{
    ConvertStream *s;
    int ret;

    if ((unsigned)pkt->stream_index >= j->nb_sc)
        return 0; /* a stream that appeared after probing has no output stream */
    s = &j->sc[pkt->stream_index];
    if (s->kind == CONVERT_KIND_SKIP || s->kind == CONVERT_KIND_ATTACH)
        return 0;
    if (pkt->pts != AV_NOPTS_VALUE)
        pkt->pts -= start_offset(j, s->ist->time_base);
    if (pkt->dts != AV_NOPTS_VALUE)
        pkt->dts -= start_offset(j, s->ist->time_base);
    ret = note_position(j, s, pkt);
    if (ret < 0)
        return ret;
    switch (s->kind) {
    case CONVERT_KIND_VIDEO:
    case CONVERT_KIND_AUDIO:
        return decode_packet(j, s, pkt);
    case CONVERT_KIND_SUB:
        return sub_packet(j, s, pkt);
    default:
        av_packet_rescale_ts(pkt, s->ist->time_base, s->ost->time_base);
        return write_packet(j, s, pkt);
    }
}

static int read_packets(ConvertJob *j)
{
    for (;;) {
        int ret = tick(j);

        if (ret < 0)
            return ret;
        ret = av_read_frame(j->ic, j->pkt);
        if (ret == AVERROR_EOF)
            return 0;
        if (ret == AVERROR(EIO))
            return error_fail(j->err, "io_error", ret, "cannot read the input file");
        if (ret < 0)
            return error_fail(j->err, "decode_error", ret, "input is damaged or truncated");
        ret = handle_packet(j, j->pkt);
        av_packet_unref(j->pkt);
        if (ret < 0)
            return ret;
    }
}

/* At the end of the input: a read error or a file shorter than it says it is fails. */
static int check_input_end(ConvertJob *j)
{
    const AVFormatContext *ic = j->ic;
    double declared = (double)ic->duration / AV_TIME_BASE;

    if (ic->pb && ic->pb->error < 0)
        return error_fail(j->err, "io_error", ic->pb->error, "cannot read the input file");
    if (ic->duration == AV_NOPTS_VALUE ||
        ic->duration_estimation_method == AVFMT_DURATION_FROM_BITRATE)
        return 0;
    if (j->end_seen < declared * 0.98 - 0.5)
        return error_refuse(j->err, "decode_error", AVERROR_INVALIDDATA,
                            "input ends after %.1f s although it declares %.1f s: "
                            "the file is truncated or damaged",
                            j->end_seen, declared);
    return 0;
}

static int flush_stream(ConvertJob *j, ConvertStream *s)
{
    int ret = decode_packet(j, s, NULL);

    if (ret >= 0 && s->kind == CONVERT_KIND_AUDIO && s->swr)
        ret = resample_into_fifo(j, s, NULL);
    if (ret >= 0 && s->kind == CONVERT_KIND_AUDIO)
        ret = drain_fifo(j, s, 1);
    return ret < 0 ? ret : encode_send(j, s, NULL);
}

static int flush_all(ConvertJob *j)
{
    for (unsigned i = 0; i < j->nb_sc; i++) {
        ConvertStream *s = &j->sc[i];
        int decoded = s->kind == CONVERT_KIND_VIDEO || s->kind == CONVERT_KIND_AUDIO;
        int ret = decoded ? flush_stream(j, s) : 0;

        if (ret < 0)
            return ret;
    }
    return 0;
}

static int finish_output(ConvertJob *j)
{
    int ret = av_write_trailer(j->oc);

    if (ret < 0)
        return error_fail(j->err, "io_error", ret, "cannot finish the output file");
    ret = avio_closep(&j->oc->pb);
    if (ret < 0)
        return error_fail(j->err, "io_error", ret, "cannot close the output file");
    if (j->progress)
        report(j, av_gettime_relative(), 1);
    return 0;
}

static ConvertLimits resolve_limits(const ConvertLimits *in)
{
    ConvertLimits l = *in;

    l.max_width = l.max_width > 0 ? l.max_width : 8192;
    l.max_height = l.max_height > 0 ? l.max_height : 8192;
    l.max_streams = l.max_streams > 0 ? l.max_streams : 64;
    l.max_duration_seconds = l.max_duration_seconds > 0 ? l.max_duration_seconds : 86400;
    return l;
}

static int job_start(ConvertJob *j, const char *in_path, const char *out_path)
{
    int ret;

    if (j->opt->crf < 0 || j->opt->crf > 51)
        return error_refuse(j->err, "encode_error", AVERROR(EINVAL), "crf %d is outside 0..51",
                            j->opt->crf);
    ret = input_open(in_path, &j->limits, j->opt->cancel, &j->ic, j->err);
    if (ret < 0)
        return ret;
    j->main_video = input_main_video(j->ic);
    j->pkt = av_packet_alloc();
    j->opkt = av_packet_alloc();
    j->frame = av_frame_alloc();
    if (!j->pkt || !j->opkt || !j->frame)
        return enomem(j);
    j->t_start = av_gettime_relative();
    j->t_last = j->t_start - PROGRESS_INTERVAL_US;
    return plan_open_output(j, out_path);
}

static void free_stream(ConvertStream *s)
{
    avcodec_free_context(&s->dec);
    avcodec_free_context(&s->enc); /* on cancel: frames still inside x265 are dropped */
    sws_freeContext(s->sws);
    swr_free(&s->swr);
    av_channel_layout_uninit(&s->swr_layout);
    if (s->fifo)
        av_audio_fifo_free(s->fifo);
    av_frame_free(&s->conv);
}

static void job_free(ConvertJob *j)
{
    for (unsigned i = 0; i < j->nb_sc; i++)
        free_stream(&j->sc[i]);
    av_freep(&j->sc);
    if (j->oc) {
        avio_closep(&j->oc->pb);
        avformat_free_context(j->oc);
    }
    avformat_close_input(&j->ic);
    av_packet_free(&j->pkt);
    av_packet_free(&j->opkt);
    av_frame_free(&j->frame);
}

int transcode_run(const char *in_path, const char *out_path, const ConvertOptions *opt,
                  ConvertProgressFn progress, void *userdata, ConvertError *ret_err)
{
    ConvertError scratch;
    ConvertJob j = {.opt = opt,
                    .err = ret_err ? ret_err : &scratch,
                    .progress = progress,
                    .userdata = userdata};
    int ret;

    memset(j.err, 0, sizeof(*j.err));
    av_log_set_level(AV_LOG_ERROR);
    if (!opt || !in_path || !out_path)
        return error_refuse(j.err, "encode_error", AVERROR(EINVAL), "missing arguments");
    j.limits = resolve_limits(&opt->limits);
    ret = job_start(&j, in_path, out_path);
    if (ret >= 0)
        ret = read_packets(&j);
    if (ret >= 0)
        ret = check_input_end(&j);
    if (ret >= 0)
        ret = flush_all(&j);
    if (ret >= 0)
        ret = finish_output(&j);
    if (ret < 0 && (j.canceled || (opt->cancel && *opt->cancel))) {
        memset(j.err, 0, sizeof(*j.err));
        ret = error_refuse(j.err, "canceled", AVERROR(ECANCELED), "conversion canceled");
    }
    job_free(&j);
    return ret;
}
