/* batch.c - reading a batch and counting its tasks (see batch.h for the folder).
 *
 * rest shows batches and adds members; taskmill-callback decides when one has finished. Both
 * count the same way: each member's task is found in whatever stage it is in now and shown as
 * the API shows it, so a batch's counts always agree with its tasks. */
#define _GNU_SOURCE
#include "taskmill/batch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "taskmill/clock.h"
#include "taskmill/files.h"
#include "taskmill/jobdir.h"
#include "taskmill/task.h"
#include "taskmill/taskview.h"

static const char *const state_names[] = {"received",    "scheduled", "pending",
                                          "in_progress", "done",      "failed"};

int batch_open(int batches_fd, const char *id, int *ret_fd)
{
    int fd;

    if (!task_id_valid(id))
        return -ENOENT;
    fd = openat(batches_fd, id, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    *ret_fd = fd;
    return 0;
}

int batch_read(int batch_fd, json_t **ret_batch, json_t **ret_callback)
{
    int r = json_read_at(batch_fd, "batch.json", ret_batch);

    if (r == 0 && ret_callback && json_read_at(batch_fd, "callback.json", ret_callback) < 0)
        *ret_callback = NULL;
    return r;
}

int batch_add_member(int batch_fd, const char *task)
{
    int dir, fd;

    if (mkdirat(batch_fd, "tasks", 0750) < 0 && errno != EEXIST)
        return -errno;
    dir = openat(batch_fd, "tasks", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dir < 0)
        return -errno;
    fd = openat(dir, task, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd >= 0)
        close(fd);
    if (fd < 0 || fsync(dir) < 0) {
        int r = -errno;
        close(dir);
        return r;
    }
    close(dir);
    return 0;
}

static void count_task(int data_fd, const char *id, BatchDepth depth, BatchCounts *n)
{
    json_t *view = NULL;
    const char *state;
    Stage s;
    int fd;

    n->joined++;
    if (depth == BATCH_MEMBERS || jobdir_find_open(data_fd, id, &s, &fd) < 0)
        return; /* deleted or expired */
    n->total++;
    n->unfinished += s != STAGE_DONE && s != STAGE_FAILED;
    if (depth == BATCH_VIEWS && task_view_at(fd, s, &view) == 0 &&
        (state = json_string_value(json_object_get(view, "state")))) {
        for (size_t i = 0; i < sizeof(state_names) / sizeof(state_names[0]); i++)
            if (!strcmp(state, state_names[i]))
                n->by_state[i]++;
        n->percent_sum +=
            s == STAGE_DONE || s == STAGE_FAILED
                ? 100.0
                : json_number_value(json_object_get(json_object_get(view, "progress"), "percent"));
    }
    json_decref(view);
    close(fd);
}

int batch_count(int data_fd, int batch_fd, BatchDepth depth, BatchCounts *ret)
{
    int dir = openat(batch_fd, "tasks", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    struct dirent *de;
    DIR *d;

    *ret = (BatchCounts){0};
    if (dir < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!(d = fdopendir(dir))) {
        close(dir);
        return -errno;
    }
    while ((de = readdir(d)))
        if (task_id_valid(de->d_name))
            count_task(data_fd, de->d_name, depth, ret);
    closedir(d);
    return 0;
}

bool batch_sealed(json_t *batch, const BatchCounts *n)
{
    json_t *size = json_object_get(batch, "size");

    return json_is_true(json_object_get(batch, "closed")) ||
           (json_is_integer(size) && n->joined >= (unsigned)json_integer_value(size));
}

bool batch_finished(json_t *batch, const BatchCounts *n)
{
    return batch_sealed(batch, n) && n->unfinished == 0;
}

json_t *batch_view(json_t *batch, json_t *cb, const BatchCounts *n)
{
    json_t *counts = json_object(), *v;

    for (size_t i = 0; i < sizeof(state_names) / sizeof(state_names[0]); i++)
        json_object_set_new(counts, state_names[i], json_integer(n->by_state[i]));
    v = json_pack("{s:O, s:O?, s:O?, s:b, s:b, s:o, s:I, s:I, s:o, s:f, s:b, s:o, s:o}", "id",
                  json_object_get(batch, "id"), "context", json_object_get(batch, "context"),
                  "size", json_object_get(batch, "size"), "closed",
                  json_is_true(json_object_get(batch, "closed")), "sealed", batch_sealed(batch, n),
                  "created_at", view_time(json_integer_value(json_object_get(batch, "created_ns"))),
                  "total", (json_int_t)n->total, "joined", (json_int_t)n->joined, "counts", counts,
                  "progress", n->total ? n->percent_sum / n->total : 0.0, "finished",
                  batch_finished(batch, n), "finished_at",
                  view_time(json_integer_value(json_object_get(cb, "finished_ns"))), "callback",
                  view_callback(batch, cb));
    return v;
}
