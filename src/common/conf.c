/* conf.c - loads taskmill.conf with inih into a Conf.
 *
 * The keys are one table: section, name, type, bounds, and where the value goes. A bad value,
 * an unknown key or a malformed line stops the load with "FILE:LINE: [section] key: reason".
 * Built-in defaults apply to every key the file leaves out. */
#define _GNU_SOURCE
#include "taskmill/conf.h"

#include <errno.h>
#include <ini.h>
#include <sched.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "taskmill/net.h"
#include "taskmill/tasktype.h"
#include "taskmill/text.h"

typedef enum {
    KEY_STR,
    KEY_INT,
    KEY_U64,
    KEY_BOOL,
    KEY_LEVEL,
    KEY_PRESET,
    KEY_LIST,
    KEY_OUTPUT,
    KEY_DOUBLE,
    KEY_LOADSRC
} KeyKind;

typedef struct ConfKey {
    const char *section, *name;
    KeyKind kind;
    int64_t min, max;
    size_t offset;
} ConfKey;

#define K(sec, nm, kind, lo, hi, field)                                                            \
    {                                                                                              \
        sec, nm, kind, lo, hi, offsetof(Conf, field)                                               \
    }
static const ConfKey conf_keys[] = {
    K("paths", "root", KEY_STR, 0, 0, root),
    K("paths", "runtime_dir", KEY_STR, 0, 0, runtime_dir),
    K("rest", "listen", KEY_STR, 0, 0, listen),
    K("rest", "threads", KEY_INT, 1, 64, rest_threads),
    K("rest", "max_upload_bytes", KEY_U64, 1, INT64_MAX, max_upload_bytes),
    K("rest", "connection_timeout", KEY_INT, 1, 3600, connection_timeout),
    K("rest", "header_timeout", KEY_INT, 1, 3600, header_timeout),
    K("rest", "tokens_file", KEY_STR, 0, 0, tokens_file),
    K("rest", "tls_cert", KEY_STR, 0, 0, tls_cert),
    K("rest", "tls_key", KEY_STR, 0, 0, tls_key),
    K("rest", "max_connections", KEY_INT, 1, 100000, max_connections),
    K("rest", "max_connections_per_ip", KEY_INT, 1, 100000, max_connections_per_ip),
    K("rest", "max_header_bytes", KEY_INT, 4096, 1048576, max_header_bytes),
    K("rest", "min_free_bytes", KEY_U64, 0, INT64_MAX, min_free_bytes),
    K("rest", "allow_open", KEY_BOOL, 0, 1, allow_open),
    K("rest", "max_tasks_per_token", KEY_INT, 1, 10000000, max_tasks_per_token),
    K("rest", "max_bytes_per_token", KEY_U64, 0, INT64_MAX, max_bytes_per_token),
    K("convert", "workers", KEY_INT, 0, 64, workers),
    K("convert", "crf", KEY_INT, 0, 51, crf),
    K("convert", "preset", KEY_PRESET, 0, 0, preset),
    K("convert", "threads", KEY_INT, 0, 256, threads),
    K("convert", "keep_input", KEY_BOOL, 0, 1, keep_input),
    K("convert", "max_attempts", KEY_INT, 1, 100, max_attempts),
    K("convert", "stall_timeout", KEY_INT, 5, 86400, stall_timeout),
    K("convert", "max_memory_bytes", KEY_U64, 0, INT64_MAX, max_memory_bytes),
    K("convert", "max_output_bytes", KEY_U64, 0, INT64_MAX, max_output_bytes),
    K("convert", "max_cpu_seconds", KEY_INT, 0, 10000000, max_cpu_seconds),
    K("convert", "max_processes", KEY_INT, 0, 1000000, max_processes),
    K("convert", "max_open_files", KEY_INT, 0, 1000000, max_open_files),
    K("convert", "load_source", KEY_LOADSRC, 0, 0, load_source),
    K("convert", "load_medium", KEY_DOUBLE, 0, 1000, load_medium),
    K("convert", "load_high", KEY_DOUBLE, 0, 1000, load_high),
    K("convert", "parallel_low", KEY_INT, -1, 64, parallel_low),
    K("convert", "parallel_medium", KEY_INT, -1, 64, parallel_medium),
    K("convert", "parallel_high", KEY_INT, -1, 64, parallel_high),
    K("convert", "cooldown", KEY_INT, 0, 86400, cooldown),
    K("convert", "max_width", KEY_INT, 16, 65536, max_width),
    K("convert", "max_height", KEY_INT, 16, 65536, max_height),
    K("convert", "max_streams", KEY_INT, 1, 1024, max_streams),
    K("convert", "max_duration", KEY_INT, 1, 10000000, max_duration),
    K("queue", "result_ttl", KEY_INT, 0, INT32_MAX, result_ttl),
    K("queue", "keep_failed_input", KEY_BOOL, 0, 1, keep_failed_input),
    K("queue", "retry_backoff", KEY_INT, 1, 86400, retry_backoff),
    K("queue", "history_max", KEY_INT, 10, 10000000, history_max),
    K("callback", "max_attempts", KEY_INT, 1, 1000, callback_max_attempts),
    K("callback", "timeout", KEY_INT, 1, 600, callback_timeout),
    K("callback", "backoff", KEY_INT, 1, 3600, callback_backoff),
    K("callback", "allow_networks", KEY_STR, 0, 0, callback_allow),
    K("callback", "secret", KEY_STR, 0, 0, callback_secret),
    K("callback", "http_workers", KEY_INT, 1, 256, http_workers),
    K("log", "level", KEY_LEVEL, 0, 0, log_level),
    K("client", "server", KEY_STR, 0, 0, client_server),
    K("client", "token", KEY_STR, 0, 0, client_token),
    K("client", "folder", KEY_LIST, 0, 0, client_folders),
    K("client", "include", KEY_STR, 0, 0, client_include),
    K("client", "exclude", KEY_STR, 0, 0, client_exclude),
    K("client", "state_dir", KEY_STR, 0, 0, client_state_dir),
    K("client", "output", KEY_OUTPUT, 0, 0, client_output),
    K("client", "output_dir", KEY_STR, 0, 0, client_output_dir),
    K("client", "suffix", KEY_STR, 0, 0, client_suffix),
    K("client", "settle_seconds", KEY_INT, 0, 86400, client_settle),
    K("client", "max_resubmits", KEY_INT, 0, 100, client_max_resubmits),
    K("client", "priority", KEY_INT, 0, 1000, client_priority),
    K("client", "crf", KEY_INT, 0, 51, client_crf),
    K("client", "preset", KEY_PRESET, 0, 0, client_preset),
    K("cluster", "nats_url", KEY_STR, 0, 0, nats_url),
    K("cluster", "nats_user", KEY_STR, 0, 0, nats_user),
    K("cluster", "nats_password", KEY_STR, 0, 0, nats_password),
    K("cluster", "nats_creds", KEY_STR, 0, 0, nats_creds),
    K("cluster", "nats_nkey_seed", KEY_STR, 0, 0, nats_nkey_seed),
    K("cluster", "nats_ca", KEY_STR, 0, 0, nats_ca),
    K("cluster", "nats_cert", KEY_STR, 0, 0, nats_cert),
    K("cluster", "nats_key", KEY_STR, 0, 0, nats_cert_key),
    K("node", "nats_url", KEY_STR, 0, 0, nats_url),
    K("node", "nats_user", KEY_STR, 0, 0, nats_user),
    K("node", "nats_password", KEY_STR, 0, 0, nats_password),
    K("node", "nats_creds", KEY_STR, 0, 0, nats_creds),
    K("node", "nats_nkey_seed", KEY_STR, 0, 0, nats_nkey_seed),
    K("node", "nats_ca", KEY_STR, 0, 0, nats_ca),
    K("node", "nats_cert", KEY_STR, 0, 0, nats_cert),
    K("node", "nats_key", KEY_STR, 0, 0, nats_cert_key),
    K("cluster", "ack_wait", KEY_INT, 2, 86400, cluster_ack_wait),
    K("cluster", "max_deliver", KEY_INT, 1, 100, cluster_max_deliver),
    K("cluster", "start_timeout", KEY_INT, 1, 86400, cluster_start_timeout),
    K("node", "server", KEY_STR, 0, 0, node_server),
    K("node", "token", KEY_STR, 0, 0, node_token),
    K("node", "workers", KEY_INT, 0, 64, node_workers),
    K("node", "host", KEY_STR, 0, 0, node_host),
    K("ctl", "token", KEY_STR, 0, 0, ctl_token),
};

typedef struct LoadCtx {
    Conf *conf;
    char *err; /* the first problem; inih reports its line */
    size_t errlen;
} LoadCtx;

static void conf_defaults(Conf *c)
{
    *c = (Conf){
        .root = strdup("/var/lib/taskmill"),
        .runtime_dir = strdup("/run/taskmill"),
        .listen = strdup("127.0.0.1:8080"),
        .rest_threads = 4,
        .max_upload_bytes = UINT64_C(16) << 30,
        .connection_timeout = 60,
        .header_timeout = 20,
        .max_tasks_per_token = 1000,
        .max_connections = 256,
        .max_connections_per_ip = 32,
        .max_header_bytes = 32768,
        .min_free_bytes = UINT64_C(1) << 30,
        .workers = 0,
        .crf = 28,
        .preset = strdup("medium"),
        .threads = 0,
        .keep_input = false,
        .max_attempts = 3,
        .stall_timeout = 300,
        .cluster_ack_wait = 60,
        .cluster_max_deliver = 3,
        .cluster_start_timeout = 60,
        .max_memory_bytes = UINT64_C(8) << 30,
        .max_cpu_seconds = 86400,
        .max_processes = 256,
        .max_open_files = 256,
        .load_source = strdup("loadavg"),
        .load_medium = 0.7,
        .load_high = 1.5,
        .parallel_low = -1,
        .parallel_medium = -1,
        .parallel_high = -1,
        .max_width = 8192,
        .max_height = 8192,
        .max_streams = 64,
        .max_duration = 86400,
        .result_ttl = 7 * 86400,
        .keep_failed_input = true,
        .retry_backoff = 5,
        .history_max = 10000,
        .callback_max_attempts = 8,
        .callback_timeout = 10,
        .callback_backoff = 2,
        .http_workers = 4,
        .log_level = LOG_INFO,
        .client_include = strdup("*.mp4 *.mkv *.mov *.avi *.m4v *.webm *.mpg *.ts"),
        .client_exclude = strdup(""),
        .client_state_dir = strdup("/var/lib/taskmill-client"),
        .client_output = strdup("beside"),
        .client_suffix = strdup(".hevc"),
        .client_settle = 60,
        .client_max_resubmits = 2,
        .client_priority = 500,
        .client_crf = -1,
    };
}

static int parse_int(const char *v, int64_t min, int64_t max, int64_t *ret)
{
    char *end;
    long long n;

    errno = 0;
    n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < min || n > max)
        return -EINVAL;
    *ret = n;
    return 0;
}

static int parse_bool(const char *v, int64_t *ret)
{
    if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "on"))
        *ret = 1;
    else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "off"))
        *ret = 0;
    else
        return -EINVAL;
    return 0;
}

static int parse_level(const char *v, int64_t *ret)
{
    static const char *const names[] = {"emerg",   "alert",  "crit", "err",
                                        "warning", "notice", "info", "debug"};
    for (int i = 0; i < 8; i++)
        if (!strcmp(v, names[i])) {
            *ret = i;
            return 0;
        }
    return -EINVAL;
}

/* Repeatable keys (`folder =`) collect into a NULL-terminated list. */
static size_t list_len(char **list)
{
    size_t n = 0;

    while (list && list[n])
        n++;
    return n;
}

static const char *list_append(char ***list, const char *v)
{
    size_t n = list_len(*list);
    char **l = realloc(*list, (n + 2) * sizeof(*l));

    if (!l)
        return "out of memory";
    l[n] = strdup(v);
    l[n + 1] = NULL;
    *list = l;
    return NULL;
}

static const char *key_apply(const ConfKey *k, Conf *c, const char *v)
{
    char *field = (char *)c + k->offset;
    int64_t n = 0;

    switch (k->kind) {
    case KEY_LIST:
        return list_append((char ***)field, v);
    case KEY_OUTPUT:
        if (strcmp(v, "beside") && strcmp(v, "mirror") && strcmp(v, "replace"))
            return "must be beside, mirror or replace";
        free(*(char **)field);
        *(char **)field = strdup(v);
        return NULL;
    case KEY_LOADSRC:
        if (strcmp(v, "loadavg") && strcmp(v, "pressure"))
            return "must be loadavg or pressure";
        free(*(char **)field);
        *(char **)field = strdup(v);
        return NULL;
    case KEY_DOUBLE: {
        char *end;
        double d;
        errno = 0;
        d = strtod(v, &end);
        if (errno || end == v || *end || d < (double)k->min || d > (double)k->max)
            return "must be a number in range";
        *(double *)field = d;
        return NULL;
    }
    case KEY_PRESET:
        if (!tasktype_preset_known(v))
            return "must be one of x265's presets (ultrafast .. placebo)";
        /* fall through */
    case KEY_STR:
        if (!*v)
            return "must not be empty";
        free(*(char **)field);
        *(char **)field = strdup(v);
        return NULL;
    case KEY_INT:
    case KEY_U64:
        if (parse_int(v, k->min, k->max, &n) < 0)
            return "must be a whole number in range";
        break;
    case KEY_BOOL:
        if (parse_bool(v, &n) < 0)
            return "must be yes or no";
        break;
    case KEY_LEVEL:
        if (parse_level(v, &n) < 0)
            return "must be one of err, warning, notice, info, debug";
        break;
    }
    if (k->kind == KEY_U64)
        *(uint64_t *)field = (uint64_t)n;
    else if (k->kind == KEY_BOOL)
        *(bool *)field = n;
    else
        *(int *)field = (int)n;
    return NULL;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    LoadCtx *ctx = user;
    const char *why = "unknown key";

    if (!strncmp(section, "type.", 5)) {
        why = tasktype_conf_key(ctx->conf, section + 5, name, value);
        if (why && !*ctx->err)
            snprintf(ctx->err, ctx->errlen, "[%s] %s = '%s': %s", section, name, value, why);
        return why ? 0 : 1;
    }
    for (size_t i = 0; i < sizeof(conf_keys) / sizeof(conf_keys[0]); i++) {
        const ConfKey *k = &conf_keys[i];
        if (strcmp(k->section, section) || strcmp(k->name, name))
            continue;
        why = key_apply(k, ctx->conf, value);
        break;
    }
    if (!why)
        return 1;
    if (!*ctx->err)
        snprintf(ctx->err, ctx->errlen, "[%s] %s = '%s': %s", section, name, value, why);
    return 0;
}

static const char *check_paths(const Conf *c)
{
    static char why[160];
    char bad[64];
    size_t n;
    Net *nets;

    if (c->root[0] != '/')
        return "[paths] root: must be an absolute path";
    if (c->runtime_dir[0] != '/')
        return "[paths] runtime_dir: must be an absolute path";
    if (!strchr(c->listen, ':'))
        return "[rest] listen: must be host:port";
    if (!c->tls_cert != !c->tls_key)
        return "[rest] tls_cert and tls_key go together";
    if (!strcmp(c->client_output, "mirror") && !c->client_output_dir)
        return "[client] output = mirror needs output_dir";
    if (net_list_parse(c->callback_allow, &nets, &n, bad, sizeof(bad)) < 0) {
        snprintf(why, sizeof(why),
                 "[callback] allow_networks: '%s' is not a network (CIDR, e.g. 192.168.1.0/24)",
                 bad);
        return why;
    }
    free(nets);
    return NULL;
}

int conf_cpus(void)
{
    cpu_set_t set;
    long n;

    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int conf_load(const char *path, Conf *ret, char *err, size_t errlen)
{
    Conf c;
    char why[512] = "";
    LoadCtx ctx = {.conf = &c, .err = why, .errlen = sizeof(why)};
    const char *bad;
    int line;

    conf_defaults(&c);
    if (path) {
        c.path = strdup(path);
        line = ini_parse(path, on_key, &ctx);
        if (line == -1) {
            snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
            conf_free(&c);
            return -ENOENT;
        }
        if (line != 0) {
            snprintf(err, errlen, "%s:%d: %s", path, line, *why ? why : "malformed line");
            conf_free(&c);
            return -EINVAL;
        }
    }
    c.n_client_folders = list_len(c.client_folders);
    if (c.workers == 0) /* one per core */
        c.workers = conf_cpus() < 64 ? conf_cpus() : 64;
    if (tasktype_conf_finish(&c, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: %s", path ? path : "built-in defaults", why);
        conf_free(&c);
        return -EINVAL;
    }
    bad = check_paths(&c);
    if (bad) {
        snprintf(err, errlen, "%s: %s", path ? path : "built-in defaults", bad);
        conf_free(&c);
        return -EINVAL;
    }
    *ret = c;
    return 0;
}

void conf_free(Conf *c)
{
    free(c->path);
    free(c->root);
    free(c->runtime_dir);
    free(c->listen);
    free(c->tokens_file);
    free(c->callback_allow);
    free(c->callback_secret);
    free(c->tls_cert);
    free(c->tls_key);
    free(c->preset);
    strv_free(c->client_folders);
    free(c->client_server);
    free(c->client_token);
    free(c->client_include);
    free(c->client_exclude);
    free(c->client_state_dir);
    free(c->client_output);
    free(c->client_output_dir);
    free(c->client_suffix);
    free(c->client_preset);
    free(c->load_source);
    free(c->ctl_token);
    free(c->nats_url);
    free(c->nats_user);
    free(c->nats_password);
    free(c->nats_creds);
    free(c->nats_nkey_seed);
    free(c->nats_ca);
    free(c->nats_cert);
    free(c->nats_cert_key);
    free(c->node_server);
    free(c->node_token);
    free(c->node_host);
    tasktype_conf_free(c);
    *c = (Conf){0};
}

int conf_listen_split(const Conf *c, char *host, size_t hostlen, int *ret_port)
{
    const char *colon = strrchr(c->listen, ':');
    const char *h = c->listen;
    size_t n;
    int64_t port;

    if (!colon || parse_int(colon + 1, 1, 65535, &port) < 0)
        return -EINVAL;
    n = (size_t)(colon - h);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    if (n == 0 || n >= hostlen)
        return -EINVAL;
    memcpy(host, h, n);
    host[n] = '\0';
    *ret_port = (int)port;
    return 0;
}
