/* tasktype.h - the task types this server knows and how their parameters are checked.
 *
 * A task type has a name, a description, and a parameter schema shown by GET /v1/task-types.
 * tasktype_params() turns a client's params object into the effective parameters (defaults from
 * the config filled in) or says exactly which parameter is wrong. */
#ifndef TASKMILL_TASKTYPE_H
#define TASKMILL_TASKTYPE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "taskmill/conf.h"

typedef struct TaskType {
    const char *name;
    const char *description;
    const char *const *extensions; /* accepted input extensions, NULL-terminated */
} TaskType;

const TaskType *tasktype_find(const char *name);
/* {"task_types":[...]} */
json_t *tasktype_list_json(const Conf *c);
/* 0, or -EINVAL with a message naming the parameter. client may be NULL. */
int tasktype_params(const TaskType *tt, const Conf *c, json_t *client, json_t **ret, char *err,
                    size_t errlen);
/* 0 when the file name's extension is one the type accepts. */
int tasktype_accepts_name(const TaskType *tt, const char *file_name);

#define TASKTYPE_X265 "convert_video_to_libx265"
extern const char *const tasktype_x265_presets[];
bool tasktype_preset_known(const char *preset);

#endif
