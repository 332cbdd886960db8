/* rest.h - shared parts of taskmill-rest, the HTTP API.
 *
 * rest reads the queue folders and writes only under data/request/; every change to the queue
 * itself (publishing a job, deleting one) is a message to the queue daemon. */
#ifndef TASKMILL_REST_H
#define TASKMILL_REST_H

#include <jansson.h>
#include <microhttpd.h>
#include <sys/socket.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "taskmill/conf.h"
#include "taskmill/index.h"
#include "taskmill/task.h"
#include "taskmill/tasktype.h"

typedef struct Rest {
    const Conf *conf;
    int data_fd;
    int request_fd; /* data/request, where uploads are written */
    int keys_fd;    /* data/keys, the idempotency keys */
    int batches_fd; /* data/batches */
    struct MHD_Daemon *mhd;
    char *tls_cert, *tls_key; /* PEM text, kept for MHD's lifetime */
    unsigned ticks;           /* seconds since the last sweep of data/keys */
    Index *index;             /* the task index (read-only), opened on first use */
} Rest;

/* Who is asking: a token's name and role, or the open API (no tokens configured). */
typedef struct Auth {
    char name[64];
    bool admin, node, open;
} Auth;

/* rest_conn.c: open connections, their limits and the header deadline. */
typedef enum ConnRefusal {
    CONN_OK,
    CONN_TOO_MANY, /* over [rest] max_connections_per_ip for its client: 429 */
    CONN_BUSY,     /* over [rest] max_connections: 503 */
} ConnRefusal;
int conn_init(unsigned total, unsigned per_client, unsigned header_timeout_s, unsigned slots);
void conn_free(void);
/* MHD's connection notifications; the handle is the connection's socket context. */
void *conn_opened(int fd, const struct sockaddr *sa);
void conn_closed(void *handle);
/* A request's headers are complete: whether the connection may be served. */
ConnRefusal conn_request_begins(void *handle);
/* The request was answered: the next one's headers are awaited from now. */
void conn_request_ends(void *handle);
/* Shuts down connections whose headers are late; returns how many. Once a second. */
unsigned conn_tick(void);

typedef struct Upload Upload;
typedef struct NodePut NodePut;
typedef struct Route Route;

/* The per-request state MHD keeps in *con_cls. */
typedef struct Req {
    Auth auth;
    void *conn;         /* rest_conn.c's handle */
    const Route *route; /* NULL: no endpoint (answered with refusal at the end) */
    unsigned refusal;   /* an HTTP status decided before the body: 404, 405, 400 */
    char arg[128];      /* the task id in the path */
    Upload *upload;     /* POST /v1/tasks */
    NodePut *put;       /* PUT /v1/node/tasks/<id>/output */
    uint64_t discarded; /* bytes of a body nobody wants */
    bool body_wanted;   /* an endpoint with a JSON body */
    char *body;         /* that body, NUL-terminated */
    size_t body_len;    /* its length (past JSON_BODY_MAX: counted, not kept) */
    int64_t begun_ns;   /* when its headers were in (the duration in /metrics) */
} Req;

/* rest_route.c: the request's life in libmicrohttpd (MHD_AccessHandlerCallback etc.). */
enum MHD_Result route_request(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *data_size, void **con_cls);
void route_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                     enum MHD_RequestTerminationCode toe);
void route_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                      enum MHD_ConnectionNotificationCode code);

/* rest_auth.c */
int auth_load(const char *path, char *err, size_t errlen);
size_t auth_count(void);
void auth_free(void);
int auth_check(const char *authorization_header, Auth *ret);
bool auth_sees(const Auth *a, const char *owner);

/* rest_http.c: responses */
enum MHD_Result http_json(struct MHD_Connection *c, unsigned status, json_t *body);
/* The same with a Location header (NULL: none). */
enum MHD_Result http_json_with(struct MHD_Connection *c, unsigned status, json_t *body,
                               const char *location);
enum MHD_Result http_error(struct MHD_Connection *c, unsigned status, const char *code,
                           const char *fmt, ...) __attribute__((format(printf, 4, 5)));
enum MHD_Result http_empty(struct MHD_Connection *c, unsigned status);
/* The request's ?limit=: true with *ret (dflt when there is none); false when it is not a
 * number from 1 to max, after answering 400 bad_limit (*answer). */
bool http_limit(struct MHD_Connection *c, long dflt, long max, long *ret, enum MHD_Result *answer);
/* 401 with WWW-Authenticate. */
enum MHD_Result http_unauthorized(struct MHD_Connection *c);
/* An answer after which the connection is closed (sent before a body that is not read). */
enum MHD_Result http_error_close(struct MHD_Connection *c, unsigned status, const char *code,
                                 const char *message);
/* Calls the queue (as role rest). */
int rest_queue_call(const Rest *rest, const char *type, json_t *body, int timeout_ms,
                    json_t **ret_reply);

/* rest_submit.c: the fields of POST /v1/tasks (multipart text or JSON) become a Task */
enum {
    SUBMIT_TYPE,
    SUBMIT_FILE_NAME,
    SUBMIT_FILE_PATH,
    SUBMIT_PRIORITY,
    SUBMIT_CALLBACK,
    SUBMIT_CALLBACK_DONE,
    SUBMIT_PARAMS,
    SUBMIT_CONTEXT,
    SUBMIT_BATCH,
    SUBMIT_RUN_AT,
    SUBMIT_DELAY,
    SUBMIT_TIMEOUT,
    SUBMIT_IDEM,
    SUBMIT_MAX
};
typedef struct SubmitError {
    unsigned status; /* 0: no error yet */
    char code[40];
    char message[300];
} SubmitError;
typedef struct SubmitFile {
    const char *part_name; /* filename= of the file part, or NULL */
    uint64_t size;
} SubmitFile;
int submit_field(const char *name); /* SUBMIT_*, or -1 */
const char *submit_field_name(int f);
/* Records the first error; returns -EINVAL. */
int submit_fail(SubmitError *e, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A JSON body's members as the text a form would carry (the caller frees them). */
int submit_from_json(const char *body, size_t len, char *ret_fields[SUBMIT_MAX], SubmitError *e);
/* callback_url, or seed 002's callback_done={"type":"http","url":...,"method":"GET"|"POST"}
 * (its JSON text): the URL and the method (NULL: POST) to keep. */
int submit_callback(const char *url, const char *done, char **ret_url, char **ret_method,
                    SubmitError *e);
/* context: one line of UTF-8 text, at most TASK_CONTEXT_MAX bytes. */
int submit_context(const char *v, SubmitError *e);
/* Checks every field and fills t (id, input_name and idempotency_key are the caller's). */
int submit_build(Rest *rest, const Auth *a, char *const f[SUBMIT_MAX], const SubmitFile *file,
                 Task *t, SubmitError *e);

/* rest_batch.c: batches, data/batches/<id>/batch.json */
/* A task may join batch id: it exists, the caller sees it, it is not sealed. With task, the
 * task joins (tasks/<task> is written, under a lock shared with the close). */
int batch_join(Rest *rest, const Auth *a, const char *id, const char *task, SubmitError *e);
enum MHD_Result batches_create(Rest *rest, struct MHD_Connection *c, const Auth *a,
                               const char *body, size_t len);
enum MHD_Result batches_get(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *id);
/* GET /v1/batches?limit=N: the caller's batches, newest first. */
enum MHD_Result batches_list(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg);
enum MHD_Result batches_close(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *id);
/* Removes batches older than min_age seconds with no task left and no callback owed. */
int batches_sweep(Rest *rest, time_t min_age, unsigned *ret_removed);

/* rest_ui.c: the dashboard's files (src/rest/ui/, compiled in) */
enum MHD_Result ui_page(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg);
enum MHD_Result ui_script(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg);
enum MHD_Result ui_style(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg);

/* rest_upload.c: POST /v1/tasks, streamed into data/request/.tmp-<uuid>/ */
/* 0: read the body; 1: answered before the body (upload_finish sends the answer); <0: error */
int upload_begin(Rest *rest, struct MHD_Connection *c, const Auth *a, Upload **ret);
enum MHD_Result upload_feed(Upload *u, const char *data, size_t *size);
enum MHD_Result upload_finish(Upload *u, struct MHD_Connection *c);
void upload_free(Upload *u);     /* removes the temporary directory unless it was published */
void upload_recover(Rest *rest); /* at start: what a killed rest left in request/ */

/* rest_idem.c: idempotency keys */
typedef enum IdemClaim {
    IDEM_NEW,    /* the key is ours now: it names this upload */
    IDEM_EXISTS, /* a task made with the key exists: answer 200 with it */
    IDEM_BUSY,   /* another upload with the key is being stored: answer 409 */
} IdemClaim;
bool idem_key_valid(const char *key);
/* Claims key for the upload id, durably, before the upload is published; on IDEM_EXISTS
 * ret_existing names the task. Exactly one upload wins a key, whatever the timing. */
int idem_claim(Rest *rest, const char *owner, const char *key, const char *id,
               char ret_existing[37], IdemClaim *ret);
/* The upload that claimed key ended: published (the key stays), or not (the key goes). */
void idem_release(Rest *rest, const char *owner, const char *key, const char *id, bool published);
/* After a deletion: drops the key if it still names the task. */
int idem_forget(Rest *rest, const char *owner, const char *key, const char *id);
/* Removes keys older than min_age seconds whose task is gone (expired by the queue). */
int idem_sweep(Rest *rest, time_t min_age, unsigned *ret_removed);

/* rest_tasks.c: the read side and delete */
enum MHD_Result tasks_get(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *id);
enum MHD_Result tasks_result(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *id);
enum MHD_Result tasks_delete(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *id);
/* The task object of id as the answer (with Location: /v1/tasks/<id> when asked): after a
 * create, a repeated idempotency key or a retry. */
enum MHD_Result tasks_show(Rest *rest, struct MHD_Connection *c, const char *id, unsigned status,
                           bool location);
/* POST /v1/tasks/<id>/retry: a failed task back to pending with its kept input. */
enum MHD_Result tasks_retry(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *id);
enum MHD_Result tasks_list(Rest *rest, struct MHD_Connection *c, const Auth *a);
enum MHD_Result tasks_status(Rest *rest, struct MHD_Connection *c);
enum MHD_Result tasks_health(Rest *rest, struct MHD_Connection *c);
/* One Range header against a file of size bytes: 0 (the whole file when h is NULL, or one
 * satisfiable range), -ERANGE (unsatisfiable: 416), -EINVAL (not understood: RFC 9110 lets a
 * server ignore it and send the whole file). */
typedef struct Range {
    uint64_t first, last; /* inclusive */
    bool partial;
} Range;
int tasks_range_parse(const char *h, uint64_t size, Range *ret);
/* A list cursor, "<created_ns>.<id>" of the last task of the previous page; NULL is none (0,
 * nothing set); -EINVAL for anything we did not give out. */
int tasks_cursor_parse(const char *s, int64_t *ret_ns, char ret_id[37]);

/* rest_node.c: a conversion node's endpoints (a token of role node, or the open API). */
enum MHD_Result node_whoami(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg);
enum MHD_Result node_input(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *id);
/* PUT of a node's result, streamed like an upload: 0 read the body, 1 answered before it (the
 * answer is sent by node_put_finish), <0 error. */
int node_put_begin(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *id,
                   NodePut **ret);
enum MHD_Result node_put_feed(NodePut *p, const char *data, size_t *size);
enum MHD_Result node_put_finish(NodePut *p, struct MHD_Connection *c);
void node_put_free(NodePut *p);
/* A file of the task (its input, its result) with single-range Range support, from the open
 * fd (closed here); name for Content-Disposition, sha256 (or NULL) for the ETag. */
enum MHD_Result tasks_send_file(struct MHD_Connection *c, int fd, const char *name,
                                const char *sha256);

/* rest_metrics.c: GET /metrics (Prometheus text format) and what rest counts for it. */
void metrics_init(void);
void metrics_free(void);
void metrics_answer(unsigned status);           /* every answer queued */
void metrics_request(double seconds);           /* a request's headers to its end */
void metrics_bytes(uint64_t up, uint64_t down); /* bytes stored, bytes of files served */
void metrics_submitted(const char *type);       /* a task accepted */
enum MHD_Result metrics_get(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg);
/* MHD_queue_response, counted for /metrics: every answer goes through it. */
enum MHD_Result http_queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *resp);

/* rest_admin.c: the operator's endpoints (a token of role admin, or the open API); the route
 * table's signature, the token and the path argument unused. */
enum MHD_Result admin_workers(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg);
enum MHD_Result admin_history(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg);
enum MHD_Result admin_throughput(Rest *rest, struct MHD_Connection *c, const Auth *a,
                                 const char *arg);
enum MHD_Result admin_drain(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg);
enum MHD_Result admin_resume(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg);
enum MHD_Result admin_check(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg);
/* A queue reply without its envelope (v, type, rid), or NULL when it is an error. */
json_t *queue_reply_body(json_t *reply);

/* What a token stores: its unfinished tasks (received, pending, in progress) and the bytes of
 * all its tasks' inputs and results on disk. */
typedef struct Usage {
    unsigned unfinished;
    uint64_t bytes;
} Usage;
/* From the task index: -ENOENT until the queue has created it. */
int tasks_usage(Rest *rest, const char *owner, Usage *ret);

#endif
