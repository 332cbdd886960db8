/* client_wait.c - `taskmill status [ID]` and `taskmill wait ID`.
 *
 * status shows one task, or without an id this client's sync table (client_sync.c), else the
 * server's queue counts. wait polls once a second until the task is done (exit 0) or failed
 * (exit 1); a server that is away for a moment is waited for, not an error. */
#define _GNU_SOURCE
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client_sync.h"

#define WAIT_POLL_SECONDS 1

static int server_status_print(json_t *st)
{
    printf("waiting: %" JSON_INTEGER_FORMAT "\n",
           json_integer_value(json_object_get(st, "waiting")));
    printf("working: %" JSON_INTEGER_FORMAT "\n",
           json_integer_value(json_object_get(st, "working")));
    printf("done:    %" JSON_INTEGER_FORMAT "\n", json_integer_value(json_object_get(st, "done")));
    printf("failed:  %" JSON_INTEGER_FORMAT "\n",
           json_integer_value(json_object_get(st, "failed")));
    printf("workers: %" JSON_INTEGER_FORMAT " free of %" JSON_INTEGER_FORMAT "\n",
           json_integer_value(json_object_get(st, "free_workers")),
           json_integer_value(json_object_get(st, "max_workers")));
    return 0;
}

SyncOptions sync_options(const Client *cl, const Args *a)
{
    return (SyncOptions){.conf = &cl->conf,
                         .http = cl->api,
                         .server = cl->server,
                         .tty = cl->tty,
                         .dry_run = a->dry_run,
                         .wait = a->wait,
                         .json = cl->json};
}

int status_main(Client *cl, const Args *a)
{
    json_t *j = NULL;
    SyncOptions o = sync_options(cl, a);
    bool shown = false;
    int r;

    if (!a->pos) {
        r = sync_status_table(&o, &shown);
        if (shown)
            return r;
    }
    r = a->pos ? server_get_task(cl, a->pos, &j) : server_get(cl, "/v1/status", &j);

    if (r < 0)
        return CLIENT_EXIT_FAIL;
    if (cl->json)
        print_json(j);
    else if (a->pos)
        print_task(j);
    else
        server_status_print(j);
    json_decref(j);
    return CLIENT_EXIT_OK;
}

static bool task_finished(json_t *t)
{
    const char *state = jstr(t, "state");

    return !strcmp(state, "done") || !strcmp(state, "failed");
}

/* One look at the task: 1 when it has finished, 0 when not yet (or when the server is away for
 * a moment: a restart of the server is not the end of the task), -errno when waiting is
 * pointless (reported). *task holds the latest view. */
static int wait_poll(Client *cl, const char *path, json_t **task, bool *warned)
{
    long status = 0;
    json_t *j = NULL;
    char why[1024];
    int r = server_get_reply(cl, path, false, &status, &j);

    if (r < 0 || status >= 500) {
        if (r < 0)
            snprintf(why, sizeof(why), "GET %s: %s", path, api_strerror(cl->api));
        else
            server_reply_error(status, j, why, sizeof(why));
        if (!*warned)
            fprintf(stderr, "taskmill: %s (still waiting)\n", why);
        *warned = true;
        json_decref(j);
        return 0;
    }
    if (status != 200 || !json_is_object(j)) {
        r = server_report(status, j);
        json_decref(j);
        return r;
    }
    json_decref(*task);
    *task = j;
    return task_finished(j);
}

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void wait_show(const Client *cl, json_t *task)
{
    json_t *pct = json_object_get(json_object_get(task, "progress"), "percent");

    if (cl->tty && task)
        fprintf(stderr, "\r%s %.1f%%\033[K", jstr(task, "state"), json_number_value(pct));
}

static int wait_loop(Client *cl, const Args *a, const char *path, json_t **task)
{
    double deadline = now_seconds() + (double)a->timeout;
    bool warned = false;
    int r;

    while ((r = wait_poll(cl, path, task, &warned)) == 0) {
        wait_show(cl, *task);
        if (a->timeout >= 0 && now_seconds() >= deadline) {
            if (cl->tty)
                fputs("\r\033[K", stderr);
            fprintf(stderr, "taskmill: timeout: task %s is still %s after %ld s\n", a->pos,
                    *task ? jstr(*task, "state") : "unknown", a->timeout);
            return -ETIMEDOUT;
        }
        sleep(WAIT_POLL_SECONDS);
    }
    if (cl->tty)
        fputs("\r\033[K", stderr);
    return r < 0 ? r : 0;
}

int wait_main(Client *cl, const Args *a)
{
    char path[128];
    json_t *task = NULL;
    int r = server_task_path(path, sizeof(path), a->pos, "");

    if (r == 0)
        r = wait_loop(cl, a, path, &task);
    if (r == 0) {
        print_task_output(cl, task);
        r = strcmp(jstr(task, "state"), "done") ? CLIENT_EXIT_FAIL : CLIENT_EXIT_OK;
    } else {
        r = r == -ETIMEDOUT ? CLIENT_EXIT_TIMEOUT : CLIENT_EXIT_FAIL;
    }
    json_decref(task);
    return r;
}
