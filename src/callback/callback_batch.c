/* callback_batch.c - noticing that a batch finished, and owing its callback.
 *
 * A batch finishes when it is sealed (closed, or as many tasks as its size joined) and every
 * task of it has ended. That is checked when one of its tasks ends (the queue's job.finished),
 * when rest closes it (the queue's batch.check), and for every unfinished batch when the
 * daemon starts or reconnects. The first check that sees it finished writes callback.json with
 * "finished": true (atomically); from then on the batch's callback, if it has one, is owed like
 * a task's, so it is delivered once whatever restarts happen in between. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "callback.h"
#include "taskmill/batch.h"
#include "taskmill/clock.h"
#include "taskmill/files.h"
#include "taskmill/log.h"

/* Owes the callback of a finished batch, unless it was delivered or given up. */
static void owe(Callback *cb, int fd, const char *id, json_t *batch)
{
    const char *url = json_string_value(json_object_get(batch, "callback_url"));
    const char *method = json_string_value(json_object_get(batch, "callback_method"));
    CallbackJob *j;
    int r;

    if (!url || !(j = calloc(1, sizeof(*j))))
        return;
    memcpy(j->id, id, sizeof(j->id));
    j->batch = true;
    j->url = strdup(url);
    j->method = method ? strdup(method) : NULL;
    r = j->url ? callback_record_load(fd, j) : -ENOMEM;
    if (r != 0) {
        if (r < 0)
            log_task(LOG_ERR, id, "cannot schedule the batch callback: %s", strerror(-r));
        jobs_free_one(j);
        return;
    }
    callback_owed(cb, j);
}

/* callback.json of a batch that just finished. */
static int record_finished(int fd, const char *id, json_t *batch)
{
    json_t *rec = json_pack("{s:b, s:I, s:O?, s:[], s:b, s:b, s:n}", "finished", 1, "finished_ns",
                            (json_int_t)now_ns(), "url", json_object_get(batch, "callback_url"),
                            "attempts", "delivered", 0, "gave_up", 0, "next_attempt_ns");
    int r = rec ? json_write_at(fd, "callback.json", rec) : -ENOMEM;

    json_decref(rec);
    if (r == 0)
        log_task(LOG_INFO, id, "batch finished");
    return r;
}

void batch_consider(Callback *cb, const char *id)
{
    json_t *batch = NULL, *rec = NULL;
    BatchCounts n;
    int fd, r;

    if (cb->batches_fd < 0 || jobs_find(cb, id) || batch_open(cb->batches_fd, id, &fd) < 0)
        return;
    r = batch_read(fd, &batch, &rec);
    if (r == 0 && !json_is_true(json_object_get(rec, "finished"))) {
        r = batch_count(cb->data_fd, fd, BATCH_STAGES, &n);
        if (r < 0 || !batch_finished(batch, &n) || (r = record_finished(fd, id, batch)) < 0)
            goto out;
    }
    if (r == 0)
        owe(cb, fd, id, batch);
out:
    if (r < 0)
        log_task(LOG_WARNING, id, "cannot check the batch: %s", strerror(-r));
    json_decref(batch);
    json_decref(rec);
    close(fd);
}

void batch_scan(Callback *cb)
{
    int dup_fd;
    struct dirent *de;
    DIR *d;

    if (cb->batches_fd < 0 ||
        (dup_fd = openat(cb->batches_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return;
    if (!(d = fdopendir(dup_fd))) {
        close(dup_fd);
        return;
    }
    while ((de = readdir(d)))
        if (task_id_valid(de->d_name))
            batch_consider(cb, de->d_name);
    closedir(d);
}

int batch_callback_body(Callback *cb, const char *id, json_t **ret)
{
    json_t *batch = NULL, *rec = NULL;
    BatchCounts n;
    int fd, r = cb->batches_fd < 0 ? -ENOENT : batch_open(cb->batches_fd, id, &fd);

    if (r < 0)
        return r;
    r = batch_read(fd, &batch, &rec);
    if (r == 0)
        r = batch_count(cb->data_fd, fd, BATCH_VIEWS, &n);
    if (r == 0)
        *ret = batch_view(batch, rec, &n);
    json_decref(batch);
    json_decref(rec);
    close(fd);
    return r;
}
