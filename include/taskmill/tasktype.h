/* tasktype.h - the task types a server knows: the built-in video type and those an admin defines
 * in the config, one [type.NAME] section each.
 *
 * A type has a kind (video, exec, http: how it runs, see TaskKind), a description, whether it
 * takes an uploaded file, typed parameters (int:MIN..MAX, enum:a,b, string:MAXLEN, bool, each
 * with an optional default), and limits (timeout, max_attempts, max_parallel). The config loader
 * hands every key of a [type.*] section to tasktype_conf_key, then calls tasktype_conf_finish;
 * the types live in the Conf. tasktype_params turns a client's params object into the effective
 * parameters or says exactly which one is wrong. */
#ifndef TASKMILL_TASKTYPE_H
#define TASKMILL_TASKTYPE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct Conf;
typedef struct TypeTable TypeTable;

#define TASKTYPE_X265 "convert_video_to_libx265"

typedef enum TypeInput {
    TYPE_INPUT_NONE,     /* submitted as JSON, no file */
    TYPE_INPUT_OPTIONAL, /* JSON, or multipart with a file */
    TYPE_INPUT_REQUIRED, /* multipart with file_data */
} TypeInput;

typedef enum ParamKind { PARAM_INT, PARAM_ENUM, PARAM_STRING, PARAM_BOOL } ParamKind;

typedef struct TypeParam {
    char *name;
    ParamKind kind;
    int64_t min, max; /* int */
    char **choices;   /* enum, NULL-terminated */
    size_t max_len;   /* string, in bytes */
    json_t *def;      /* the default, or NULL: the parameter is required */
} TypeParam;

typedef struct TaskKind TaskKind;

typedef struct TaskType {
    char *name, *description;
    const TaskKind *kind;
    TypeInput input;
    TypeParam *params;
    size_t n_params;
    int timeout;      /* seconds an attempt may run (a task may ask for less) */
    int max_attempts; /* attempts before a transient failure is final */
    int max_parallel; /* tasks of this type running at once, 0 = no limit */
    /* exec */
    char **argv;      /* the command template, NULL-terminated; {placeholders} */
    int *retry_codes; /* exit codes that mean "try again later" */
    size_t n_retry_codes;
    char *result; /* exec: "stdout" or "file:TEMPLATE" */
    uint64_t max_stdout_bytes;
    /* http */
    char *url, *method, *body; /* templates */
    char **headers;            /* "Name: value" templates, NULL-terminated */
    char *allow_hosts;         /* hosts the url may name, space-separated; NULL: the url's host */
    /* video */
    const char *const *extensions; /* input extensions it takes, NULL-terminated */
    bool builtin;
} TaskType;

/* A kind: how its tasks run, and which keys of a [type.*] section it reads. Adding a kind is
 * one file (src/common/kind_NAME.c) defining one of these, one line in the table in
 * tasktype.c, and its runner in the daemon that runs it (docs/task-types.md). */
struct TaskKind {
    const char *name;   /* "video", "exec", "http" */
    const char *runner; /* the daemon that runs it: "convert" or "callback" */
    int default_timeout;
    /* A key of the section the kind reads itself (command, url, ...): NULL when taken, a
     * reason when the value is bad, TASKKIND_NOT_MINE when the key is not the kind's. */
    const char *(*key)(TaskType *t, const char *key, const char *value);
    /* After the whole section is read: what is missing or contradictory, or NULL. */
    const char *(*finish)(TaskType *t, const struct Conf *c);
    /* Extra members of the type's entry in GET /v1/task-types, or NULL. */
    json_t *(*describe)(const TaskType *t);
};
extern const char TASKKIND_NOT_MINE[];

extern const TaskKind kind_video, kind_exec, kind_http;
/* The kind of that name, or NULL. */
const TaskKind *tasktype_kind(const char *name);

/* Called by the config loader for every key of a [type.NAME] section: NULL, or what is wrong. */
const char *tasktype_conf_key(struct Conf *c, const char *name, const char *key, const char *value);
/* After the file: adds the built-in video type and checks every type. 0, or -EINVAL with the
 * problem in err. */
int tasktype_conf_finish(struct Conf *c, char *err, size_t errlen);
void tasktype_conf_free(struct Conf *c);

const TaskType *tasktype_find(const struct Conf *c, const char *name);
size_t tasktype_count(const struct Conf *c);
const TaskType *tasktype_at(const struct Conf *c, size_t i);
/* SIGHUP: live takes fresh's types (fresh keeps none). The old ones stay allocated until
 * live is freed, so a thread that still reads one is safe. */
void tasktype_conf_swap(struct Conf *live, struct Conf *fresh);
/* {"task_types":[...]}: every type, its kind, input, parameters and limits. */
json_t *tasktype_list_json(const struct Conf *c);
/* The effective parameters from a client's params object (NULL: none given): defaults filled
 * in, every value checked. 0, or -EINVAL with a message naming the parameter. */
int tasktype_params(const TaskType *tt, json_t *client, json_t **ret, char *err, size_t errlen);
/* 0 when a file of this name may be this type's input (video: its extension). */
int tasktype_accepts_name(const TaskType *tt, const char *file_name);

extern const char *const tasktype_x265_presets[];
bool tasktype_preset_known(const char *preset);

/* Templates (exec commands and results, http urls, headers and bodies): "{name}" is replaced by
 * a parameter's value or by one of vars (NULL-terminated name, value pairs, e.g. input, output,
 * task_id); "{params}" by the parameters as a JSON object; "{{" and "}}" are literal braces.
 * With TEMPLATE_URL the values are percent-encoded. */
typedef enum TemplateMode { TEMPLATE_RAW, TEMPLATE_URL } TemplateMode;
int tasktype_expand(const char *tmpl, json_t *params, const char *const *vars, TemplateMode mode,
                    char **ret);
/* NULL when every placeholder of tmpl names a parameter of t or one of the names in vars. */
const char *tasktype_template_check(const TaskType *t, const char *tmpl, const char *const *vars);

/* Splits a command template into argv elements: spaces separate, '...' and "..." group,
 * nothing else is special. -EINVAL on an unterminated quote. */
int tasktype_split_command(const char *s, char ***ret);

#endif
