/* kind_video.c - the video kind: convert an uploaded video to H.265 with libx265 (run by
 * taskmill-convert, src/convert/convert_video.c).
 *
 * Its parameters are fixed: crf (0..51) and preset (x265's presets), defaulting to the
 * [convert] section. Its input is required and must have a video extension. */
#include <stdlib.h>
#include <string.h>

#include "taskmill/conf.h"
#include "taskmill/tasktype.h"

static const char *const video_exts[] = {
    "mp4", "m4v",  "mov", "mkv", "webm", "avi", "ts",  "mts", "m2ts",
    "mpg", "mpeg", "flv", "wmv", "asf",  "ogv", "3gp", "vob", NULL,
};

static const char *video_key(TaskType *t, const char *key, const char *value)
{
    (void)t, (void)key, (void)value;
    return TASKKIND_NOT_MINE;
}

static const char *video_finish(TaskType *t, const Conf *c)
{
    TypeParam *p;

    if (t->n_params)
        return "a video type's parameters are crf and preset; it declares none";
    if (t->input != TYPE_INPUT_NONE && t->input != TYPE_INPUT_REQUIRED)
        return "a video type's input is required";
    p = calloc(2, sizeof(*p));
    if (!p)
        return "out of memory";
    p[0] = (TypeParam){
        .name = strdup("crf"), .kind = PARAM_INT, .min = 0, .max = 51, .def = json_integer(c->crf)};
    p[1] = (TypeParam){.name = strdup("preset"), .kind = PARAM_ENUM, .def = json_string(c->preset)};
    p[1].choices = calloc(16, sizeof(char *)); /* x265 has 10 presets */
    for (size_t i = 0; p[1].choices && tasktype_x265_presets[i]; i++)
        p[1].choices[i] = strdup(tasktype_x265_presets[i]);
    t->params = p;
    t->n_params = 2;
    t->input = TYPE_INPUT_REQUIRED;
    t->extensions = video_exts;
    if (!t->description)
        t->description = strdup("Converts a video to H.265/HEVC with libx265; audio, subtitles, "
                                "metadata and chapters are kept. mp4/mov/m4v give .mp4 (hvc1), "
                                "others .mkv.");
    if (!t->max_attempts)
        t->max_attempts = c->max_attempts;
    return p[1].choices ? NULL : "out of memory";
}

static json_t *video_describe(const TaskType *t)
{
    json_t *e = json_array();

    for (const char *const *x = t->extensions; *x; x++)
        json_array_append_new(e, json_string(*x));
    return json_pack("{s:o}", "extensions", e);
}

const TaskKind kind_video = {
    .name = "video",
    .runner = "convert",
    .default_timeout = 86400,
    .key = video_key,
    .finish = video_finish,
    .describe = video_describe,
};
