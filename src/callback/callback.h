/* callback.h - state shared by the parts of taskmill-callback.
 *
 * callback.c knows which callbacks are owed (from the done/ and failed/ folders and the queue's
 * job.finished pushes), when each is due, and keeps callback.json; callback_jobs.c is the
 * table of them; callback_guard.c decides which addresses may be reached. callback_deliver.c owns
 * libcurl: it runs the HTTP requests inside the daemon's epoll loop and reports every finished
 * attempt back through callback_attempt_done. */
#ifndef TASKMILL_CALLBACK_H
#define TASKMILL_CALLBACK_H

#include <curl/curl.h>
#include <sys/socket.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "taskmill/daemon.h"
#include "taskmill/task.h"
#include "taskmill/jobdir.h"

#define CALLBACK_MAX_IN_FLIGHT 16
#define CALLBACK_BACKOFF_MAX_S 3600
#define CALLBACK_STOP_GRACE_S  2
#define CALLBACK_BUCKETS       256

/* One callback still owed. It lives in memory only until it is delivered or given up; the job
 * directory's callback.json is the record that survives a restart. */
typedef struct CallbackJob {
    char id[TASK_ID_LEN + 1];
    Stage stage;
    char *url;
    json_t *record;     /* callback.json as it should be on disk */
    int attempts;       /* attempts made so far */
    int64_t due_ns;     /* wall clock of the next attempt; 0: now */
    int64_t started_ns; /* wall clock of the attempt in flight */
    CURL *easy;         /* non-NULL while an attempt is in flight */
    struct curl_slist *headers;
    char errbuf[CURL_ERROR_SIZE];
    char refused[CURL_ERROR_SIZE]; /* why callback_guard refused the address, if it did */
    const Conf *conf;              /* for the open-socket check */
    struct CallbackJob *next;      /* in its hash bucket */
} CallbackJob;

typedef struct Callback {
    Daemon *daemon;
    const Conf *conf;
    int data_fd;  /* ROOT/data, -1 until the queue has created it */
    int queue_fd; /* -1 while not connected */
    bool queue_warned, data_warned;
    int due_fd; /* timerfd: when the next job is due, or the stop deadline */
    CallbackJob *buckets[CALLBACK_BUCKETS];
    unsigned n_jobs, n_in_flight, n_delivered;
    /* callback_deliver.c */
    CURLM *multi;
    int curl_timer_fd;
} Callback;

/* callback_jobs.c: the table of jobs owed a callback. */
CallbackJob *jobs_find(Callback *cb, const char *id);
void jobs_add(Callback *cb, CallbackJob *j);
/* Takes a job out of the table and frees it (it must not be in flight). */
void jobs_drop(Callback *cb, CallbackJob *j);
/* A job that never entered the table. */
void jobs_free_one(CallbackJob *j);
/* The job after j (the first when j is NULL), or NULL: a walk over the whole table. */
CallbackJob *jobs_next(Callback *cb, const CallbackJob *j);

/* callback_jobs.c: the table of jobs owed a callback. */
CallbackJob *jobs_find(Callback *cb, const char *id);
void jobs_add(Callback *cb, CallbackJob *j);
/* Takes a job out of the table and frees it (it must not be in flight). */
void jobs_drop(Callback *cb, CallbackJob *j);
/* A job that never entered the table. */
void jobs_free_one(CallbackJob *j);
/* The job after j (the first when j is NULL), or NULL: a walk over the whole table. */
CallbackJob *jobs_next(Callback *cb, const CallbackJob *j);

/* callback_deliver.c */
int deliver_init(Callback *cb);
void deliver_free(Callback *cb);
/* Starts one POST of body (copied) to j->url; the outcome comes back through
 * callback_attempt_done, never from inside this call. */
int deliver_start(Callback *cb, CallbackJob *j, const char *body);
/* Drops the attempt in flight without reporting it. */
void deliver_abort(Callback *cb, CallbackJob *j);

/* callback_guard.c */
/* Parses the blocked ranges and [callback] allow_networks; -EINVAL on a malformed network. */
int guard_init(const Conf *c);
void guard_free(void);
bool guard_address_allowed(const Conf *c, const struct sockaddr *sa, char *why, size_t whylen);
/* Fills header with X-Taskmill-Signature for body; 0 when no secret is set, 1 when signed. */
int guard_sign(const Conf *c, const char *body, char *header, size_t len);

/* callback.c: error is NULL when the HTTP exchange completed (status then tells). */
void callback_attempt_done(Callback *cb, CallbackJob *j, long status, const char *error);

#endif
