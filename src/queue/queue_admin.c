/* queue_admin.c - what the queue tells and does for admins: draining, the workers' slots, the
 * history of finished attempts, and a check of its view against the folders.
 *
 * Draining is remembered in data/.draining, so it survives a restart. Each finished attempt is
 * appended to its job's history.json (written whole, atomically) and to data/history.jsonl, one
 * JSON line per attempt; that log is cut back to [queue] history_max lines when it holds twice
 * as many (rewritten atomically), so it stays bounded and survives restarts. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue.h"
#include "taskmill/clock.h"
#include "taskmill/files.h"
#include "taskmill/log.h"

#define DRAIN_FILE   ".draining"
#define HISTORY_FILE "history.jsonl"

bool admin_draining_saved(Queue *q)
{
    return faccessat(q->data_fd, DRAIN_FILE, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

int admin_drain(Queue *q, bool on)
{
    int r = on ? file_write_atomic(q->data_fd, DRAIN_FILE, "", 0)
               : (unlinkat(q->data_fd, DRAIN_FILE, 0) < 0 && errno != ENOENT ? -errno : 0);

    if (r < 0)
        return r;
    if (q->draining != on)
        log_notice("%s", on ? "draining: no new work starts; running tasks finish"
                            : "resumed: work starts again");
    q->draining = on;
    sched_dispatch(q);
    return 0;
}

/* --- the workers' slots --------------------------------------------------------------------------
 */

json_t *admin_workers(Queue *q)
{
    json_t *all = json_array(), *slot;
    size_t i;

    for (Peer *p = q->peers; p; p = p->next) {
        if (!p->slots)
            continue;
        json_array_foreach(p->slots, i, slot)
        {
            json_t *s = json_deep_copy(slot);
            if (!json_is_string(json_object_get(s, "host"))) /* a cluster node's names itself */
                json_object_set_new(s, "host", json_string(p->host));
            if (p->kinds)
                json_object_set(s, "kinds", p->kinds);
            if (q->draining &&
                !strcmp(json_string_value(json_object_get(s, "state")) ?: "", "idle"))
                json_object_set_new(s, "state", json_string("draining"));
            json_array_append_new(all, s);
        }
    }
    return all;
}

json_t *admin_held(Queue *q)
{
    json_t *why = NULL, *slot;
    unsigned held = 0;
    size_t i;

    for (Peer *p = q->peers; p; p = p->next)
        json_array_foreach(p->slots, i, slot)
        {
            json_t *reason = json_object_get(slot, "held_because");
            if (!json_is_string(reason))
                continue;
            held++;
            if (!why)
                why = reason;
        }
    return json_pack("{s:I, s:O?}", "held_slots", (json_int_t)held, "held_because", why);
}

/* --- the history of attempts -------------------------------------------------------------------
 */

static void history_job(Queue *q, Stage s, const char *id, json_t *attempt)
{
    json_t *h = NULL;
    int fd;

    if (jobdir_open(q->data_fd, s, id, &fd) < 0)
        return;
    if (json_read_at(fd, "history.json", &h) < 0 ||
        !json_is_array(json_object_get(h, "attempts"))) {
        json_decref(h);
        h = json_pack("{s:[]}", "attempts");
    }
    json_array_append(json_object_get(h, "attempts"), attempt);
    if (json_write_at(fd, "history.json", h) < 0)
        log_task(LOG_WARNING, id, "cannot write history.json");
    json_decref(h);
    close(fd);
}

/* Lines in the log now (counted once, at the first append). */
static size_t history_lines(Queue *q)
{
    char *buf = NULL;
    size_t len = 0;

    if (q->history_lines == (size_t)-1) {
        q->history_lines = 0;
        if (file_read_all(q->data_fd, HISTORY_FILE, 1 << 30, &buf, &len) == 0)
            for (size_t i = 0; i < len; i++)
                q->history_lines += buf[i] == '\n';
        free(buf);
    }
    return q->history_lines;
}

/* Once the log holds twice [queue] history_max lines, it keeps the last history_max. */
static void history_trim(Queue *q)
{
    size_t keep = (size_t)q->conf->history_max, len, n = 0;
    char *buf = NULL, *p;

    if (history_lines(q) < 2 * keep ||
        file_read_all(q->data_fd, HISTORY_FILE, 1 << 30, &buf, &len) < 0)
        return;
    for (p = buf + len; p > buf; p--)
        if (p[-1] == '\n' && n++ == keep)
            break;
    if (file_write_atomic(q->data_fd, HISTORY_FILE, p, len - (size_t)(p - buf)) == 0)
        q->history_lines = keep;
    free(buf);
}

void admin_history_add(Queue *q, Stage s, const char *id, json_t *attempt)
{
    json_t *line = json_copy(attempt);
    size_t lines = history_lines(q); /* counted before this line is added */
    char *text;
    int fd;

    history_job(q, s, id, attempt);
    json_object_set_new(line, "task_id", json_string(id));
    text = json_dumps(line, JSON_COMPACT);
    json_decref(line);
    fd = openat(q->data_fd, HISTORY_FILE, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd >= 0 && text) {
        /* A hint like the rest of the queue's memory: no fsync of every line. */
        if (fd_write_all(fd, text, strlen(text)) == 0 && fd_write_all(fd, "\n", 1) == 0)
            q->history_lines = lines + 1;
    }
    if (fd >= 0)
        close(fd);
    free(text);
    history_trim(q);
}

/* --- the check -----------------------------------------------------------------------------------
 */

typedef struct Check {
    Queue *q;
    Stage stage;
    json_t *strays;
    unsigned seen[_STAGE_MAX];
} Check;

static void stray(Check *c, const char *where, const char *why)
{
    json_array_append_new(c->strays, json_pack("{s:s, s:s}", "path", where, "problem", why));
}

static bool pending_known(Queue *q, const char *id)
{
    for (size_t i = 0; i < q->n_pending; i++)
        if (!strcmp(q->pending[i].id, id))
            return true;
    return false;
}

static bool running_known(Queue *q, const char *id)
{
    for (Running *r = q->running; r; r = r->next)
        if (!strcmp(r->id, id))
            return true;
    return false;
}

static int check_one(const char *name, void *userdata)
{
    Check *c = userdata;
    char where[128];

    snprintf(where, sizeof(where), "%s/%s", stage_dir(c->stage), name);
    if (!task_id_valid(name)) {
        if (!(c->stage == STAGE_REQUEST && !strncmp(name, ".tmp-", 5)))
            stray(c, where, "not a task id");
        return 0;
    }
    c->seen[c->stage]++;
    if (c->stage == STAGE_PENDING && !pending_known(c->q, name))
        stray(c, where, "in pending/ but not in the queue's list");
    else if (c->stage == STAGE_IN_PROGRESS && !running_known(c->q, name))
        stray(c, where, "in in_progress/ but no worker holds it");
    else if (c->stage == STAGE_CORRUPT)
        stray(c, where, "unreadable request.json: kept in corrupt/ for a person to look at");
    else if (c->stage == STAGE_TRASH)
        stray(c, where, "a deletion that did not finish");
    return 0;
}

json_t *admin_check(Queue *q)
{
    Check c = {.q = q, .strays = json_array()};
    struct stat st;
    char where[128];

    for (c.stage = 0; c.stage < _STAGE_MAX; c.stage++)
        jobdir_each_entry(q->data_fd, c.stage, check_one, &c);
    for (size_t i = 0; i < q->n_pending; i++) {
        snprintf(where, sizeof(where), "pending/%s", q->pending[i].id);
        if (fstatat(q->data_fd, where, &st, 0) < 0)
            stray(&c, where, "in the queue's list but not on disk");
    }
    for (Running *r = q->running; r; r = r->next) {
        snprintf(where, sizeof(where), "in_progress/%s", r->id);
        if (fstatat(q->data_fd, where, &st, 0) < 0)
            stray(&c, where, "a worker holds it but it is not on disk");
    }
    return json_pack("{s:o, s:{s:I, s:I, s:I, s:I, s:I}, s:b}", "strays", c.strays, "folders",
                     "received", (json_int_t)c.seen[STAGE_REQUEST], "pending",
                     (json_int_t)c.seen[STAGE_PENDING], "in_progress",
                     (json_int_t)c.seen[STAGE_IN_PROGRESS], "done", (json_int_t)c.seen[STAGE_DONE],
                     "failed", (json_int_t)c.seen[STAGE_FAILED], "consistent",
                     json_array_size(c.strays) == 0);
}
