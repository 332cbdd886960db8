/* fuzz_names.c - libFuzzer target for the checks on client-supplied names (src/common/task.c).
 *
 * task_file_name_problem() guards every file name a client sends and task_id_valid() every id
 * before it reaches the filesystem. The input, NUL-terminated, is both. Beyond "no crash" this
 * checks what acceptance promises: an accepted file name is 1..255 bytes of valid UTF-8 (jansson
 * agrees, so it fits in request.json) with no '/', '\\', "..", or control byte, and every name
 * with those properties except "." is accepted; an id is accepted exactly when it is a canonical
 * lower-case UUID, and an accepted id is also an acceptable file name. A broken promise calls
 * abort() so that libFuzzer reports the input. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "taskmill/conf.h"
#include "taskmill/task.h"
#include "taskmill/tasktype.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The promise, written independently of task.c: UTF-8 validity is jansson's judgement. */
static bool name_is_plain(const char *name)
{
    size_t len = strlen(name);
    json_t *s;

    if (len == 0 || len > TASK_FILE_NAME_MAX || strchr(name, '/') || strchr(name, '\\') ||
        strstr(name, ".."))
        return false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return false;
        if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] < 0xa0) /* C1 controls, U+0080..U+009F */
            return false;
    }
    s = json_stringn(name, len); /* NULL when name is not valid UTF-8 */
    if (!s)
        return false;
    json_decref(s);
    return true;
}

static void check_name(const char *name)
{
    bool accepted = task_file_name_problem(name) == NULL;

    if (accepted != (name_is_plain(name) && strcmp(name, ".") != 0))
        abort();
    static Conf c;
    static bool loaded;
    char err[256];

    if (!loaded && conf_load(NULL, &c, err, sizeof(err)) < 0)
        abort();
    loaded = true;
    if (accepted)
        (void)tasktype_accepts_name(tasktype_find(&c, TASKTYPE_X265), name);
}

static void check_id(const char *s)
{
    char back[TASK_ID_LEN + 1] = "";
    uuid_t u;
    bool canonical = false;

    if (strlen(s) == TASK_ID_LEN && uuid_parse(s, u) == 0) {
        uuid_unparse_lower(u, back);
        canonical = strcmp(back, s) == 0;
    }
    if (task_id_valid(s) != canonical)
        abort();
    if (canonical && task_file_name_problem(s))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);

    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    check_name(s);
    check_id(s);
    free(s);
    return 0;
}
