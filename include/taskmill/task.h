/* task.h - what a task is: its request.json and the checks on client input.
 *
 * request.json is written once by rest and never changed; every later fact lives in its own
 * file beside it (claim.json, progress.json, result.json, error.json, callback.json). */
#ifndef TASKMILL_TASK_H
#define TASKMILL_TASK_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define TASK_ID_LEN           36
#define TASK_FILE_NAME_MAX    255
#define TASK_FILE_PATH_MAX    4096
#define TASK_PRIORITY_MIN     0
#define TASK_PRIORITY_MAX     1000
#define TASK_PRIORITY_DEFAULT 500
/* A priority as clients write it: 0..1000, or high (750), normal (500), low (250). */
int task_priority_parse(const char *s, int *ret);
#define TASK_REQUEST_VERSION 1

#define TASK_CONTEXT_MAX 200

typedef struct Task {
    char id[TASK_ID_LEN + 1];
    char *task_type;
    char *file_name;  /* the client's name, validated; NULL for a task without a file */
    char *file_path;  /* client metadata, never used on disk */
    char *input_name; /* on-disk name inside the job dir, chosen by the server; or NULL */
    char *callback_url;
    char *callback_method; /* "POST" (the task object) or "GET" (id and state as a query) */
    char *idempotency_key; /* the client's key, or NULL */
    char *owner;           /* the name of the token that created it, or NULL (open API) */
    char *context;         /* the client's free text, or NULL */
    char *batch;           /* the batch it belongs to, or NULL */
    uint64_t size;
    int priority;
    int64_t created_ns;
    int64_t run_at_ns; /* not before this time (0: at once) */
    int timeout;       /* seconds an attempt may take (0: the type's) */
    json_t *params;    /* effective parameters, defaults filled in */
} Task;

void task_free(Task *t);

/* A canonical lower-case UUID, checked before any filesystem call. */
bool task_id_valid(const char *s);
void task_id_new(char ret[TASK_ID_LEN + 1]);

/* NULL when name is a plain file name we accept, else a short reason. */
const char *task_file_name_problem(const char *name);

int task_to_request_json(const Task *t, json_t **ret);
int task_from_request_json(json_t *j, Task *ret, char *err, size_t errlen);
int task_load(int job_fd, Task *ret, char *err, size_t errlen);
int task_save(int job_fd, const Task *t);

#endif
