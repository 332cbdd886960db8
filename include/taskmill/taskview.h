/* taskview.h - the task object the API shows, assembled from the files of one job directory.
 *
 * request.json (rest), claim.json (queue), progress.json, result.json or error.json (the
 * converter), callback.json (callback): any process, or an admin's jq, sees the same facts. */
#ifndef TASKMILL_TASKVIEW_H
#define TASKMILL_TASKVIEW_H

#include <jansson.h>

#include "taskmill/jobdir.h"

/* The task object of the API for the job in stage s. */
int task_view(int data_fd, Stage s, const char *id, json_t **ret);
/* The same from the job's directory fd (e.g. from jobdir_find_open). */
int task_view_at(int job_fd, Stage s, json_t **ret);

#endif
