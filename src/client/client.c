/* client.c - taskmill, the command-line client of the taskmill REST API: its arguments.
 *
 * main() parses the global options, then one subcommand from a table (name, arguments, the
 * options it takes, handler); every argument is checked, task ids with task_id_valid, before the
 * config is read or the network touched. Each command lives in its own file (client_submit.c,
 * client_wait.c, client_fetch.c, client_list.c, client_sync.c); client_server.c finds the server
 * and asks it. Commands print a short summary, or the server's JSON with --json. Exit codes: 0 ok,
 * 1 the server refused (its "code: message" on stderr), no answer, a failed task or a bad download,
 * 2 bad arguments, 3 wait --timeout ran out. */
#define _GNU_SOURCE
#include "client.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "taskmill/conf.h"
#include "taskmill/daemon.h"
#include "taskmill/task.h"

/* The options of the subcommands; a command lists the ones it takes as a mask. */
typedef enum ArgKind {
    ARG_PRIORITY,
    ARG_CRF,
    ARG_PRESET,
    ARG_CALLBACK,
    ARG_TYPE,
    ARG_TIMEOUT,
    ARG_OUTPUT,
    ARG_STATE,
    ARG_LIMIT,
    ARG_WAIT,
    ARG_DRY_RUN,
    ARG_PARAM,
    ARG_CONTEXT,
    ARG_BATCH,
    ARG_AT,
    ARG_DELAY,
} ArgKind;
#define OPT_BASE 0x100
#define A(kind)  (1u << ARG_##kind)

typedef enum PosKind { POS_NONE, POS_FILE, POS_FILE_OPTIONAL, POS_ID, POS_ID_OPTIONAL } PosKind;

typedef struct Command {
    const char *name, *synopsis, *summary;
    unsigned opts;
    PosKind pos;
    int (*run)(Client *cl, const Args *a);
    bool local; /* reads this client's own config: [client], the state file */
} Command;

static const char *const task_states[] = {"received",    "scheduled", "pending",
                                          "in_progress", "done",      "failed"};

/* ---- arguments ---- */

static const Command commands[] = {
    {"submit",
     "[FILE] [--type T] [--param NAME=VALUE]... [--priority N|high|normal|low] [--crf N] "
     "[--preset P] [--callback URL] [--context TEXT] [--batch ID] [--at TIME | --delay S]",
     "make a task and print its id: upload FILE, or without FILE a task of a type that takes "
     "no file",
     A(PRIORITY) | A(CRF) | A(PRESET) | A(CALLBACK) | A(TYPE) | A(PARAM) | A(CONTEXT) | A(BATCH) |
         A(AT) | A(DELAY),
     POS_FILE_OPTIONAL, submit_main, false},
    {"status", "[ID]",
     "show a task; without ID, this client's sync tasks (else the server's queue counts)", 0,
     POS_ID_OPTIONAL, status_main, true},
    {"wait", "ID [--timeout S]", "poll until the task is done (exit 0) or failed (exit 1)",
     A(TIMEOUT), POS_ID, wait_main, false},
    {"fetch", "ID [-o PATH]", "download the result (resumable), check its sha256", A(OUTPUT),
     POS_ID, fetch_main, false},
    {"delete", "ID", "delete a task and its files", 0, POS_ID, delete_main, false},
    {"retry", "ID", "put a failed task back, with the input the server kept", 0, POS_ID, retry_main,
     false},
    {"list", "[--state S] [--limit N]", "list tasks, all of them unless --limit",
     A(STATE) | A(LIMIT), POS_NONE, list_main, false},
    {"types", "", "list the task types the server knows", 0, POS_NONE, types_main, false},
    {"sync", "[--wait] [--dry-run]",
     "send the new videos of the [client] folders, fetch the results (docs/client.md)",
     A(WAIT) | A(DRY_RUN), POS_NONE, sync_main, true},
};

static const struct option command_options[] = {
    {"priority", required_argument, NULL, OPT_BASE + ARG_PRIORITY},
    {"crf", required_argument, NULL, OPT_BASE + ARG_CRF},
    {"preset", required_argument, NULL, OPT_BASE + ARG_PRESET},
    {"callback", required_argument, NULL, OPT_BASE + ARG_CALLBACK},
    {"type", required_argument, NULL, OPT_BASE + ARG_TYPE},
    {"timeout", required_argument, NULL, OPT_BASE + ARG_TIMEOUT},
    {"output", required_argument, NULL, 'o'},
    {"state", required_argument, NULL, OPT_BASE + ARG_STATE},
    {"limit", required_argument, NULL, OPT_BASE + ARG_LIMIT},
    {"wait", no_argument, NULL, OPT_BASE + ARG_WAIT},
    {"dry-run", no_argument, NULL, OPT_BASE + ARG_DRY_RUN},
    {"param", required_argument, NULL, OPT_BASE + ARG_PARAM},
    {"context", required_argument, NULL, OPT_BASE + ARG_CONTEXT},
    {"batch", required_argument, NULL, OPT_BASE + ARG_BATCH},
    {"at", required_argument, NULL, OPT_BASE + ARG_AT},
    {"delay", required_argument, NULL, OPT_BASE + ARG_DELAY},
    {"json", no_argument, NULL, 'j'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: taskmill [--config FILE] [--server URL] [--json] COMMAND [ARGS]\n\n"
               "Commands:\n");
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
        fprintf(f, "  %s%s%s\n      %s\n", commands[i].name, *commands[i].synopsis ? " " : "",
                commands[i].synopsis, commands[i].summary);
    fprintf(f,
            "\nOptions:\n"
            "  -c, --config FILE  configuration file (default %s, if it exists)\n"
            "  -s, --server URL   server URL (default $TASKMILL_SERVER, else the config's\n"
            "                     [client] server, else http:// and its [rest] listen)\n"
            "  -j, --json         print the server's JSON instead of a summary\n"
            "  -h, --help         show this help\n"
            "  -V, --version      show the version\n\n"
            "Exit status: 0 ok, 1 error or failed task, 2 bad arguments, 3 wait timed out.\n"
            "sync exits 0 when it did its work (failed tasks are recorded in its state), also\n"
            "when another run holds its lock; 1 when the server cannot be reached.\n",
            CONF_DEFAULT_PATH);
}

/* problem NULL: asked for help (stdout); "": getopt has said what is wrong. */
static int command_usage(const Command *cmd, const char *problem)
{
    FILE *f = problem ? stderr : stdout;

    if (problem && *problem)
        fprintf(f, "taskmill %s: %s\n", cmd->name, problem);
    fprintf(f, "Usage: taskmill [--json] %s%s%s\n%s\n", cmd->name, *cmd->synopsis ? " " : "",
            cmd->synopsis, cmd->summary);
    return problem ? -EINVAL : 1;
}

static const char *option_misplaced(ArgKind kind, char *buf, size_t len)
{
    for (const struct option *o = command_options; o->name; o++)
        if (o->val == (kind == ARG_OUTPUT ? 'o' : OPT_BASE + (int)kind))
            snprintf(buf, len, "--%s does not apply to this command", o->name);
    return buf;
}

static bool parse_long(const char *s, long lo, long hi, long *ret)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *ret = v;
    return true;
}

static bool state_valid(const char *s)
{
    for (size_t i = 0; i < ARRAY_SIZE(task_states); i++)
        if (!strcmp(s, task_states[i]))
            return true;
    return false;
}

/* --param NAME=VALUE: VALUE is taken as JSON when it is (a number, true, an object...), else
 * as a string. */
static const char *param_add(Args *a, const char *v)
{
    const char *eq = strchr(v, '=');
    json_t *value;
    char *name;

    if (!eq || eq == v)
        return "--param takes NAME=VALUE";
    if (!a->params && !(a->params = json_object()))
        return "out of memory";
    value = json_loads(eq + 1, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    if (!value || json_is_null(value)) {
        json_decref(value);
        value = json_string(eq + 1);
    }
    name = strndup(v, (size_t)(eq - v));
    if (!name || !value || json_object_set_new(a->params, name, value) < 0) {
        free(name);
        return "--param: the name or value is not UTF-8";
    }
    free(name);
    return NULL;
}

/* Stores one option's value; NULL, or what is wrong with it. */
static const char *arg_set(Args *a, ArgKind kind, const char *v)
{
    switch (kind) {
    case ARG_PRIORITY: {
        int prio;
        if (task_priority_parse(v, &prio) < 0)
            return "--priority takes an integer from 0 to 1000, or high, normal, low";
        a->priority = prio;
        return NULL;
    }
    case ARG_PARAM:
        return param_add(a, v);
    case ARG_CONTEXT:
        a->context = v;
        return NULL;
    case ARG_BATCH:
        a->batch = v;
        return task_id_valid(v) ? NULL : "--batch takes a batch id (a lower-case UUID)";
    case ARG_AT:
        a->at = v;
        return *v ? NULL : "--at is empty";
    case ARG_DELAY:
        return parse_long(v, 0, 366L * 86400, &a->delay) ? NULL
                                                         : "--delay takes a number of seconds";
    case ARG_CRF:
        return parse_long(v, 0, 51, &a->crf) ? NULL : "--crf takes an integer from 0 to 51";
    case ARG_TIMEOUT:
        return parse_long(v, 0, INT_MAX, &a->timeout) ? NULL
                                                      : "--timeout takes a number of seconds";
    case ARG_LIMIT:
        return parse_long(v, 1, INT_MAX, &a->limit) ? NULL : "--limit takes a positive integer";
    case ARG_STATE:
        a->state = v;
        return state_valid(v) ? NULL
                              : "--state takes received, scheduled, pending, in_progress, done or "
                                "failed";
    case ARG_PRESET:
        a->preset = v;
        return *v ? NULL : "--preset is empty";
    case ARG_CALLBACK:
        a->callback = v;
        return *v ? NULL : "--callback is empty";
    case ARG_TYPE:
        a->type = v;
        return *v ? NULL : "--type is empty";
    case ARG_OUTPUT:
        a->output = v;
        return *v ? NULL : "-o is empty";
    case ARG_WAIT:
        a->wait = true;
        return NULL;
    case ARG_DRY_RUN:
        a->dry_run = true;
        return NULL;
    }
    return "unknown option";
}

static const char *pos_check(const Command *cmd, int left, char **rest, Args *a)
{
    bool need = cmd->pos == POS_FILE || cmd->pos == POS_ID;
    bool file = cmd->pos == POS_FILE || cmd->pos == POS_FILE_OPTIONAL;

    if (left > (cmd->pos == POS_NONE ? 0 : 1))
        return "too many arguments";
    if (left == 0)
        return need ? (cmd->pos == POS_FILE ? "FILE is missing" : "ID is missing") : NULL;
    a->pos = rest[0];
    if (!file && !task_id_valid(a->pos))
        return "ID must be a task id (a lower-case UUID)";
    return NULL;
}

/* 0: run the command; 1: help was printed; -EINVAL: bad arguments (reported). argv[0] is the
 * command's name. */
static int command_options_parse(const Command *cmd, int argc, char **argv, Client *cl, Args *a)
{
    char why[64];
    const char *problem;
    int c;

    optind = 0; /* glibc: start a fresh scan */
    while ((c = getopt_long(argc, argv, "o:jh", command_options, NULL)) != -1) {
        ArgKind kind;

        if (c == 'j') {
            cl->json = true;
            continue;
        }
        if (c == 'h')
            return command_usage(cmd, NULL);
        if (c == '?')
            return command_usage(cmd, "");
        kind = c == 'o' ? ARG_OUTPUT : (ArgKind)(c - OPT_BASE);
        if (!(cmd->opts & (1u << kind)))
            return command_usage(cmd, option_misplaced(kind, why, sizeof(why)));
        problem = arg_set(a, kind, optarg);
        if (problem)
            return command_usage(cmd, problem);
    }
    problem = pos_check(cmd, argc - optind, argv + optind, a);
    return problem ? command_usage(cmd, problem) : 0;
}

/* argv[0] becomes "taskmill submit" while getopt runs, so that its messages name the command. */
static int command_parse(const Command *cmd, int argc, char **argv, Client *cl, Args *a)
{
    char prog[64], *saved = argv[0];
    int r;

    *a = (Args){.priority = -1, .crf = -1, .timeout = -1, .limit = -1, .delay = -1};
    snprintf(prog, sizeof(prog), "taskmill %s", cmd->name);
    argv[0] = prog;
    r = command_options_parse(cmd, argc, argv, cl, a);
    argv[0] = saved;
    return r;
}

/* 0: go on; 1: help or version printed; -EINVAL: bad arguments (reported). */
static int global_parse(int argc, char **argv, Client *cl)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"server", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},         {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},      {NULL, 0, NULL, 0},
    };
    int c;

    while ((c = getopt_long(argc, argv, "+c:s:jhV", opts, NULL)) != -1) {
        if (c == 'c')
            cl->config_path = optarg;
        else if (c == 's')
            cl->server_arg = optarg;
        else if (c == 'j')
            cl->json = true;
        else if (c == 'h')
            return usage(stdout), 1;
        else if (c == 'V')
            return print_version("taskmill"), 1;
        else
            return usage(stderr), -EINVAL;
    }
    if (optind < argc)
        return 0;
    fprintf(stderr, "taskmill: a command is missing\n");
    return usage(stderr), -EINVAL;
}

static const Command *command_find(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
        if (!strcmp(commands[i].name, name))
            return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    static char prog[] = "taskmill"; /* getopt's messages say "taskmill: ..." */
    Client cl = {.tty = isatty(STDERR_FILENO)};
    const Command *cmd;
    Args a;
    int r;

    argv[0] = prog;
    r = global_parse(argc, argv, &cl);
    if (r != 0)
        return r < 0 ? CLIENT_EXIT_USAGE : CLIENT_EXIT_OK;
    cmd = command_find(argv[optind]);
    if (!cmd) {
        fprintf(stderr, "taskmill: unknown command '%s'\n", argv[optind]);
        usage(stderr);
        return CLIENT_EXIT_USAGE;
    }
    r = command_parse(cmd, argc - optind, argv + optind, &cl, &a);
    if (r != 0)
        return r < 0 ? CLIENT_EXIT_USAGE : CLIENT_EXIT_OK;
    r = server_connect(&cl, cmd->local) < 0 ? CLIENT_EXIT_FAIL : cmd->run(&cl, &a);
    server_close(&cl);
    json_decref(a.params);
    return r;
}
