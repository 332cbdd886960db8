/* tasktype.c - the table of task types and the checks on their parameters.
 *
 * convert_video_to_libx265 takes {"crf": 0..51, "preset": one of x265's presets}; both default
 * to the [convert] section of the config. Unknown parameters are refused, not ignored, so a
 * client's typo never silently converts at the wrong quality. */
#include "taskmill/tasktype.h"

#include "taskmill/task.h"
#include "taskmill/text.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *const tasktype_x265_presets[] = {
    "ultrafast", "superfast", "veryfast", "faster",  "fast", "medium",
    "slow",      "slower",    "veryslow", "placebo", NULL,
};

static const char *const video_exts[] = {
    "mp4", "m4v",  "mov", "mkv", "webm", "avi", "ts",  "mts", "m2ts",
    "mpg", "mpeg", "flv", "wmv", "asf",  "ogv", "3gp", "vob", NULL,
};

static const TaskType task_types[] = {
    {TASKTYPE_X265,
     "Converts a video to H.265/HEVC with libx265; audio, subtitles, metadata "
     "and chapters are kept. mp4/mov/m4v give .mp4 (hvc1), others .mkv.",
     video_exts},
};

const TaskType *tasktype_find(const char *name)
{
    for (size_t i = 0; i < sizeof(task_types) / sizeof(task_types[0]); i++)
        if (name && !strcmp(task_types[i].name, name))
            return &task_types[i];
    return NULL;
}

static json_t *string_array(const char *const *v)
{
    json_t *a = json_array();

    for (; *v; v++)
        json_array_append_new(a, json_string(*v));
    return a;
}

static json_t *x265_schema(const Conf *c)
{
    return json_pack("{s:{s:s, s:i, s:i, s:i, s:s}, s:{s:s, s:o, s:s, s:s}}", "crf", "type",
                     "integer", "minimum", 0, "maximum", 51, "default", c->crf, "description",
                     "constant rate factor: lower is better quality and bigger files", "preset",
                     "type", "string", "enum", string_array(tasktype_x265_presets), "default",
                     c->preset, "description", "x265 speed/efficiency preset");
}

json_t *tasktype_list_json(const Conf *c)
{
    json_t *list = json_array();

    for (size_t i = 0; i < sizeof(task_types) / sizeof(task_types[0]); i++)
        json_array_append_new(list, json_pack("{s:s, s:s, s:o, s:o}", "name", task_types[i].name,
                                              "description", task_types[i].description,
                                              "parameters", x265_schema(c), "extensions",
                                              string_array(task_types[i].extensions)));
    return json_pack("{s:o}", "task_types", list);
}

bool tasktype_preset_known(const char *p)
{
    for (const char *const *v = tasktype_x265_presets; *v; v++)
        if (!strcmp(*v, p))
            return true;
    return false;
}

static int x265_check(json_t *out, const char *key, json_t *v, char *err, size_t errlen)
{
    if (!strcmp(key, "crf")) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 51) {
            snprintf(err, errlen, "params.crf must be an integer from 0 to 51");
            return -EINVAL;
        }
    } else if (!strcmp(key, "preset")) {
        if (!json_is_string(v) || !tasktype_preset_known(json_string_value(v))) {
            snprintf(err, errlen,
                     "params.preset must be one of x265's presets (ultrafast .. "
                     "placebo)");
            return -EINVAL;
        }
    } else {
        snprintf(err, errlen, "params.%.64s is not a parameter of this task type", key);
        utf8_clip(err); /* %.64s may have cut a character in two */
        return -EINVAL;
    }
    json_object_set(out, key, v);
    return 0;
}

int tasktype_params(const TaskType *tt, const Conf *c, json_t *client, json_t **ret, char *err,
                    size_t errlen)
{
    json_t *out, *v;
    const char *key;

    (void)tt;
    if (client && !json_is_object(client)) {
        snprintf(err, errlen, "params must be a JSON object");
        return -EINVAL;
    }
    out = json_pack("{s:i, s:s}", "crf", c->crf, "preset", c->preset);
    json_object_foreach(client, key, v)
    {
        if (x265_check(out, key, v, err, errlen) < 0) {
            json_decref(out);
            return -EINVAL;
        }
    }
    *ret = out;
    return 0;
}

int tasktype_accepts_name(const TaskType *tt, const char *file_name)
{
    const char *dot = strrchr(file_name, '.');

    if (!dot || dot == file_name)
        return -EINVAL;
    for (const char *const *e = tt->extensions; *e; e++)
        if (!strcasecmp(dot + 1, *e))
            return 0;
    return -EINVAL;
}
