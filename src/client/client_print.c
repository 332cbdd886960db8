/* client_print.c - how the taskmill client shows tasks on stdout: a short summary, or the
 * server's JSON with --json. */
#define _GNU_SOURCE
#include "client.h"

#include <stdio.h>
#include <string.h>

const char *jstr(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s ? s : "-";
}

void print_json(json_t *j)
{
    json_dumpf(j, stdout, JSON_INDENT(2));
    putchar('\n');
}

const char *print_size(json_int_t n, char *buf, size_t len)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    size_t u = 0;

    if (n < 1024) {
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT " B", n);
        return buf;
    }
    for (v /= 1024; v >= 1024 && u + 1 < ARRAY_SIZE(units); u++)
        v /= 1024;
    snprintf(buf, len, "%.1f %s", v, units[u]);
    return buf;
}

static void progress_print(json_t *progress)
{
    json_t *fps = json_object_get(progress, "fps"), *eta = json_object_get(progress, "eta_seconds");

    printf(" %.1f%%", json_number_value(json_object_get(progress, "percent")));
    if (json_is_number(fps))
        printf(", %.1f fps", json_number_value(fps));
    if (json_is_number(eta))
        printf(", eta %.0f s", json_number_value(eta));
}

void print_task(json_t *t)
{
    json_t *result = json_object_get(t, "result"), *error = json_object_get(t, "error");
    char size[32];

    json_t *last = json_object_get(t, "last_error");

    printf("id:      %s\n", jstr(t, "id"));
    printf("type:    %s\n", jstr(t, "task_type"));
    printf("state:   %s", jstr(t, "state"));
    if (!strcmp(jstr(t, "state"), "in_progress"))
        progress_print(json_object_get(t, "progress"));
    if (json_is_string(json_object_get(t, "next_attempt_at")))
        printf(" (next attempt %s)", jstr(t, "next_attempt_at"));
    else if (!strcmp(jstr(t, "state"), "scheduled"))
        printf(" (runs at %s)", jstr(t, "run_at"));
    if (json_is_string(json_object_get(t, "file_name")))
        printf("\nfile:    %s (%s)", jstr(t, "file_name"),
               print_size(json_integer_value(json_object_get(t, "size")), size, sizeof(size)));
    printf("\n");
    if (json_is_string(json_object_get(t, "context")))
        printf("context: %s\n", jstr(t, "context"));
    if (json_is_string(json_object_get(t, "batch")))
        printf("batch:   %s\n", jstr(t, "batch"));
    if (json_integer_value(json_object_get(t, "attempts")) > 1 || json_is_object(last))
        printf("attempts: %lld%s%s%s%s\n",
               (long long)json_integer_value(json_object_get(t, "attempts")),
               json_is_object(last) ? ", last error " : "",
               json_is_object(last) ? jstr(last, "code") : "", json_is_object(last) ? ": " : "",
               json_is_object(last) ? jstr(last, "message") : "");
    if (json_is_object(result))
        printf("result:  %s (%s) sha256 %s\n", jstr(result, "file_name"),
               print_size(json_integer_value(json_object_get(result, "size")), size, sizeof(size)),
               jstr(result, "sha256"));
    if (json_is_object(error))
        printf("error:   %s: %s\n", jstr(error, "code"), jstr(error, "message"));
}

void print_task_output(const Client *cl, json_t *t)
{
    if (cl->json)
        print_json(t);
    else
        print_task(t);
}
