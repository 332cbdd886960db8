/* client_list.c - `taskmill list` (every page, following next_cursor) and `taskmill types`. */
#define _GNU_SOURCE
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int query_add(char **path, const char *key, const char *value)
{
    char *s;

    if (!value)
        return 0;
    if (asprintf(&s, "%s%c%s=%s", *path, strchr(*path, '?') ? '&' : '?', key, value) < 0)
        return -ENOMEM;
    free(*path);
    *path = s;
    return 0;
}

static int list_page(Client *cl, const Args *a, const char *cursor, json_t **ret)
{
    char *path = strdup("/v1/tasks"), *esc = cursor ? api_escape(cl->api, cursor) : NULL;
    char limit[32];
    int r = path && (esc || !cursor) ? 0 : -ENOMEM;

    snprintf(limit, sizeof(limit), "%ld", a->limit);
    if (r == 0)
        r = query_add(&path, "state", a->state);
    if (r == 0)
        r = query_add(&path, "limit", a->limit > 0 ? limit : NULL);
    if (r == 0)
        r = query_add(&path, "cursor", esc);
    if (r < 0)
        fprintf(stderr, "taskmill: out of memory\n");
    else
        r = server_get(cl, path, ret);
    free(path);
    free(esc);
    return r;
}

static void list_rows(json_t *tasks, bool header)
{
    size_t i;
    json_t *t;

    if (header)
        printf("%-36s  %-11s  %7s  %s\n", "ID", "STATE", "PERCENT", "FILE");
    json_array_foreach(tasks, i, t)
    {
        double pct = json_number_value(json_object_get(json_object_get(t, "progress"), "percent"));

        printf("%-36s  %-11s  %6.1f%%  %s\n", jstr(t, "id"), jstr(t, "state"), pct,
               jstr(t, "file_name"));
    }
}

/* Without --limit, follows next_cursor to the end; the JSON form is then one merged page. */
static int list_all(Client *cl, const Args *a, json_t *all)
{
    json_t *page = NULL, *tasks, *next;
    char *cursor = NULL;
    int r;

    while ((r = list_page(cl, a, cursor, &page)) == 0) {
        tasks = json_object_get(page, "tasks");
        next = json_object_get(page, "next_cursor");
        if (cl->json)
            json_array_extend(all, tasks);
        else
            list_rows(tasks, !cursor);
        if (a->limit > 0 || !json_is_string(next) ||
            (cursor && !strcmp(cursor, json_string_value(next)))) {
            if (cl->json && json_object_set(page, "tasks", all) == 0)
                print_json(page);
            break;
        }
        free(cursor);
        cursor = strdup(json_string_value(next));
        json_decref(page);
        page = NULL;
        if (!cursor)
            r = -ENOMEM;
    }
    json_decref(page);
    free(cursor);
    return r;
}

int list_main(Client *cl, const Args *a)
{
    json_t *all = json_array();
    int r;

    if (!all)
        return CLIENT_EXIT_FAIL;
    r = list_all(cl, a, all);
    json_decref(all);
    return r < 0 ? CLIENT_EXIT_FAIL : CLIENT_EXIT_OK;
}

static void param_print(const char *name, json_t *p)
{
    json_t *min = json_object_get(p, "minimum"), *max = json_object_get(p, "maximum");
    json_t *choices = json_object_get(p, "enum"), *dv = json_object_get(p, "default"), *v;
    char *def = dv ? json_dumps(dv, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    size_t i;

    printf("    %-8s %s", name, jstr(p, "type"));
    if (json_is_integer(min) && json_is_integer(max))
        printf(" %" JSON_INTEGER_FORMAT "..%" JSON_INTEGER_FORMAT, json_integer_value(min),
               json_integer_value(max));
    json_array_foreach(choices, i, v)
    {
        printf("%s%s", i ? "|" : " ", json_string_value(v) ? json_string_value(v) : "?");
    }
    printf("%s%s%s: %s\n", def ? " (default " : "", def ? def : "", def ? ")" : "",
           jstr(p, "description"));
    free(def);
}

static void type_print(json_t *type)
{
    json_t *params = json_object_get(type, "parameters"), *v;
    const char *key;
    size_t i;

    printf("%s (%s, input %s)\n    %s\n", jstr(type, "name"), jstr(type, "kind"),
           jstr(type, "input"), jstr(type, "description"));
    if (json_array_size(json_object_get(type, "extensions"))) {
        printf("    extensions:");
        json_array_foreach(json_object_get(type, "extensions"), i, v)
        {
            printf(" %s", json_string_value(v) ? json_string_value(v) : "?");
        }
        printf("\n");
    }
    printf("    timeout %llds, max_attempts %lld\n    parameters:%s\n",
           (long long)json_integer_value(json_object_get(type, "timeout")),
           (long long)json_integer_value(json_object_get(type, "max_attempts")),
           json_object_size(params) ? "" : " none");
    json_object_foreach(params, key, v)
    {
        param_print(key, v);
    }
}

int types_main(Client *cl, const Args *a)
{
    json_t *j = NULL, *type;
    size_t i;

    (void)a;
    if (server_get(cl, "/v1/task-types", &j) < 0)
        return CLIENT_EXIT_FAIL;
    if (cl->json) {
        print_json(j);
    } else {
        json_array_foreach(json_object_get(j, "task_types"), i, type)
        {
            type_print(type);
        }
    }
    json_decref(j);
    return CLIENT_EXIT_OK;
}
