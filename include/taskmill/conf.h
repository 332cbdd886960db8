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

struct TypeTable;

typedef struct Conf {
    char *path; /* the file loaded, or NULL when running on built-in defaults */
    /* [paths] */
    char *root;        /* data lives under ROOT/data */
    char *runtime_dir; /* Unix sockets */
    /* [rest] */
    char *listen; /* "host:port" */
    int rest_threads;
    uint64_t max_upload_bytes;
    int connection_timeout;   /* seconds a connection may be idle */
    int header_timeout;       /* seconds for a request's line and headers to arrive */
    char *tokens_file;        /* bearer tokens; NULL = $CREDENTIALS_DIRECTORY/tokens if any */
    char *tls_cert, *tls_key; /* PEM files; both set = HTTPS */
    int max_connections, max_connections_per_ip;
    int max_header_bytes;
    uint64_t min_free_bytes;      /* uploads that would leave less free space get 507 */
    bool allow_open;              /* serve a non-loopback address without tokens */
    int max_tasks_per_token;      /* unfinished tasks one token may have */
    uint64_t max_bytes_per_token; /* inputs and results one token may store (0 = no limit) */
    /* [convert] */
    int workers;
    int crf;
    char *preset;
    int threads;
    bool keep_input;
    int max_attempts;
    int stall_timeout;         /* seconds without progress before a conversion is killed */
    uint64_t max_memory_bytes; /* a conversion child's address space (0 = unlimited) */
    uint64_t max_output_bytes; /* 0 = 4 x the input + 1 GiB */
    int max_cpu_seconds;       /* CPU time of one conversion (0 = unlimited) */
    int max_processes;         /* threads and processes one conversion may add (0 = no limit) */
    int max_open_files;        /* RLIMIT_NOFILE of one conversion (0 = no limit) */
    /* load-aware parallelism: slots in use at each load level, and a pause between starts */
    char *load_source;             /* loadavg (1-minute, per core) | pressure (CPU PSI avg10) */
    double load_medium, load_high; /* thresholds: per-core load, or PSI percent */
    int parallel_low, parallel_medium, parallel_high; /* -1 = workers */
    int cooldown;                                     /* seconds between two starts */
    int max_width, max_height, max_streams;
    int max_duration; /* seconds of media */
    /* [queue] */
    int result_ttl;         /* seconds a finished task is kept (0 = forever) */
    bool keep_failed_input; /* a failed task keeps its input (for a retry) */
    int retry_backoff;      /* seconds before the first retry of a transient failure; doubles */
    int history_max;        /* finished attempts kept in data/history.jsonl */
    /* [callback] */
    int callback_max_attempts;
    int callback_timeout;
    int callback_backoff;
    char *callback_allow;  /* CIDRs callbacks may reach despite being private/loopback */
    char *callback_secret; /* HMAC-SHA256 key for X-Taskmill-Signature, or NULL */
    int http_workers;      /* http tasks run at once */
    /* [log] */
    int log_level;
    /* [client]: the folder scanner, `taskmill sync` */
    char *client_server;   /* base URL; NULL = http:// + [rest] listen */
    char *client_token;    /* bearer token, or NULL */
    char **client_folders; /* `folder =` lines, repeatable */
    size_t n_client_folders;
    char *client_include; /* space-separated shell patterns matched on the file name */
    char *client_exclude;
    char *client_state_dir;
    char *client_output; /* beside | mirror | replace */
    char *client_output_dir;
    char *client_suffix; /* inserted before the extension: movie.hevc.mkv */
    int client_settle;   /* seconds a file must be unchanged before it is sent */
    int client_max_resubmits;
    int client_priority;
    int client_crf;      /* -1 = the server's default */
    char *client_preset; /* NULL = the server's default */
    /* [cluster] (the server) and [node] (a conversion node): NATS JetStream, docs/cluster.md.
     * The nats_* keys are read from either section: the connection both sides make. */
    char *nats_url; /* NULL: no cluster (the single box) */
    char *nats_user, *nats_password;
    char *nats_creds;                          /* a .creds file (JWT + nkey seed) */
    char *nats_nkey_seed;                      /* an nkey seed file */
    char *nats_ca, *nats_cert, *nats_cert_key; /* TLS: trusted CAs; a client certificate */
    int cluster_ack_wait;                      /* seconds a node may stay silent on a task */
    int cluster_max_deliver;                   /* deliveries of one task before it fails */
    int cluster_start_timeout; /* seconds a published task may wait for a node to take it */
    char *node_server;         /* the server's base URL */
    char *node_token;          /* a token of role node */
    int node_workers;          /* conversions at once on the node (0: one per core) */
    char *node_host;           /* the node's name in the workers' view (default: hostname) */
    /* [ctl]: taskmillctl */
    char *ctl_token; /* an admin token, or NULL */
    /* [type.NAME] sections and the built-in video type (tasktype.h) */
    struct TypeTable *type_table;
} Conf;

/* Loads path (or the built-in defaults when path is NULL). On error returns -errno or -EINVAL
 * and writes "FILE:LINE: key 'k': problem" into err. */
int conf_load(const char *path, Conf *ret, char *err, size_t errlen);
/* The CPUs this process may run on (its affinity mask, e.g. a systemd CPUAffinity=). */
int conf_cpus(void);
void conf_free(Conf *c);

/* Splits c->listen into host and port. */
int conf_listen_split(const Conf *c, char *host, size_t hostlen, int *ret_port);

#endif
