/* conf.h - the taskmill configuration file (INI, parsed with inih).
 *
 * Every program loads the same file; each reads the keys it needs. Unknown sections or keys and
 * out-of-range values are errors that name the file, the line and the key. */
#ifndef TASKMILL_CONF_H
#define TASKMILL_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONF_DEFAULT_PATH "/etc/taskmill/taskmill.conf"

typedef struct Conf {
    char *path; /* the file loaded, or NULL when running on built-in defaults */
    /* [paths] */
    char *root;        /* data lives under ROOT/data */
    char *runtime_dir; /* Unix sockets */
    /* [rest] */
    char *listen; /* "host:port" */
    int rest_threads;
    uint64_t max_upload_bytes;
    int connection_timeout;
    /* [convert] */
    int workers;
    int crf;
    char *preset;
    int threads;
    bool keep_input;
    int max_attempts;
    int stall_timeout; /* seconds without progress before a conversion is killed */
    /* [callback] */
    int callback_max_attempts;
    int callback_timeout;
    int callback_backoff;
    /* [log] */
    int log_level;
} Conf;

/* Loads path (or the built-in defaults when path is NULL). On error returns -errno or -EINVAL
 * and writes "FILE:LINE: key 'k': problem" into err. */
int conf_load(const char *path, Conf *ret, char *err, size_t errlen);
void conf_free(Conf *c);

/* Splits c->listen into host and port. */
int conf_listen_split(const Conf *c, char *host, size_t hostlen, int *ret_port);

#endif
