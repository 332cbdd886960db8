/* rest.h - shared parts of taskmill-rest, the HTTP API.
 *
 * rest reads the queue folders and writes only under data/request/; every change to the queue
 * itself (publishing a job, deleting one) is a message to the queue daemon. */
#ifndef TASKMILL_REST_H
#define TASKMILL_REST_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "taskmill/conf.h"

typedef struct Rest {
    const Conf *conf;
    int data_fd;
    int request_fd; /* data/request, where uploads are written */
    int keys_fd;    /* data/keys, the idempotency keys */
    struct MHD_Daemon *mhd;
    char *tls_cert, *tls_key; /* PEM text, kept for MHD's lifetime */
    unsigned ticks;           /* seconds since the last sweep of data/keys */
} Rest;

/* Who is asking: a token's name and role, or the open API (no tokens configured). */
typedef struct Auth {
    char name[64];
    bool admin, open;
} Auth;

/* The per-request state MHD keeps in *con_cls. */
typedef struct Upload Upload;
typedef struct Req {
    Auth auth;
    Upload *upload; /* POST /v1/tasks */
} Req;

/* rest_auth.c */
int auth_load(const char *path, char *err, size_t errlen);
size_t auth_count(void);
void auth_free(void);
int auth_check(const char *authorization_header, Auth *ret);
bool auth_sees(const Auth *a, const char *owner);

/* rest_http.c: responses */
enum MHD_Result http_json(struct MHD_Connection *c, unsigned status, json_t *body);
enum MHD_Result http_error(struct MHD_Connection *c, unsigned status, const char *code,
                           const char *fmt, ...) __attribute__((format(printf, 4, 5)));
enum MHD_Result http_empty(struct MHD_Connection *c, unsigned status);
enum MHD_Result rest_dispatch(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *url,
                              const char *method);
/* Calls the queue and maps "cannot reach it" to false. */
int rest_queue_call(const Rest *rest, const char *type, json_t *body, int timeout_ms,
                    json_t **ret_reply);

/* rest_upload.c: POST /v1/tasks, streamed into data/request/.tmp-<uuid>/ */
/* 0: read the body; 1: refused before the body (answer now with upload_finish); <0: error */
int upload_begin(Rest *rest, struct MHD_Connection *c, const Auth *a, Upload **ret);
enum MHD_Result upload_feed(Upload *u, const char *data, size_t *size);
enum MHD_Result upload_finish(Upload *u, struct MHD_Connection *c);
void upload_free(Upload *u);     /* removes the temporary directory unless it was published */
void upload_recover(Rest *rest); /* at start: what a killed rest left in request/ */

/* rest_idem.c: idempotency keys */
bool idem_key_valid(const char *key);
int idem_lookup(Rest *rest, const char *owner, const char *key, char ret_id[37]);
int idem_record(Rest *rest, const char *owner, const char *key, const char *id);
int idem_forget(Rest *rest, const char *owner, const char *key, const char *id);
/* Removes keys older than min_age seconds whose task is gone (expired by the queue). */
int idem_sweep(Rest *rest, time_t min_age, unsigned *ret_removed);

/* rest_tasks.c: the read side and delete */
enum MHD_Result tasks_get(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *id);
enum MHD_Result tasks_result(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *id);
enum MHD_Result tasks_delete(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *id);
enum MHD_Result tasks_list(Rest *rest, struct MHD_Connection *c, const Auth *a);
enum MHD_Result tasks_status(Rest *rest, struct MHD_Connection *c);
enum MHD_Result tasks_health(Rest *rest, struct MHD_Connection *c);
/* Number of unfinished tasks (received, pending, in progress) owned by name. */
unsigned tasks_count_owned(Rest *rest, const char *name);

#endif
