/* tasktype.c - the table of task types and the checks on their parameters.
 *
 * Types come from the config: the built-in convert_video_to_libx265 (its crf and preset default
 * to the [convert] section) and every [type.NAME] section. Keys common to all kinds are read
 * here (kind, description, input, param.*, timeout, max_attempts, max_parallel); the kind reads
 * its own (command for exec, url for http). Parameters are typed; unknown parameters are
 * refused, not ignored, so a client's typo never silently runs with the wrong value. */
#include "taskmill/tasktype.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "taskmill/conf.h"
#include "taskmill/text.h"

const char TASKKIND_NOT_MINE[] = "unknown key";

static const TaskKind *const kinds[] = {&kind_video, &kind_exec, &kind_http};

const TaskKind *tasktype_kind(const char *name)
{
    for (size_t i = 0; name && i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (!strcmp(kinds[i]->name, name))
            return kinds[i];
    return NULL;
}

const char *const tasktype_x265_presets[] = {
    "ultrafast", "superfast", "veryfast", "faster",  "fast", "medium",
    "slow",      "slower",    "veryslow", "placebo", NULL,
};

bool tasktype_preset_known(const char *p)
{
    for (const char *const *v = tasktype_x265_presets; *v; v++)
        if (!strcmp(*v, p))
            return true;
    return false;
}

/* --- type names and the table in the Conf --------------------------------------------------- */

static bool name_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return false;
    return true;
}

/* The table a config holds. Readers (rest's request threads) load the pointer once; a reload
 * (SIGHUP) swaps in a new table and keeps the old one until the program ends, so a reader never
 * sees a table being freed. */
struct TypeTable {
    TaskType *types;
    size_t n;
    struct TypeTable *retired; /* tables swapped out by reloads */
};

static TypeTable *table_of(const Conf *c)
{
    return __atomic_load_n(&c->type_table, __ATOMIC_ACQUIRE);
}

const TaskType *tasktype_find(const Conf *c, const char *name)
{
    TypeTable *tt = table_of(c);

    for (size_t i = 0; tt && name && i < tt->n; i++)
        if (!strcmp(tt->types[i].name, name))
            return &tt->types[i];
    return NULL;
}

static TaskType *type_get(Conf *c, const char *name)
{
    TaskType *t = (TaskType *)tasktype_find(c, name), *v;
    TypeTable *tt = c->type_table;

    if (t)
        return t;
    if (!tt && !(tt = c->type_table = calloc(1, sizeof(*tt))))
        return NULL;
    v = realloc(tt->types, (tt->n + 1) * sizeof(*v));
    if (!v)
        return NULL;
    tt->types = v;
    t = &tt->types[tt->n++];
    *t = (TaskType){.name = strdup(name), .input = TYPE_INPUT_NONE};
    return t->name ? t : NULL;
}

size_t tasktype_count(const Conf *c)
{
    return table_of(c) ? table_of(c)->n : 0;
}

const TaskType *tasktype_at(const Conf *c, size_t i)
{
    TypeTable *tt = table_of(c);

    return tt && i < tt->n ? &tt->types[i] : NULL;
}

void tasktype_conf_swap(Conf *live, Conf *fresh)
{
    TypeTable *old = live->type_table;

    fresh->type_table->retired = old;
    __atomic_store_n(&live->type_table, fresh->type_table, __ATOMIC_RELEASE);
    fresh->type_table = NULL;
}

static void param_free(TypeParam *p)
{
    free(p->name);
    strv_free(p->choices);
    json_decref(p->def);
}

static void table_free(TypeTable *tt)
{
    while (tt) {
        TypeTable *next = tt->retired;
        for (size_t i = 0; i < tt->n; i++) {
            TaskType *t = &tt->types[i];
            free(t->name);
            free(t->description);
            for (size_t k = 0; k < t->n_params; k++)
                param_free(&t->params[k]);
            free(t->params);
            strv_free(t->argv);
            free(t->retry_codes);
            free(t->result);
            free(t->url);
            free(t->method);
            free(t->body);
            strv_free(t->headers);
            free(t->allow_hosts);
        }
        free(tt->types);
        free(tt);
        tt = next;
    }
}

void tasktype_conf_free(Conf *c)
{
    table_free(c->type_table);
    c->type_table = NULL;
}

/* --- typed parameters ------------------------------------------------------------------------- */

static bool parse_i64(const char *s, const char *end, int64_t *ret)
{
    char buf[32], *e;
    size_t n = (size_t)(end - s);
    long long v;

    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    v = strtoll(buf, &e, 10);
    if (errno || *e)
        return false;
    *ret = v;
    return true;
}

static const char *split_choices(TypeParam *p, const char *list)
{
    char *copy = strdup(list), *save = NULL;
    size_t n = 0;

    if (!copy)
        return "out of memory";
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char **v = realloc(p->choices, (n + 2) * sizeof(*v));
        if (v) { /* the old array is gone once realloc succeeded, whatever follows */
            p->choices = v;
            p->choices[n] = NULL;
        }
        if (!v || !utf8_valid(t) || !*t) {
            free(copy);
            return "enum: needs a list of names, like enum:a,b";
        }
        p->choices[n++] = strdup(t);
        p->choices[n] = NULL;
    }
    free(copy);
    return n ? NULL : "enum: needs a list of names, like enum:a,b";
}

static const char *param_spec(TypeParam *p, const char *spec)
{
    const char *dots;

    if (!strncmp(spec, "int:", 4)) {
        p->kind = PARAM_INT;
        dots = strstr(spec + 4, "..");
        if (!dots || !parse_i64(spec + 4, dots, &p->min) ||
            !parse_i64(dots + 2, dots + 2 + strlen(dots + 2), &p->max) || p->min > p->max)
            return "int: needs a range, like int:0..100";
        return NULL;
    }
    if (!strncmp(spec, "enum:", 5)) {
        p->kind = PARAM_ENUM;
        return split_choices(p, spec + 5);
    }
    if (!strncmp(spec, "string:", 7)) {
        int64_t n;
        p->kind = PARAM_STRING;
        if (!parse_i64(spec + 7, spec + strlen(spec), &n) || n < 1 || n > 65536)
            return "string: needs a maximum length, like string:200";
        p->max_len = (size_t)n;
        return NULL;
    }
    if (!strcmp(spec, "bool")) {
        p->kind = PARAM_BOOL;
        return NULL;
    }
    return "a parameter is int:MIN..MAX, enum:a,b, string:MAXLEN or bool";
}

static int param_check(const TypeParam *p, json_t *v, char *err, size_t errlen);

/* "SPEC" or "SPEC default VALUE"; the default is checked like a client's value. */
static const char *param_define(TaskType *t, const char *name, const char *value)
{
    char spec[512], err[256];
    const char *def = strstr(value, " default "), *why;
    TypeParam *p, *v;
    size_t n = def ? (size_t)(def - value) : strlen(value);

    if (!name_valid(name))
        return "a parameter name is 1 to 64 of a-z, 0-9, _ and -";
    for (size_t i = 0; i < t->n_params; i++)
        if (!strcmp(t->params[i].name, name))
            return "this parameter is defined twice";
    if (n >= sizeof(spec))
        return "too long";
    v = realloc(t->params, (t->n_params + 1) * sizeof(*v));
    if (!v)
        return "out of memory";
    t->params = v;
    p = &t->params[t->n_params++];
    *p = (TypeParam){.name = strdup(name)};
    memcpy(spec, value, n);
    spec[n] = '\0';
    if ((why = param_spec(p, spec)))
        return why;
    if (!def)
        return NULL;
    def += strlen(" default ");
    if (p->kind == PARAM_STRING || p->kind == PARAM_ENUM)
        p->def = json_string(def);
    else if (p->kind == PARAM_BOOL)
        p->def = !strcmp(def, "yes") || !strcmp(def, "true")   ? json_true()
                 : !strcmp(def, "no") || !strcmp(def, "false") ? json_false()
                                                               : NULL;
    else {
        int64_t i;
        p->def = parse_i64(def, def + strlen(def), &i) ? json_integer(i) : NULL;
    }
    if (!p->def || param_check(p, p->def, err, sizeof(err)) < 0)
        return "the default is not a valid value of the parameter";
    return NULL;
}

static int param_check(const TypeParam *p, json_t *v, char *err, size_t errlen)
{
    switch (p->kind) {
    case PARAM_INT:
        if (json_is_integer(v) && json_integer_value(v) >= p->min &&
            json_integer_value(v) <= p->max)
            return 0;
        snprintf(err, errlen, "params.%s must be an integer from %lld to %lld", p->name,
                 (long long)p->min, (long long)p->max);
        return -EINVAL;
    case PARAM_BOOL:
        if (json_is_boolean(v))
            return 0;
        snprintf(err, errlen, "params.%s must be true or false", p->name);
        return -EINVAL;
    case PARAM_STRING:
        if (json_is_string(v) && json_string_length(v) <= p->max_len &&
            strlen(json_string_value(v)) == json_string_length(v) &&
            !text_has_control(json_string_value(v)))
            return 0;
        snprintf(err, errlen, "params.%s must be one line of text of at most %zu bytes", p->name,
                 p->max_len);
        return -EINVAL;
    case PARAM_ENUM:
        for (char **c = p->choices; json_is_string(v) && *c; c++)
            if (!strcmp(*c, json_string_value(v)))
                return 0;
        snprintf(err, errlen, "params.%s must be one of the values GET /v1/task-types lists",
                 p->name);
        return -EINVAL;
    }
    return -EINVAL;
}

int tasktype_params(const TaskType *tt, json_t *client, json_t **ret, char *err, size_t errlen)
{
    json_t *out = json_object(), *v;
    const char *key;

    if (client && !json_is_object(client)) {
        snprintf(err, errlen, "params must be a JSON object");
        json_decref(out);
        return -EINVAL;
    }
    json_object_foreach(client, key, v)
    {
        const TypeParam *p = NULL;
        for (size_t i = 0; i < tt->n_params && !p; i++)
            if (!strcmp(tt->params[i].name, key))
                p = &tt->params[i];
        if (!p) {
            snprintf(err, errlen, "params.%.64s is not a parameter of this task type", key);
            utf8_clip(err); /* %.64s may have cut a character in two */
            json_decref(out);
            return -EINVAL;
        }
        if (param_check(p, v, err, errlen) < 0) {
            json_decref(out);
            return -EINVAL;
        }
        json_object_set(out, key, v);
    }
    for (size_t i = 0; i < tt->n_params; i++) {
        if (json_object_get(out, tt->params[i].name))
            continue;
        if (!tt->params[i].def) {
            snprintf(err, errlen, "params.%s is required", tt->params[i].name);
            json_decref(out);
            return -EINVAL;
        }
        json_object_set(out, tt->params[i].name, tt->params[i].def);
    }
    *ret = out;
    return 0;
}

/* --- the [type.NAME] sections ----------------------------------------------------------------- */

static const char *int_key(const char *value, int lo, int hi, int *ret)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(value, &end, 10);
    if (errno || end == value || *end || v < lo || v > hi)
        return "must be a whole number in range";
    *ret = (int)v;
    return NULL;
}

static const char *common_key(TaskType *t, const char *key, const char *value)
{
    static const char *const inputs[] = {"none", "optional", "required"};

    if (!strcmp(key, "kind")) {
        const TaskKind *k = tasktype_kind(value);
        if (!k)
            return "must be exec, http or video";
        if (t->kind && t->kind != k)
            return "a type has one kind";
        t->kind = k;
        return NULL;
    }
    if (!strcmp(key, "description")) {
        free(t->description);
        t->description = strdup(value);
        return utf8_valid(value) ? NULL : "must be UTF-8 text";
    }
    if (!strcmp(key, "input")) {
        for (int i = 0; i < 3; i++)
            if (!strcmp(value, inputs[i])) {
                t->input = (TypeInput)i;
                return NULL;
            }
        return "must be none, optional or required";
    }
    if (!strncmp(key, "param.", 6))
        return param_define(t, key + 6, value);
    if (!strcmp(key, "timeout"))
        return int_key(value, 1, 7 * 86400, &t->timeout);
    if (!strcmp(key, "max_attempts"))
        return int_key(value, 1, 100, &t->max_attempts);
    if (!strcmp(key, "max_parallel"))
        return int_key(value, 0, 1024, &t->max_parallel);
    return TASKKIND_NOT_MINE;
}

const char *tasktype_conf_key(Conf *c, const char *name, const char *key, const char *value)
{
    TaskType *t;
    const char *why;

    if (!name_valid(name))
        return "a type name is 1 to 64 of a-z, 0-9, _ and -";
    if (!(t = type_get(c, name)))
        return "out of memory";
    if (!t->kind && !strcmp(name, TASKTYPE_X265))
        t->kind = &kind_video; /* the built-in type's section only sets its limits */
    why = common_key(t, key, value);
    if (why != TASKKIND_NOT_MINE)
        return why;
    if (!t->kind)
        return "put 'kind = ...' first in the section";
    why = t->kind->key(t, key, value);
    return why == TASKKIND_NOT_MINE ? "unknown key for this kind" : why;
}

/* The built-in type, unless the config defines one of that name (which must be kind video). */
static int add_builtin(Conf *c)
{
    TaskType *t = (TaskType *)tasktype_find(c, TASKTYPE_X265);

    if (t && t->kind != &kind_video)
        return -EINVAL;
    if (!t && !(t = type_get(c, TASKTYPE_X265)))
        return -ENOMEM;
    t->kind = &kind_video;
    t->builtin = true;
    return 0;
}

int tasktype_conf_finish(Conf *c, char *err, size_t errlen)
{
    const char *why;

    if (add_builtin(c) < 0) {
        snprintf(err, errlen, "[type.%s] is the built-in video type: its kind is video",
                 TASKTYPE_X265);
        return -EINVAL;
    }
    for (size_t i = 0; i < c->type_table->n; i++) {
        TaskType *t = &c->type_table->types[i];
        if (!t->kind)
            why = "kind = exec, http or video is required";
        else
            why = t->kind->finish(t, c);
        if (!t->timeout && t->kind)
            t->timeout = t->kind->default_timeout;
        if (!t->max_attempts)
            t->max_attempts = c->max_attempts; /* [queue] max_attempts */
        if (why) {
            snprintf(err, errlen, "[type.%s]: %s", t->name, why);
            return -EINVAL;
        }
    }
    return 0;
}

int tasktype_split_command(const char *s, char ***ret)
{
    char **v = NULL, *word = malloc(strlen(s) + 1);
    size_t n = 0, w;

    if (!word)
        return -ENOMEM;
    while (*s) {
        char quote = 0;
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            break;
        for (w = 0; *s && (quote || (*s != ' ' && *s != '\t')); s++) {
            if (!quote && (*s == '\'' || *s == '"'))
                quote = *s;
            else if (quote && *s == quote)
                quote = 0;
            else
                word[w++] = *s;
        }
        if (quote) {
            strv_free(v);
            free(word);
            return -EINVAL;
        }
        char **nv = realloc(v, (n + 2) * sizeof(*nv));
        if (!nv) {
            strv_free(v);
            free(word);
            return -ENOMEM;
        }
        v = nv;
        v[n++] = strndup(word, w);
        v[n] = NULL;
    }
    free(word);
    *ret = v;
    return v ? 0 : -EINVAL;
}

/* --- templates -------------------------------------------------------------------------------- */

/* A parameter's value as text: strings as they are, numbers and booleans spelled out. */
static char *value_text(json_t *v)
{
    if (json_is_string(v))
        return strdup(json_string_value(v));
    return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
}

static char *lookup(const char *name, json_t *params, const char *const *vars)
{
    for (const char *const *v = vars; v && v[0]; v += 2)
        if (!strcmp(v[0], name))
            return strdup(v[1]);
    if (!strcmp(name, "params"))
        return json_dumps(params ? params : json_object(), JSON_COMPACT | JSON_SORT_KEYS);
    return json_object_get(params, name) ? value_text(json_object_get(params, name)) : NULL;
}

static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = (*len + n + 1) * 2;
        char *b = realloc(*buf, c);
        if (!b)
            return -ENOMEM;
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

static int append_url(char **buf, size_t *len, size_t *cap, const char *s)
{
    static const char safe[] = "-._~";
    int r = 0;

    for (; *s && r == 0; s++) {
        unsigned char ch = (unsigned char)*s;
        char enc[4];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            strchr(safe, ch))
            r = append(buf, len, cap, (const char *)s, 1);
        else {
            snprintf(enc, sizeof(enc), "%%%02X", ch);
            r = append(buf, len, cap, enc, 3);
        }
    }
    return r;
}

int tasktype_expand(const char *tmpl, json_t *params, const char *const *vars, TemplateMode mode,
                    char **ret)
{
    char *buf = NULL, name[80];
    size_t len = 0, cap = 0;
    int r = append(&buf, &len, &cap, "", 0);

    for (const char *p = tmpl; *p && r == 0;) {
        const char *close;
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            r = append(&buf, &len, &cap, p, 1);
            p += 2;
            continue;
        }
        if (*p != '{' || !(close = strchr(p, '}')) || (size_t)(close - p - 1) >= sizeof(name)) {
            r = append(&buf, &len, &cap, p, 1);
            p++;
            continue;
        }
        memcpy(name, p + 1, (size_t)(close - p - 1));
        name[close - p - 1] = '\0';
        char *v = lookup(name, params, vars);
        if (!v) {
            r = -ENOENT;
            break;
        }
        r = mode == TEMPLATE_URL ? append_url(&buf, &len, &cap, v)
                                 : append(&buf, &len, &cap, v, strlen(v));
        free(v);
        p = close + 1;
    }
    if (r < 0) {
        free(buf);
        return r;
    }
    *ret = buf;
    return 0;
}

const char *tasktype_template_check(const TaskType *t, const char *tmpl, const char *const *vars)
{
    static char why[160];

    for (const char *p = tmpl; *p; p++) {
        const char *close;
        bool known = false;
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            p++;
            continue;
        }
        if (*p != '{' || !(close = strchr(p, '}')))
            continue;
        size_t n = (size_t)(close - p - 1);
        for (const char *const *v = vars; v && *v && !known; v++)
            known = strlen(*v) == n && !strncmp(*v, p + 1, n);
        for (size_t i = 0; i < t->n_params && !known; i++)
            known = strlen(t->params[i].name) == n && !strncmp(t->params[i].name, p + 1, n);
        known = known || (n == 6 && !strncmp(p + 1, "params", 6));
        if (!known) {
            snprintf(why, sizeof(why), "{%.*s} names no parameter of this type",
                     (int)(n < 64 ? n : 64), p + 1);
            return why;
        }
        p = close;
    }
    return NULL;
}

/* --- GET /v1/task-types ----------------------------------------------------------------------- */

static json_t *param_json(const TypeParam *p)
{
    static const char *const types[] = {"integer", "string", "string", "boolean"};
    json_t *j = json_pack("{s:s, s:b}", "type", types[p->kind], "required", !p->def);

    if (p->kind == PARAM_INT) {
        json_object_set_new(j, "minimum", json_integer(p->min));
        json_object_set_new(j, "maximum", json_integer(p->max));
    } else if (p->kind == PARAM_STRING) {
        json_object_set_new(j, "maxLength", json_integer((json_int_t)p->max_len));
    } else if (p->kind == PARAM_ENUM) {
        json_t *e = json_array();
        for (char **c = p->choices; *c; c++)
            json_array_append_new(e, json_string(*c));
        json_object_set_new(j, "enum", e);
    }
    if (p->def)
        json_object_set(j, "default", p->def);
    return j;
}

json_t *tasktype_list_json(const Conf *c)
{
    static const char *const inputs[] = {"none", "optional", "required"};
    json_t *list = json_array();

    for (size_t i = 0; i < tasktype_count(c); i++) {
        const TaskType *t = tasktype_at(c, i);
        json_t *params = json_object(), *extra;
        for (size_t k = 0; k < t->n_params; k++)
            json_object_set_new(params, t->params[k].name, param_json(&t->params[k]));
        json_t *e =
            json_pack("{s:s, s:s, s:s, s:s, s:o, s:i, s:i, s:i}", "name", t->name, "kind",
                      t->kind->name, "description", t->description ? t->description : "", "input",
                      inputs[t->input], "parameters", params, "timeout", t->timeout, "max_attempts",
                      t->max_attempts, "max_parallel", t->max_parallel);
        if (t->kind->describe && (extra = t->kind->describe(t))) {
            json_object_update(e, extra);
            json_decref(extra);
        }
        json_array_append_new(list, e);
    }
    return json_pack("{s:o}", "task_types", list);
}

int tasktype_accepts_name(const TaskType *tt, const char *file_name)
{
    const char *dot = strrchr(file_name, '.');

    if (!tt->extensions)
        return 0;
    if (!dot || dot == file_name)
        return -EINVAL;
    for (const char *const *e = tt->extensions; *e; e++)
        if (!strcasecmp(dot + 1, *e))
            return 0;
    return -EINVAL;
}
