/* callback.h - state shared by the parts of taskmill-callback.
 *
 * The daemon speaks HTTP to the outside world for two reasons:
 *   - callbacks (callback.c): a finished task's, or a finished batch's (callback_batch.c),
 *     delivered with retries; callback_jobs.c is the table of those owed;
 *   - http tasks (callback_http.c): it is the worker pool of the http kind, claiming work from
 *     the queue like taskmill-convert does.
 * Both go through callback_deliver.c, which owns libcurl (transfers run inside the daemon's
 * epoll loop), and callback_guard.c, which decides which addresses may be reached. */
#ifndef TASKMILL_CALLBACK_H
#define TASKMILL_CALLBACK_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "taskmill/daemon.h"
#include "taskmill/index.h"
#include "taskmill/ipc.h"
#include "taskmill/jobdir.h"
#include "taskmill/task.h"

#define CALLBACK_MAX_IN_FLIGHT 16
#define CALLBACK_BACKOFF_MAX_S 3600
#define CALLBACK_STOP_GRACE_S  2
#define CALLBACK_BUCKETS       256

typedef struct Callback Callback;

/* One HTTP exchange in flight. Its owner embeds it and learns the outcome through done, called
 * once from the event loop (never from inside transfer_start); an aborted transfer is not
 * reported. error is NULL when the exchange completed (status then tells). */
typedef struct Transfer {
    CURL *easy;
    struct curl_slist *headers;
    char errbuf[CURL_ERROR_SIZE];
    char refused[CURL_ERROR_SIZE]; /* why callback_guard refused the address, if it did */
    const Conf *conf;              /* for the address check */
    /* The answer's body goes to body_fd (up to body_max bytes, the rest counted and dropped)
     * and its headers to resp_headers; with body_fd < 0 both are dropped. */
    int body_fd;
    uint64_t body_max, body_len;
    bool body_truncated, write_failed;
    json_t *resp_headers;
    CURLcode result; /* of the finished transfer */
    void (*done)(Callback *cb, struct Transfer *t, long status, const char *error);
} Transfer;

/* What to send. */
typedef struct TransferSpec {
    const char *url;
    const char *method;         /* GET, POST, PUT, PATCH, DELETE */
    const char *body;           /* NULL: none (copied) */
    const char *const *headers; /* "Name: value", NULL-terminated; may be NULL */
    long timeout_s;
} TransferSpec;

/* One callback still owed: a task's or a batch's. It lives in memory only until it is
 * delivered or given up; the callback.json of the job (or batch) folder is the record that
 * survives a restart. */
typedef struct CallbackJob {
    char id[TASK_ID_LEN + 1];
    bool batch;  /* id is a batch's */
    Stage stage; /* a task's: done or failed */
    char *url;
    char *method;       /* NULL: POST the object; "GET": the id and state as query parameters */
    json_t *record;     /* callback.json as it should be on disk */
    int attempts;       /* attempts made so far */
    int64_t due_ns;     /* wall clock of the next attempt; 0: now */
    int64_t started_ns; /* wall clock of the attempt in flight */
    bool in_flight;
    Transfer t;
    struct CallbackJob *next; /* in its hash bucket */
} CallbackJob;

/* A slot of the http task pool (callback_http.c). */
typedef struct HttpSlot {
    char id[TASK_ID_LEN + 1]; /* "" when idle */
    char type[72];
    int job_fd;
    int64_t started_ns;
    bool cancelled;
    Transfer t;
} HttpSlot;

struct Callback {
    Daemon *daemon;
    const Conf *conf;
    int data_fd;    /* ROOT/data, -1 until the queue has created it */
    int batches_fd; /* ROOT/data/batches, -1 until rest has created it */
    Index *index;   /* the task index, read-only; NULL until the queue has created it */
    bool rescan;    /* the last scan could not read the index */
    bool index_warned;
    int queue_fd; /* -1 while not connected */
    int64_t rid;  /* of the last message sent to the queue */
    bool queue_warned, data_warned;
    int due_fd; /* timerfd: when the next job is due, or the stop deadline */
    CallbackJob *buckets[CALLBACK_BUCKETS];
    unsigned n_jobs, n_in_flight, n_delivered;
    /* callback_http.c */
    HttpSlot *slots;
    int n_slots, claims;
    /* callback_deliver.c */
    CURLM *multi;
    int curl_timer_fd;
    unsigned n_transfers;
};

/* callback_jobs.c: the table of callbacks owed. */
CallbackJob *jobs_find(Callback *cb, const char *id);
void jobs_add(Callback *cb, CallbackJob *j);
/* Takes a job out of the table and frees it (it must not be in flight). */
void jobs_drop(Callback *cb, CallbackJob *j);
/* A job that never entered the table. */
void jobs_free_one(CallbackJob *j);
/* The job after j (the first when j is NULL), or NULL: a walk over the whole table. */
CallbackJob *jobs_next(Callback *cb, const CallbackJob *j);

/* callback.c */
/* Schedules an owed callback j (read from its callback.json by callback_record_load). */
void callback_owed(Callback *cb, CallbackJob *j);
/* Fills j->record, attempts and due_ns from the callback.json of folder fd: 1 when the callback
 * is already finished, 0 when it is owed, <0 on error. */
int callback_record_load(int fd, CallbackJob *j);
void callback_arm(Callback *cb);
int callback_send(Callback *cb, const char *type, json_t *body);

/* callback_batch.c: batches that finished */
/* Checks batch id: when it is sealed and all its tasks ended, records that it finished and, if
 * it has a callback_url, owes its callback. */
void batch_consider(Callback *cb, const char *id);
/* Every unfinished batch (at start and after a reconnect). */
void batch_scan(Callback *cb);
/* The body of a batch's callback: its view now. */
int batch_callback_body(Callback *cb, const char *id, json_t **ret);

/* callback_http.c: the http kind's worker pool */
int http_init(Callback *cb);
void http_free(Callback *cb);
/* The hello's workers and kinds. */
json_t *http_hello(Callback *cb);
void http_connected(Callback *cb);
void http_lost(Callback *cb);
/* Stops every task (SIGTERM, or the queue went away): each is handed back. */
void http_stop_all(Callback *cb);
unsigned http_busy(const Callback *cb);
/* The queue's messages to the pool (IpcHandler functions). */
void http_on_assign(void *ctx, void *peer, json_t *msg);
void http_on_cancel(void *ctx, void *peer, json_t *msg);
void http_on_answer(void *ctx, void *peer, json_t *msg);
/* About once a second: keeps the slots reported to the queue. */
void http_tick(Callback *cb);

/* callback_deliver.c */
int deliver_init(Callback *cb);
void deliver_free(Callback *cb);
/* Starts a transfer; its outcome comes back through t->done. t->done, body_fd and body_max
 * are the caller's to set first. */
int transfer_start(Callback *cb, Transfer *t, const TransferSpec *spec);
/* Drops a transfer in flight without reporting it. */
void transfer_abort(Callback *cb, Transfer *t);

/* callback_guard.c */
/* Parses the blocked ranges and [callback] allow_networks; -EINVAL on a malformed network. */
int guard_init(const Conf *c);
void guard_free(void);
bool guard_address_allowed(const Conf *c, const struct sockaddr *sa, char *why, size_t whylen);
/* Fills header with X-Taskmill-Signature for body; 0 when no secret is set, 1 when signed. */
int guard_sign(const Conf *c, const char *body, char *header, size_t len);

#endif
