/* convert_plan.c - what becomes of each input stream, and the output file's header.
 *
 * plan_open_output() encodes the main video (and any other) to HEVC with libx265, copies what
 * the container can hold, else re-encodes to AAC / mov_text / subrip, else fails; data tracks
 * such as timecode or camera telemetry are dropped, as the ffmpeg program does. It opens the
 * decoders and encoders and writes the muxer header. plan_format_for() picks the container. */
#define CONVERT_MEDIA_INTERNAL
#include "convert_media.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <libavutil/channel_layout.h>
#include <libavutil/dict.h>
#include <libavutil/error.h>
#include <libavutil/pixdesc.h>

const char *plan_format_for(const char *file_name, const char **ret_ext)
{
    static const char *const mp4_ext[] = {".mp4", ".mov", ".m4v"};
    const char *dot = file_name ? strrchr(file_name, '.') : NULL;
    int mp4 = 0;

    for (size_t i = 0; dot && i < sizeof(mp4_ext) / sizeof(mp4_ext[0]); i++)
        mp4 |= !strcasecmp(dot, mp4_ext[i]);
    if (ret_ext)
        *ret_ext = mp4 ? ".mp4" : ".mkv";
    return mp4 ? "mp4" : "matroska";
}

static int enomem(ConvertJob *j)
{
    return error_fail(j->err, "encode_error", AVERROR(ENOMEM), "cannot convert");
}

static int is_text_sub(enum AVCodecID id)
{
    const AVCodecDescriptor *d = avcodec_descriptor_get(id);

    return d && (d->props & AV_CODEC_PROP_TEXT_SUB);
}

static int choose_kind(ConvertJob *j, ConvertStream *s)
{
    const AVCodecParameters *par = s->ist->codecpar;
    const char *type = av_get_media_type_string(par->codec_type);
    int cover = s->ist->disposition & AV_DISPOSITION_ATTACHED_PIC;

    if (par->codec_type == AVMEDIA_TYPE_VIDEO && !cover)
        s->kind = CONVERT_KIND_VIDEO;
    else if (cover && !j->mp4 && s->ist->attached_pic.size > 0)
        s->kind = CONVERT_KIND_ATTACH;
    else if (avformat_query_codec(j->oc->oformat, par->codec_id, FF_COMPLIANCE_NORMAL) == 1 ||
             (par->codec_type == AVMEDIA_TYPE_ATTACHMENT && !j->mp4))
        s->kind = CONVERT_KIND_COPY;
    else if (par->codec_type == AVMEDIA_TYPE_AUDIO)
        s->kind = CONVERT_KIND_AUDIO;
    else if (par->codec_type == AVMEDIA_TYPE_SUBTITLE && is_text_sub(par->codec_id))
        s->kind = CONVERT_KIND_SUB;
    else
        return error_refuse(j->err, "unsupported_stream", AVERROR_PATCHWELCOME,
                            "stream #%d (%s, %s) cannot be stored in %s output", s->ist->index,
                            type ? type : "unknown type", avcodec_get_name(par->codec_id),
                            j->opt->out_format);
    return 0;
}

static int open_decoder(ConvertJob *j, ConvertStream *s)
{
    const AVCodecParameters *par = s->ist->codecpar;
    const AVCodec *codec = avcodec_find_decoder(par->codec_id);
    int ret;

    if (!codec)
        return error_refuse(j->err, "unsupported_stream", AVERROR_DECODER_NOT_FOUND,
                            "stream #%d uses %s, which this server cannot decode", s->ist->index,
                            avcodec_get_name(par->codec_id));
    if (!(s->dec = avcodec_alloc_context3(codec)))
        return enomem(j);
    ret = avcodec_parameters_to_context(s->dec, par);
    if (ret >= 0) {
        s->dec->pkt_timebase = s->ist->time_base;
        s->dec->thread_count = 0;
        s->dec->max_pixels = (int64_t)j->limits.max_width * j->limits.max_height;
        ret = avcodec_open2(s->dec, codec, NULL);
    }
    if (ret < 0)
        return error_fail(j->err, "decode_error", ret, "cannot open the %s decoder",
                          avcodec_get_name(par->codec_id));
    return 0;
}

/* Copies the opened encoder's parameters to the output stream. */
static int publish_encoder(ConvertJob *j, ConvertStream *s)
{
    int ret = avcodec_parameters_from_context(s->ost->codecpar, s->enc);

    if (ret < 0)
        return enomem(j);
    s->ost->time_base = s->enc->time_base;
    if (s->kind == CONVERT_KIND_VIDEO) {
        s->ost->avg_frame_rate = s->enc->framerate;
        s->ost->sample_aspect_ratio = s->enc->sample_aspect_ratio;
        if (j->mp4)
            s->ost->codecpar->codec_tag = MKTAG('h', 'v', 'c', '1');
    }
    return 0;
}

static enum AVPixelFormat pick_pix_fmt(const AVCodec *codec, enum AVPixelFormat src)
{
    for (const enum AVPixelFormat *p = codec->pix_fmts; p && *p != AV_PIX_FMT_NONE; p++)
        if (*p == src)
            return src;
    return AV_PIX_FMT_YUV420P;
}

static void set_video_params(ConvertJob *j, ConvertStream *s)
{
    AVCodecContext *dec = s->dec, *enc = s->enc;
    AVRational fr = av_guess_frame_rate(j->ic, s->ist, NULL);
    const AVPixFmtDescriptor *src = av_pix_fmt_desc_get(dec->pix_fmt), *dst;

    enc->pix_fmt = pick_pix_fmt(enc->codec, dec->pix_fmt);
    dst = av_pix_fmt_desc_get(enc->pix_fmt);
    enc->width = dec->width & ~((1 << dst->log2_chroma_w) - 1);   /* x265 needs whole */
    enc->height = dec->height & ~((1 << dst->log2_chroma_h) - 1); /* chroma samples */
    enc->sample_aspect_ratio = av_guess_sample_aspect_ratio(j->ic, s->ist, NULL);
    enc->framerate = fr.num > 0 && fr.den > 0 ? fr : (AVRational){25, 1};
    enc->time_base = s->ist->time_base;
    enc->color_range = dec->color_range;
    enc->color_primaries = dec->color_primaries;
    enc->color_trc = dec->color_trc;
    enc->colorspace = dec->colorspace;
    enc->chroma_sample_location = dec->chroma_sample_location;
    if (enc->pix_fmt != dec->pix_fmt) { /* swscale writes limited range, BT.601 from RGB */
        enc->color_range = AVCOL_RANGE_MPEG;
        if (src && (src->flags & AV_PIX_FMT_FLAG_RGB))
            enc->colorspace = AVCOL_SPC_SMPTE170M;
    }
    enc->thread_count = 0; /* x265 picks its frame threads */
    if (j->oc->oformat->flags & AVFMT_GLOBALHEADER)
        enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
}

static int setup_video(ConvertJob *j, ConvertStream *s)
{
    const AVCodec *codec = avcodec_find_encoder_by_name("libx265");
    const char *preset = j->opt->preset ? j->opt->preset : "medium";
    AVDictionary *o = NULL;
    char params[96];
    int n, ret = open_decoder(j, s);

    if (ret < 0)
        return ret;
    if (!codec)
        return error_refuse(j->err, "encode_error", AVERROR_ENCODER_NOT_FOUND,
                            "the libx265 encoder is not available");
    if (!(s->enc = avcodec_alloc_context3(codec)) || !(s->conv = av_frame_alloc()))
        return enomem(j);
    set_video_params(j, s);
    /* The wrapper gives x265 the time base as its frame rate (1/12800 in mp4 reads as 12800
     * fps), and x265's rate control depends on it: name the real rate. */
    n = snprintf(params, sizeof(params), "log-level=error:fps=%d/%d", s->enc->framerate.num,
                 s->enc->framerate.den);
    if (j->opt->threads > 0)
        snprintf(params + n, sizeof(params) - (size_t)n, ":pools=%d", j->opt->threads);
    av_dict_set_int(&o, "crf", j->opt->crf, 0);
    av_dict_set(&o, "preset", preset, 0);
    av_dict_set(&o, "x265-params", params, 0);
    ret = avcodec_open2(s->enc, codec, &o);
    av_dict_free(&o);
    if (ret < 0)
        return error_fail(j->err, "encode_error", ret,
                          "cannot start the HEVC encoder (%dx%d %s, crf %d, preset %s)",
                          s->enc->width, s->enc->height, av_get_pix_fmt_name(s->enc->pix_fmt),
                          j->opt->crf, preset);
    return publish_encoder(j, s);
}

static int pick_rate(const AVCodec *codec, int rate)
{
    int best = 0;

    for (const int *r = codec->supported_samplerates; r && *r; r++) {
        if (*r == rate)
            return rate;
        if (*r > rate && (!best || *r < best))
            best = *r;
    }
    return best ? best : codec->supported_samplerates ? codec->supported_samplerates[0] : rate;
}

/* The source layout when AAC can carry it, else one with the same channel count, else stereo. */
static int pick_layout(const AVCodec *codec, const AVChannelLayout *src, AVChannelLayout *dst)
{
    AVChannelLayout def, stereo = AV_CHANNEL_LAYOUT_STEREO;
    int n = src->nb_channels;

    av_channel_layout_default(&def, n);
    if (!codec->ch_layouts) /* FFmpeg 5.1's aac encoder: 1 to 8 channels, not 7 */
        return av_channel_layout_copy(dst, n < 1 || n > 8 || n == 7                ? &stereo
                                           : src->order == AV_CHANNEL_ORDER_NATIVE ? src
                                                                                   : &def);
    for (const AVChannelLayout *p = codec->ch_layouts; p->nb_channels; p++)
        if (!av_channel_layout_compare(p, src))
            return av_channel_layout_copy(dst, src);
    for (const AVChannelLayout *p = codec->ch_layouts; p->nb_channels; p++)
        if (p->nb_channels == n)
            return av_channel_layout_copy(dst, p);
    return av_channel_layout_copy(dst, &stereo);
}

static int setup_audio(ConvertJob *j, ConvertStream *s)
{
    const AVCodec *codec = avcodec_find_encoder_by_name("aac");
    int ret = open_decoder(j, s);

    if (ret < 0)
        return ret;
    if (!codec || s->dec->sample_rate <= 0)
        return error_refuse(j->err, "unsupported_stream", AVERROR_ENCODER_NOT_FOUND,
                            "audio stream #%d cannot be converted to AAC", s->ist->index);
    if (!(s->enc = avcodec_alloc_context3(codec)) || !(s->conv = av_frame_alloc()))
        return enomem(j);
    ret = pick_layout(codec, &s->dec->ch_layout, &s->enc->ch_layout);
    s->enc->sample_fmt = AV_SAMPLE_FMT_FLTP;
    s->enc->sample_rate = pick_rate(codec, s->dec->sample_rate);
    s->enc->time_base = (AVRational){1, s->enc->sample_rate};
    s->enc->bit_rate = 64000 * (int64_t)s->enc->ch_layout.nb_channels;
    if (j->oc->oformat->flags & AVFMT_GLOBALHEADER)
        s->enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if (ret >= 0)
        ret = avcodec_open2(s->enc, codec, NULL);
    if (ret < 0)
        return error_fail(j->err, "encode_error", ret,
                          "cannot start the AAC encoder for stream #%d", s->ist->index);
    s->fifo = av_audio_fifo_alloc(s->enc->sample_fmt, s->enc->ch_layout.nb_channels,
                                  s->enc->frame_size > 0 ? s->enc->frame_size : 1024);
    return s->fifo ? publish_encoder(j, s) : enomem(j);
}

static int setup_sub(ConvertJob *j, ConvertStream *s)
{
    enum AVCodecID target = j->mp4 ? AV_CODEC_ID_MOV_TEXT : AV_CODEC_ID_SUBRIP;
    const AVCodec *codec = avcodec_find_encoder(target);
    int ret = open_decoder(j, s);

    if (ret < 0)
        return ret;
    if (!codec)
        return error_refuse(j->err, "unsupported_stream", AVERROR_ENCODER_NOT_FOUND,
                            "subtitle stream #%d cannot be converted to %s", s->ist->index,
                            avcodec_get_name(target));
    if (!(s->enc = avcodec_alloc_context3(codec)))
        return enomem(j);
    s->enc->time_base = AV_TIME_BASE_Q;
    if (s->dec->subtitle_header) {
        s->enc->subtitle_header = av_mallocz(s->dec->subtitle_header_size + 1);
        if (!s->enc->subtitle_header)
            return enomem(j);
        memcpy(s->enc->subtitle_header, s->dec->subtitle_header, s->dec->subtitle_header_size);
        s->enc->subtitle_header_size = s->dec->subtitle_header_size;
    }
    ret = avcodec_open2(s->enc, codec, NULL);
    if (ret < 0)
        return error_fail(j->err, "unsupported_stream", ret,
                          "subtitle stream #%d (%s) cannot be converted to %s", s->ist->index,
                          avcodec_get_name(s->dec->codec_id), avcodec_get_name(target));
    ret = publish_encoder(j, s);
    s->ost->time_base = (AVRational){1, 1000};
    return ret;
}

static int setup_copy(ConvertJob *j, ConvertStream *s)
{
    int ret = avcodec_parameters_copy(s->ost->codecpar, s->ist->codecpar);

    if (ret < 0)
        return enomem(j);
    s->ost->codecpar->codec_tag = 0;
    s->ost->time_base = s->ist->time_base;
    s->ost->avg_frame_rate = s->ist->avg_frame_rate;
    return 0;
}

/* Matroska keeps cover art as an image attachment, which reads back as an attached picture. */
static int setup_cover(ConvertJob *j, ConvertStream *s)
{
    const AVPacket *pic = &s->ist->attached_pic;
    const AVCodecDescriptor *d = avcodec_descriptor_get(s->ist->codecpar->codec_id);
    const char *mime = d && d->mime_types ? d->mime_types[0] : "application/octet-stream";
    const char *sub = strchr(mime, '/');
    AVCodecParameters *par = s->ost->codecpar;
    char name[64];

    par->codec_type = AVMEDIA_TYPE_ATTACHMENT;
    par->codec_id = s->ist->codecpar->codec_id;
    if (!(par->extradata = av_mallocz((size_t)pic->size + AV_INPUT_BUFFER_PADDING_SIZE)))
        return enomem(j);
    memcpy(par->extradata, pic->data, (size_t)pic->size);
    par->extradata_size = pic->size;
    snprintf(name, sizeof(name), "cover.%s", sub ? sub + 1 : "bin");
    if (av_dict_set(&s->ost->metadata, "filename", name, 0) < 0 ||
        av_dict_set(&s->ost->metadata, "mimetype", mime, 0) < 0)
        return enomem(j);
    return 0;
}

static int setup_stream(ConvertJob *j, unsigned i)
{
    ConvertStream *s = &j->sc[i];
    int ret;

    s->ist = j->ic->streams[i];
    s->next_pts = s->last_pts = s->last_dts = AV_NOPTS_VALUE;
    if (input_dropped(s->ist)) {
        s->ist->discard = AVDISCARD_ALL; /* the demuxer need not hand us its packets */
        return 0;
    }
    ret = choose_kind(j, s);
    if (ret < 0)
        return ret;
    if (!(s->ost = avformat_new_stream(j->oc, NULL)))
        return enomem(j);
    ret = s->kind == CONVERT_KIND_VIDEO    ? setup_video(j, s)
          : s->kind == CONVERT_KIND_AUDIO  ? setup_audio(j, s)
          : s->kind == CONVERT_KIND_SUB    ? setup_sub(j, s)
          : s->kind == CONVERT_KIND_ATTACH ? setup_cover(j, s)
                                           : setup_copy(j, s);
    if (ret < 0)
        return ret;
    if (av_dict_copy(&s->ost->metadata, s->ist->metadata, 0) < 0)
        return enomem(j);
    if (s->kind != CONVERT_KIND_COPY && s->kind != CONVERT_KIND_ATTACH) { /* now stale */
        av_dict_set(&s->ost->metadata, "encoder", NULL, 0);
        av_dict_set(&s->ost->metadata, "DURATION", NULL, 0);
    }
    s->ost->disposition = s->ist->disposition;
    return 0;
}

static int copy_chapters(ConvertJob *j)
{
    const AVFormatContext *ic = j->ic;
    AVFormatContext *oc = j->oc;

    if (!ic->nb_chapters)
        return 0;
    if (!(oc->chapters = av_calloc(ic->nb_chapters, sizeof(*oc->chapters))))
        return enomem(j);
    for (unsigned i = 0; i < ic->nb_chapters; i++) {
        const AVChapter *in = ic->chapters[i];
        AVChapter *c = av_mallocz(sizeof(*c));
        int64_t start = ic->start_time == AV_NOPTS_VALUE
                            ? 0
                            : av_rescale_q(ic->start_time, AV_TIME_BASE_Q, in->time_base);

        if (!c)
            return enomem(j);
        oc->chapters[oc->nb_chapters++] = c;
        c->id = in->id;
        c->time_base = in->time_base;
        c->start = FFMAX(in->start - start, 0);
        c->end = FFMAX(in->end - start, c->start);
        if (av_dict_copy(&c->metadata, in->metadata, 0) < 0)
            return enomem(j);
    }
    return 0;
}

static int setup_output(ConvertJob *j)
{
    int ret = 0;

    j->nb_sc = j->ic->nb_streams;
    if (!(j->sc = av_calloc(j->nb_sc, sizeof(*j->sc))))
        return enomem(j);
    for (unsigned i = 0; i < j->nb_sc && ret >= 0; i++)
        ret = setup_stream(j, i);
    if (ret >= 0)
        ret = copy_chapters(j);
    if (ret >= 0 && (av_dict_copy(&j->oc->metadata, j->ic->metadata, 0) < 0 ||
                     av_dict_set(&j->oc->metadata, "encoder", LIBAVFORMAT_IDENT, 0) < 0))
        ret = enomem(j);
    return ret;
}

int plan_open_output(ConvertJob *j, const char *path)
{
    const char *fmt = j->opt->out_format ? j->opt->out_format : "";
    AVDictionary *o = NULL;
    int ret;

    if (strcmp(fmt, "mp4") && strcmp(fmt, "matroska"))
        return error_refuse(j->err, "encode_error", AVERROR(EINVAL),
                            "output format \"%s\" is not supported (mp4 or matroska)", fmt);
    j->mp4 = !strcmp(fmt, "mp4");
    ret = avformat_alloc_output_context2(&j->oc, NULL, fmt, NULL);
    if (ret < 0 || !(j->oc->protocol_whitelist = av_strdup("file")))
        return enomem(j);
    j->oc->interrupt_callback = j->ic->interrupt_callback;
    ret = setup_output(j);
    if (ret < 0)
        return ret;
    av_dict_set(&o, "protocol_whitelist", "file", 0);
    ret = avio_open2(&j->oc->pb, path, AVIO_FLAG_WRITE, &j->oc->interrupt_callback, &o);
    av_dict_free(&o);
    if (ret < 0)
        return error_fail(j->err, "io_error", ret, "cannot create the output file");
    ret = avformat_write_header(j->oc, NULL);
    if (ret == AVERROR(EINVAL) || ret == AVERROR_PATCHWELCOME || ret == AVERROR_EXPERIMENTAL)
        return error_fail(j->err, "unsupported_stream", ret,
                          "the %s muxer refused one of the streams", fmt);
    if (ret < 0)
        return error_fail(j->err, "io_error", ret, "cannot write the output file");
    return 0;
}
