/* kind_exec.c - the exec kind: run a program the admin names, with the task's parameters as
 * argv elements (run by taskmill-convert, src/convert/convert_exec.c).
 *
 *   command = /usr/bin/sha256sum {input}      argv template: never a shell; each element is
 *                                             split at spaces when the config is read, and a
 *                                             placeholder never splits or joins elements
 *   result = stdout | file:{output}[.ext]     what GET /v1/tasks/ID/result returns
 *   retry_exit_codes = 75 111                 exit codes that mean "try again later"
 *   max_stdout_bytes = 1048576                stdout kept (the rest is dropped)
 * Placeholders: a parameter {NAME}, {input} (the uploaded file, when the type takes one),
 * {output} (a file the program may write), {task_id}, {params} (all parameters as JSON). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "taskmill/conf.h"
#include "taskmill/task.h"
#include "taskmill/tasktype.h"
#include "taskmill/text.h"

static const char *const exec_vars[] = {"input", "output", "task_id", NULL};

static const char *exec_key(TaskType *t, const char *key, const char *value)
{
    char *end;

    if (!strcmp(key, "command")) {
        char **argv;
        if (tasktype_split_command(value, &argv) < 0)
            return "an empty command or an unterminated quote";
        strv_free(t->argv);
        t->argv = argv;
        if (argv[0][0] != '/' || strchr(argv[0], '{'))
            return "the program must be a fixed absolute path (no PATH search, no placeholder)";
        return NULL;
    }
    if (!strcmp(key, "result")) {
        if (strcmp(value, "stdout") && strncmp(value, "file:", 5))
            return "must be stdout or file:NAME (e.g. file:{output}.png)";
        free(t->result);
        t->result = strdup(value);
        return NULL;
    }
    if (!strcmp(key, "retry_exit_codes")) {
        const char *p = value;
        free(t->retry_codes);
        t->retry_codes = NULL;
        t->n_retry_codes = 0;
        while (*p) {
            long v = strtol(p, &end, 10);
            int *codes;
            if (end == p || v < 1 || v > 255)
                return "a list of exit codes 1..255, separated by spaces";
            if (!(codes = realloc(t->retry_codes, (t->n_retry_codes + 1) * sizeof(int))))
                return "out of memory";
            t->retry_codes = codes;
            t->retry_codes[t->n_retry_codes++] = (int)v;
            for (p = end; *p == ' ' || *p == ','; p++)
                ;
        }
        return NULL;
    }
    if (!strcmp(key, "max_stdout_bytes")) {
        unsigned long long v = strtoull(value, &end, 10);
        if (end == value || *end || v < 1 || v > (1ULL << 32))
            return "must be 1 to 4294967296";
        t->max_stdout_bytes = v;
        return NULL;
    }
    return TASKKIND_NOT_MINE;
}

static const char *exec_finish(TaskType *t, const Conf *c)
{
    const char *why, *name;

    (void)c;
    if (!t->argv)
        return "command = /absolute/program {placeholders} is required";
    for (char **a = t->argv; *a; a++) {
        if ((why = tasktype_template_check(t, *a, exec_vars)))
            return why;
        if (strstr(*a, "{input}") && t->input == TYPE_INPUT_NONE)
            return "{input} needs input = required or optional";
    }
    if (!t->result)
        t->result = strdup("stdout");
    if (!strncmp(t->result, "file:", 5)) {
        name = t->result + 5;
        if ((why = tasktype_template_check(t, name, (const char *const[]){"output", NULL})))
            return why;
        if (strncmp(name, "{output}", 8) || strchr(name, '/') || strstr(name, ".."))
            return "result = file:{output}[.ext]: the file the program writes at {output}";
    }
    if (!t->max_stdout_bytes)
        t->max_stdout_bytes = 1 << 20;
    return NULL;
}

static json_t *exec_describe(const TaskType *t)
{
    return json_pack("{s:s}", "result", !strcmp(t->result, "stdout") ? "stdout" : "file");
}

const TaskKind kind_exec = {
    .name = "exec",
    .runner = "convert",
    .default_timeout = 3600,
    .key = exec_key,
    .finish = exec_finish,
    .describe = exec_describe,
};
