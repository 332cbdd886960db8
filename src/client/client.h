/* client.h - what the taskmill client's files share: the API handle (client_api.c), the
 * client and its arguments (client.c), finding and asking the server (client_server.c),
 * printing (client_print.c), and the commands, one file each.
 *
 * An Api handle wraps one libcurl easy handle, so the requests of one command (wait's polls,
 * list's pages, a later sync) reuse one connection. Every exchange returns 0 once the server
 * answered, whatever the HTTP status, and -errno when no answer came; the reason is then in
 * api_strerror(). Failure statuses stay answers because their JSON bodies say what went wrong. */
#ifndef TASKMILL_CLIENT_H
#define TASKMILL_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "taskmill/conf.h"
#include "taskmill/files.h"

/* Exit codes of the taskmill command. */
enum {
    CLIENT_EXIT_OK = 0,
    CLIENT_EXIT_FAIL = 1,    /* the server refused, no answer, a failed task, a bad download */
    CLIENT_EXIT_USAGE = 2,   /* bad arguments */
    CLIENT_EXIT_TIMEOUT = 3, /* wait --timeout ran out */
};

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

typedef struct Api Api;

/* The fields of POST /v1/tasks; NULL (or priority < 0) leaves a field out. */
typedef struct ApiTaskForm {
    const char *idempotency_key; /* sent first; a repeated key gets the existing task (200) */
    const char *task_type;
    const char *path;      /* the local file, streamed as file_data */
    const char *file_name; /* the name the server is told, also the file part's filename */
    const char *file_path; /* client metadata: the absolute directory the file came from */
    int priority;
    const char *callback_url;
    const char *params; /* JSON object text */
    const char *batch;  /* the batch the task joins */
    const char *context, *run_at, *delay_seconds;
} ApiTaskForm;

int api_new(Api **ret);
void api_free(Api *h);
/* Shows upload and download progress on stderr (meant for a terminal). */
void api_set_progress(Api *h, bool on);
/* The file named after the progress bar (NULL for none); the string must outlive the transfers. */
void api_set_progress_name(Api *h, const char *name);
/* Draws one progress line "\rLABEL [####....] 42.0%  NAME" on stderr. */
void api_progress_draw(const char *label, const char *name, int permille);
/* Sends "Authorization: Bearer <token>" with every request (NULL: none). */
int api_set_token(Api *h, const char *token);
/* Caps every transfer at bytes_per_second (0: no cap); only tests slow themselves down. */
void api_set_throttle(Api *h, uint64_t bytes_per_second);
/* Why the last exchange got no answer, or why a fetched file was refused. */
const char *api_strerror(const Api *h);
/* URL-encodes s for a query string; free() the result. NULL when out of memory. */
char *api_escape(Api *h, const char *s);

/* *ret_json is the answer's JSON, or NULL when its body is empty or (for an error status) not
 * JSON. A 2xx answer whose body is not JSON is -EBADMSG. */
int api_get_json(Api *h, const char *url, long *ret_status, json_t **ret_json);
int api_delete(Api *h, const char *url, long *ret_status, json_t **ret_json);
/* POSTs a JSON body (NULL: an empty one). */
int api_post_json(Api *h, const char *url, const char *body, long *ret_status, json_t **ret_json);
/* Streams form->path from disk as multipart/form-data; the file is never loaded in memory. */
int api_post_task(Api *h, const char *url, const ApiTaskForm *form, long *ret_status,
                  json_t **ret_json);

/* PUTs the file at path as the body, with "X-Taskmill-Sha256: <sha256>" (a node's result). */
int api_put_file(Api *h, const char *url, const char *path, const char *sha256, long *ret_status,
                 json_t **ret_json);

/* GETs url into fd, an O_APPEND file already holding offset bytes, asking for "Range: bytes=
 * offset-" when offset > 0. On 206 the bytes are appended (the Content-Range must start at
 * offset); on 200 (the Range ignored) fd is truncated first. Any other status leaves fd alone and
 * its JSON body goes to *ret_json. A transport failure may leave fd longer: resume from there. */
int api_download(Api *h, const char *url, int fd, uint64_t offset, long *ret_status,
                 json_t **ret_json);

/* GETs url to path through path.partial: an existing partial file is resumed with a Range
 * request (restarted when the server cannot satisfy it), then its size and SHA-256 are checked
 * against size and sha256 (hex) and it is renamed to path. Returns 0 when the server answered:
 * with status 200 or 206 the file is in place; with any other status *ret_json may say why and
 * path is untouched. -EBADMSG: the file did not match and the partial was removed. Other -errno:
 * no answer or a local error; a non-empty partial is kept for the next try. */
int api_fetch_file(Api *h, const char *url, const char *path, uint64_t size, const char *sha256,
                   long *ret_status, json_t **ret_json);

/* ---- what the commands share (client.c, client_server.c, client_print.c) ---- */

typedef struct Client {
    const char *config_path; /* --config, or NULL */
    const char *server_arg;  /* --server, or NULL */
    char *server;            /* the base URL, without a trailing '/' */
    bool json;               /* print the server's JSON instead of a summary */
    bool tty;                /* stderr is a terminal: draw progress */
    Api *api;
    Conf conf; /* loaded when have_conf */
    bool have_conf;
} Client;

/* A command's arguments, checked by client.c before the command runs. */
typedef struct Args {
    const char *pos;                           /* FILE or ID, NULL when absent */
    long priority, crf, timeout, limit, delay; /* -1 when not given */
    const char *preset, *callback, *type, *output, *state, *context, *batch, *at;
    json_t *params; /* --param NAME=VALUE, NULL when none */
    bool wait, dry_run;
} Args;

/* client_server.c: finding the server and asking it. Failures are reported on stderr. */
int server_connect(Client *cl, bool local);
void server_close(Client *cl);
char *server_url(const Client *cl, const char *path);
/* "/v1/tasks/<id><suffix>"; the id is checked before it becomes part of a URL. */
int server_task_path(char *buf, size_t len, const char *id, const char *suffix);
/* METHOD (GET, DELETE, or POST without a body) server+path; any answer but `want` is reported
 * (as is no answer). *ret (may be NULL) gets the answer's JSON. */
int server_call(Client *cl, const char *method, const char *path, long want, json_t **ret);
/* The same on /v1/tasks/<id><suffix>, the id checked first. */
int server_task_call(Client *cl, const char *method, const char *id, const char *suffix, long want,
                     json_t **ret);
/* GET server+path: 0 with the answer, or -errno when none came (reported when asked). */
int server_get_reply(Client *cl, const char *path, bool report, long *ret_status,
                     json_t **ret_json);
/* GET server+path expecting 200 and a JSON object; anything else is reported. */
int server_get(Client *cl, const char *path, json_t **ret);
int server_get_task(Client *cl, const char *id, json_t **ret);
/* "code: message" of an error answer, or a stand-in when its body is not one. */
void server_reply_error(long status, json_t *body, char *buf, size_t len);
/* Prints an error answer; returns -EREMOTEIO. */
int server_report(long status, json_t *body);
/* Prints why METHOD url got no answer; returns r. */
int server_transport(const Client *cl, const char *method, const char *url, int r);

/* client_print.c: summaries on stdout. */
const char *jstr(json_t *obj, const char *key); /* the string, or "-" */
void print_json(json_t *j);
const char *print_size(json_int_t n, char *buf, size_t len);
void print_task(json_t *t);
/* The task's JSON with --json, else its summary. */
void print_task_output(const Client *cl, json_t *t);

/* The commands: each returns the exit status (CLIENT_EXIT_*). */
int submit_main(Client *cl, const Args *a); /* client_submit.c */
int status_main(Client *cl, const Args *a); /* client_wait.c */
int wait_main(Client *cl, const Args *a);
int fetch_main(Client *cl, const Args *a); /* client_fetch.c */
int delete_main(Client *cl, const Args *a);
int retry_main(Client *cl, const Args *a);
int list_main(Client *cl, const Args *a); /* client_list.c */
int types_main(Client *cl, const Args *a);
int sync_main(Client *cl, const Args *a); /* client_sync.c */

#endif
