/* ctl.c - taskmillctl, the admin's tool on the server: what the daemons are doing and the few
 * things an admin does to the queue (retry, cancel, purge, drain, resume, check).
 *
 * It works only through the REST API, as an admin token ([ctl] token in the server's config,
 * or $TASKMILL_TOKEN): the queue daemon stays the only process that moves a job, so nothing an
 * admin types can race it. The server is the config's [rest] listen (or --server). Every
 * command prints a short table or summary, or the server's JSON with --json; the exit status is
 * 0 on success, 1 when the server refused or did not answer, 2 on a usage error. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../client/client.h"
#include "taskmill/clock.h"
#include "taskmill/daemon.h"
#include "taskmill/task.h"

typedef struct Ctl {
    Client cl;
    long limit;
    int64_t older_than_s;
    const char *state, *context, *batch;
    bool dry_run;
} Ctl;

/* --- asking the server ----------------------------------------------------------------------- */

static int call(Ctl *c, const char *method, const char *path, long want, json_t **ret)
{
    return server_call(&c->cl, method, path, want, ret);
}

/* The query string of list: state, context, batch, limit, cursor (each only when set). */
static char *list_path(Ctl *c, const char *state, const char *cursor)
{
    const char *names[] = {"state", "context", "batch", "cursor"};
    const char *values[] = {state, c->context, c->batch, cursor};
    char *path = strdup("/v1/tasks?limit=1000"), *next;

    for (size_t i = 0; path && i < ARRAY_SIZE(names); i++) {
        char *v = values[i] ? api_escape(c->cl.api, values[i]) : NULL;
        if (values[i] && (!v || asprintf(&next, "%s&%s=%s", path, names[i], v) < 0))
            next = NULL;
        else if (!values[i])
            next = strdup(path);
        free(v);
        free(path);
        path = next;
    }
    return path;
}

/* Every task of the list (all pages), into all. */
static int list_all(Ctl *c, const char *state, json_t *all)
{
    char *cursor = NULL, *path;
    json_t *page;
    int r = 0;

    do {
        path = list_path(c, state, cursor);
        free(cursor);
        cursor = NULL;
        if (!path || (r = call(c, "GET", path, 200, &page)) < 0) {
            free(path);
            return path ? r : -ENOMEM;
        }
        free(path);
        json_array_extend(all, json_object_get(page, "tasks"));
        if (json_is_string(json_object_get(page, "next_cursor")))
            cursor = strdup(json_string_value(json_object_get(page, "next_cursor")));
        json_decref(page);
    } while (cursor && (c->limit < 0 || (long)json_array_size(all) < c->limit));
    free(cursor);
    return 0;
}

/* --- the commands ---------------------------------------------------------------------------- */

static int cmd_status(Ctl *c, const char *arg)
{
    json_t *j, *v;
    const char *key;

    (void)arg;
    if (call(c, "GET", "/v1/status", 200, &j) < 0)
        return CLIENT_EXIT_FAIL;
    if (c->cl.json) {
        print_json(j);
    } else {
        json_object_foreach(j, key, v)
        {
            char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            printf("%-14s %s\n", key, text ? text : "?");
            free(text);
        }
    }
    json_decref(j);
    return CLIENT_EXIT_OK;
}

static int cmd_workers(Ctl *c, const char *arg)
{
    json_t *j, *w;
    size_t i;
    char rss[32];

    (void)arg;
    if (call(c, "GET", "/v1/workers", 200, &j) < 0)
        return CLIENT_EXIT_FAIL;
    if (c->cl.json) {
        print_json(j);
        json_decref(j);
        return CLIENT_EXIT_OK;
    }
    printf("%-10s %4s %-8s %7s %-36s %-16s %6s %10s %8s  %s\n", "HOST", "SLOT", "STATE", "PID",
           "TASK", "TYPE", "DONE", "RSS", "CPU", "SINCE / HELD BECAUSE");
    json_array_foreach(json_object_get(j, "workers"), i, w)
    {
        json_t *rssv = json_object_get(w, "rss_bytes");
        printf("%-10.10s %4lld %-8s %7lld %-36s %-16.16s %5.1f%% %10s %7.1fs  %s\n",
               jstr(w, "host"), (long long)json_integer_value(json_object_get(w, "slot")),
               jstr(w, "state"), (long long)json_integer_value(json_object_get(w, "pid")),
               jstr(w, "task_id"), jstr(w, "task_type"),
               json_number_value(json_object_get(w, "progress")),
               json_is_integer(rssv) ? print_size(json_integer_value(rssv), rss, sizeof(rss)) : "-",
               json_number_value(json_object_get(w, "cpu_seconds")),
               json_is_string(json_object_get(w, "held_because")) ? jstr(w, "held_because")
                                                                  : jstr(w, "since"));
    }
    if (json_is_true(json_object_get(j, "draining")))
        printf("draining: no new work starts\n");
    json_decref(j);
    return CLIENT_EXIT_OK;
}

static int cmd_history(Ctl *c, const char *arg)
{
    char path[64], rss[32];
    json_t *j, *a;
    size_t i;

    (void)arg;
    snprintf(path, sizeof(path), "/v1/workers/history?limit=%ld", c->limit > 0 ? c->limit : 20);
    if (call(c, "GET", path, 200, &j) < 0)
        return CLIENT_EXIT_FAIL;
    if (c->cl.json) {
        print_json(j);
        json_decref(j);
        return CLIENT_EXIT_OK;
    }
    printf("%-27s %-36s %-16s %-8s %8s %8s %10s  %s\n", "FINISHED", "TASK", "TYPE", "OUTCOME",
           "WALL", "CPU", "MAX RSS", "HOST/SLOT");
    json_array_foreach(json_object_get(j, "attempts"), i, a)
    {
        json_t *rssv = json_object_get(a, "max_rss_bytes");
        printf("%-27s %-36s %-16.16s %-8s %7.2fs %7.2fs %10s  %s/%lld\n", jstr(a, "finished_at"),
               jstr(a, "task_id"), jstr(a, "task_type"), jstr(a, "outcome"),
               json_number_value(json_object_get(a, "wall_seconds")),
               json_number_value(json_object_get(a, "cpu_seconds")),
               json_is_integer(rssv) ? print_size(json_integer_value(rssv), rss, sizeof(rss)) : "-",
               jstr(a, "host"), (long long)json_integer_value(json_object_get(a, "slot")));
    }
    json_decref(j);
    return CLIENT_EXIT_OK;
}

static int cmd_list(Ctl *c, const char *arg)
{
    json_t *all = json_array(), *t;
    size_t i;

    (void)arg;
    if (list_all(c, c->state, all) < 0) {
        json_decref(all);
        return CLIENT_EXIT_FAIL;
    }
    if (c->cl.json) {
        print_json(all);
    } else {
        printf("%-36s %-11s %-16s %5s %-20s  %s\n", "ID", "STATE", "TYPE", "PRIO", "CREATED",
               "FILE / CONTEXT");
        json_array_foreach(all, i, t)
        {
            if (c->limit > 0 && (long)i >= c->limit)
                break;
            printf("%-36s %-11s %-16.16s %5lld %-20.20s  %s\n", jstr(t, "id"), jstr(t, "state"),
                   jstr(t, "task_type"),
                   (long long)json_integer_value(json_object_get(t, "priority")),
                   jstr(t, "created_at"),
                   json_is_string(json_object_get(t, "file_name")) ? jstr(t, "file_name")
                                                                   : jstr(t, "context"));
        }
    }
    json_decref(all);
    return CLIENT_EXIT_OK;
}

static int task_call(Ctl *c, const char *method, const char *id, const char *suffix, long want,
                     json_t **ret)
{
    return server_task_call(&c->cl, method, id, suffix, want, ret);
}

static int cmd_show(Ctl *c, const char *id)
{
    json_t *t, *a;
    size_t i;

    if (task_call(c, "GET", id, "", 200, &t) < 0)
        return CLIENT_EXIT_FAIL;
    if (c->cl.json) {
        print_json(t);
        json_decref(t);
        return CLIENT_EXIT_OK;
    }
    print_task(t);
    json_array_foreach(json_object_get(t, "history"), i, a)
    {
        printf("attempt %zu: %s on %s slot %lld, %.2fs wall, %.2fs cpu, finished %s\n", i + 1,
               jstr(a, "outcome"), jstr(a, "host"),
               (long long)json_integer_value(json_object_get(a, "slot")),
               json_number_value(json_object_get(a, "wall_seconds")),
               json_number_value(json_object_get(a, "cpu_seconds")), jstr(a, "finished_at"));
    }
    json_decref(t);
    return CLIENT_EXIT_OK;
}

static int cmd_retry(Ctl *c, const char *id)
{
    json_t *t;

    if (task_call(c, "POST", id, "/retry", 200, &t) < 0)
        return CLIENT_EXIT_FAIL;
    printf("%s: %s again\n", id, jstr(t, "state"));
    json_decref(t);
    return CLIENT_EXIT_OK;
}

static int cmd_cancel(Ctl *c, const char *id)
{
    if (task_call(c, "DELETE", id, "", 204, NULL) < 0)
        return CLIENT_EXIT_FAIL;
    printf("%s: deleted\n", id);
    return CLIENT_EXIT_OK;
}

/* Ended tasks (done, failed; or --state) that finished more than --older-than ago. */
static int cmd_purge(Ctl *c, const char *arg)
{
    static const char *const ended[] = {"done", "failed"};
    int64_t cut = now_ns() - c->older_than_s * 1000000000LL, at;
    unsigned removed = 0, errors = 0;
    json_t *all = json_array(), *t;
    size_t i;

    (void)arg;
    for (size_t s = 0; s < ARRAY_SIZE(ended); s++)
        if ((!c->state || !strcmp(c->state, ended[s])) && list_all(c, ended[s], all) < 0) {
            json_decref(all);
            return CLIENT_EXIT_FAIL;
        }
    json_array_foreach(all, i, t)
    {
        if (parse_time(jstr(t, "finished_at"), &at) < 0 || at >= cut)
            continue;
        if (c->dry_run) {
            printf("would delete %s (%s, finished %s)\n", jstr(t, "id"), jstr(t, "state"),
                   jstr(t, "finished_at"));
            removed++;
            continue;
        }
        if (task_call(c, "DELETE", jstr(t, "id"), "", 204, NULL) < 0)
            errors++;
        else
            removed++;
    }
    json_decref(all);
    printf("%s %u tasks%s\n", c->dry_run ? "would delete" : "deleted", removed,
           errors ? " (some could not be deleted)" : "");
    return errors ? CLIENT_EXIT_FAIL : CLIENT_EXIT_OK;
}

static int drain(Ctl *c, bool on)
{
    json_t *j;

    if (call(c, "POST", on ? "/v1/admin/drain" : "/v1/admin/resume", 200, &j) < 0)
        return CLIENT_EXIT_FAIL;
    printf("%s\n", json_is_true(json_object_get(j, "draining"))
                       ? "draining: no new work starts; running tasks finish"
                       : "resumed: work starts again");
    json_decref(j);
    return CLIENT_EXIT_OK;
}

static int cmd_drain(Ctl *c, const char *arg)
{
    (void)arg;
    return drain(c, true);
}

static int cmd_resume(Ctl *c, const char *arg)
{
    (void)arg;
    return drain(c, false);
}

static int cmd_check(Ctl *c, const char *arg)
{
    json_t *j, *s;
    size_t i;
    bool ok;

    (void)arg;
    if (call(c, "GET", "/v1/admin/check", 200, &j) < 0)
        return CLIENT_EXIT_FAIL;
    ok = json_is_true(json_object_get(j, "consistent"));
    if (c->cl.json) {
        print_json(j);
    } else {
        json_array_foreach(json_object_get(j, "strays"), i, s)
        {
            printf("%s: %s\n", jstr(s, "path"), jstr(s, "problem"));
        }
        printf("%s\n", ok ? "consistent: the folders and the queue agree" : "not consistent");
    }
    json_decref(j);
    return ok ? CLIENT_EXIT_OK : CLIENT_EXIT_FAIL;
}

/* --- arguments ------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    bool takes_id;
    int (*run)(Ctl *c, const char *arg);
    const char *help;
} commands[] = {
    {"status", false, cmd_status, "the queue's counts and whether it drains"},
    {"workers", false, cmd_workers, "every worker slot: what it runs, or why it is held"},
    {"history", false, cmd_history, "the last finished attempts (--limit N)"},
    {"list", false, cmd_list, "tasks (--state, --context, --batch, --limit)"},
    {"show", true, cmd_show, "one task, with its attempts"},
    {"retry", true, cmd_retry, "puts a failed task back, with the input kept on the server"},
    {"cancel", true, cmd_cancel, "deletes a task (stops it if it runs)"},
    {"purge", false, cmd_purge, "deletes ended tasks --older-than DURATION (--state, --dry-run)"},
    {"drain", false, cmd_drain, "no new work starts; running tasks finish"},
    {"resume", false, cmd_resume, "work starts again"},
    {"check", false, cmd_check, "the folders against the queue's view; strays are listed"},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: taskmillctl [--config FILE] [--server URL] [--json] COMMAND [ARGS]\n\n");
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
        fprintf(f, "  %-8s %-3s %s\n", commands[i].name, commands[i].takes_id ? "ID" : "",
                commands[i].help);
    fprintf(f,
            "\nIt asks the REST API as an admin: [ctl] token in the config, or $TASKMILL_TOKEN.\n");
}

/* 30, 30s, 15m, 12h, 7d. */
static int parse_duration(const char *s, int64_t *ret)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    int64_t mult = !*end               ? 1
                   : !strcmp(end, "s") ? 1
                   : !strcmp(end, "m") ? 60
                   : !strcmp(end, "h") ? 3600
                   : !strcmp(end, "d") ? 86400
                                       : 0;

    if (end == s || v < 0 || !mult || v > INT64_MAX / mult / 1000000000LL)
        return -EINVAL;
    *ret = v * mult;
    return 0;
}

static int parse_args(Ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"server", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},         {"limit", required_argument, NULL, 'l'},
        {"state", required_argument, NULL, 'S'},  {"context", required_argument, NULL, 'C'},
        {"batch", required_argument, NULL, 'B'},  {"older-than", required_argument, NULL, 'o'},
        {"dry-run", no_argument, NULL, 'n'},      {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},      {0},
    };
    char *end;
    int o;

    while ((o = getopt_long(argc, argv, "c:s:jh", opts, NULL)) != -1) {
        if (o == 'c')
            c->cl.config_path = optarg;
        else if (o == 's')
            c->cl.server_arg = optarg;
        else if (o == 'j')
            c->cl.json = true;
        else if (o == 'l' && ((c->limit = strtol(optarg, &end, 10)) < 1 || *end))
            return fprintf(stderr, "taskmillctl: --limit is a positive number\n"), -EINVAL;
        else if (o == 'S')
            c->state = optarg;
        else if (o == 'C')
            c->context = optarg;
        else if (o == 'B')
            c->batch = optarg;
        else if (o == 'o' && parse_duration(optarg, &c->older_than_s) < 0)
            return fprintf(stderr, "taskmillctl: --older-than is like 30d, 12h, 90m, 3600\n"),
                   -EINVAL;
        else if (o == 'n')
            c->dry_run = true;
        else if (o == 'h')
            return usage(stdout), 1;
        else if (o == 'V')
            return print_version("taskmillctl"), 1;
        else if (o == '?')
            return -EINVAL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    Ctl c = {.limit = -1, .older_than_s = -1};
    const char *token;
    size_t i;
    int r = parse_args(&c, argc, argv);

    if (r != 0)
        return r > 0 ? CLIENT_EXIT_OK : CLIENT_EXIT_USAGE;
    for (i = 0; optind < argc && i < ARRAY_SIZE(commands); i++)
        if (!strcmp(argv[optind], commands[i].name))
            break;
    if (optind >= argc || i == ARRAY_SIZE(commands) ||
        argc - optind != (commands[i].takes_id ? 2 : 1)) {
        usage(stderr);
        return CLIENT_EXIT_USAGE;
    }
    if (commands[i].run == cmd_purge && c.older_than_s < 0) {
        fprintf(stderr, "taskmillctl: purge needs --older-than DURATION\n");
        return CLIENT_EXIT_USAGE;
    }
    if (server_connect(&c.cl, true) < 0)
        return CLIENT_EXIT_FAIL;
    token = getenv("TASKMILL_TOKEN");
    if (!(token && *token))
        token = c.cl.conf.ctl_token;
    if (token && api_set_token(c.cl.api, token) < 0) {
        server_close(&c.cl);
        return CLIENT_EXIT_FAIL;
    }
    r = commands[i].run(&c, commands[i].takes_id ? argv[optind + 1] : NULL);
    server_close(&c.cl);
    return r;
}
