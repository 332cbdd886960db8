/* taskview.h - the task object the API shows, assembled from the files of one job directory.
 *
 * request.json (rest), claim.json (queue), progress.json, result.json or error.json (the
 * converter), callback.json (callback): any process, or an admin's jq, sees the same facts. */
#ifndef TASKMILL_TASKVIEW_H
#define TASKMILL_TASKVIEW_H

#include <jansson.h>
#include <stdint.h>

#include "taskmill/jobdir.h"

/* The task object of the API for the job in stage s. */
int task_view(int data_fd, Stage s, const char *id, json_t **ret);
/* The same from the job's directory fd (e.g. from jobdir_find_open). */
int task_view_at(int job_fd, Stage s, json_t **ret);
/* The same, with the request's owner (a copy, NULL when it has none) from the same read. */
int task_view_owner_at(int job_fd, Stage s, char **ret_owner, json_t **ret);

/* An RFC 3339 time, or null for 0. */
json_t *view_time(int64_t ns);
/* The delivery of a callback (of a task or a batch): owner holds callback_url and
 * callback_method, cb is its callback.json (NULL: none yet). {url, method, attempts,
 * delivered_at, last_status (0: no answer), delivered, gave_up, next_attempt_at}, or null when
 * owner has no callback_url. */
json_t *view_callback(json_t *owner, json_t *cb);

#endif
