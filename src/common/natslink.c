/* natslink.c - the NATS connection of taskmill-cluster and taskmill-node (natslink.h).
 *
 * libnats calls message handlers and connection events on its own threads. They only append
 * to a list under a mutex and write the eventfd; the daemon's loop takes the messages out. */
#define _GNU_SOURCE
#include "taskmill/natslink.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "taskmill/log.h"

typedef struct Queued {
    natsMsg *msg;
    struct Queued *next;
} Queued;

struct NatsLink {
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *subs[8];
    int n_subs;
    int event_fd;
    pthread_mutex_t lock;
    Queued *head, **tail;
    bool reconnected;
    bool closing, closed; /* we close it; libnats gave up on it (e.g. refused credentials) */
    bool closed_done;     /* the closed callback has run: no callback comes after it */
    pthread_cond_t closed_cond;
    char why[256]; /* the last error when it gave up */
};

static void wake(NatsLink *l)
{
    uint64_t one = 1;

    if (write(l->event_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warning("nats: cannot wake the loop: %s", strerror(errno));
}

void natslink_push(NatsLink *l, natsMsg *m)
{
    Queued *q = malloc(sizeof(*q));

    if (!q) {
        natsMsg_Destroy(m);
        return;
    }
    *q = (Queued){.msg = m};
    pthread_mutex_lock(&l->lock);
    *l->tail = q;
    l->tail = &q->next;
    pthread_mutex_unlock(&l->lock);
    wake(l);
}

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    (void)nc, (void)sub;
    natslink_push(closure, m);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    NatsLink *l = closure;

    (void)nc;
    pthread_mutex_lock(&l->lock);
    l->reconnected = true;
    pthread_mutex_unlock(&l->lock);
    wake(l);
}

static void on_closed(natsConnection *nc, void *closure)
{
    NatsLink *l = closure;
    const char *text = NULL;
    natsStatus s = natsConnection_GetLastError(nc, &text);

    pthread_mutex_lock(&l->lock);
    if (!l->closing) {
        l->closed = true;
        snprintf(l->why, sizeof(l->why), "%s%s%s", natsStatus_GetText(s), text ? ": " : "",
                 text ? text : "");
    }
    /* Woken before closed_done is set: once it is, natslink_close may free l at once. */
    wake(l);
    l->closed_done = true;
    pthread_cond_signal(&l->closed_cond);
    pthread_mutex_unlock(&l->lock);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    wake(closure);
}

/* The options from the config: servers, credentials, TLS, and reconnecting for ever. */
static natsStatus options_from(const Conf *c, const char *name, NatsLink *l, natsOptions **ret)
{
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);

    if (s == NATS_OK)
        s = natsOptions_SetURL(o, c->nats_url);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, name);
    if (s == NATS_OK && c->nats_user)
        s = natsOptions_SetUserInfo(o, c->nats_user, c->nats_password ? c->nats_password : "");
    if (s == NATS_OK && c->nats_creds)
        s = natsOptions_SetUserCredentialsFromFiles(o, c->nats_creds, NULL);
    if (s == NATS_OK && c->nats_nkey_seed)
        s = natsOptions_SetNKeyFromSeed(o, NULL, c->nats_nkey_seed);
    if (s == NATS_OK && c->nats_ca)
        s = natsOptions_LoadCATrustedCertificates(o, c->nats_ca);
    if (s == NATS_OK && c->nats_cert)
        s = natsOptions_LoadCertificatesChain(o, c->nats_cert, c->nats_cert_key);
    if (s == NATS_OK && (c->nats_ca || c->nats_cert || !strncmp(c->nats_url, "tls://", 6)))
        s = natsOptions_SetSecure(o, true);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(o, 1000);
    if (s == NATS_OK)
        s = natsOptions_SetPingInterval(o, 5000);
    if (s == NATS_OK)
        s = natsOptions_SetMaxPingsOut(o, 2);
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(o, true, on_reconnected, l);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(o, on_reconnected, l);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(o, on_disconnected, l);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(o, on_closed, l);
    if (s != NATS_OK) {
        natsOptions_Destroy(o);
        return s;
    }
    *ret = o;
    return NATS_OK;
}

int natslink_open(const Conf *c, const char *name, NatsLink **ret, char *err, size_t errlen)
{
    NatsLink *l = calloc(1, sizeof(*l));
    natsOptions *o = NULL;
    natsStatus s;

    if (!l)
        return -ENOMEM;
    l->tail = &l->head;
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->closed_cond, NULL);
    l->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    s = l->event_fd < 0 ? NATS_SYS_ERROR : options_from(c, name, l, &o);
    if (s == NATS_OK) {
        s = natsConnection_Connect(&l->nc, o);
        if (s == NATS_NOT_YET_CONNECTED) /* retrying in the background */
            s = NATS_OK;
    }
    natsOptions_Destroy(o);
    if (s == NATS_OK)
        s = natsConnection_JetStream(&l->js, l->nc, NULL);
    if (s != NATS_OK) {
        snprintf(err, errlen, "NATS at %s: %s (%s)", c->nats_url, natsStatus_GetText(s),
                 nats_GetLastError(NULL));
        natslink_close(l);
        return -EINVAL;
    }
    *ret = l;
    return 0;
}

void natslink_close(NatsLink *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->lock);
    l->closing = true;
    pthread_mutex_unlock(&l->lock);
    for (int i = 0; i < l->n_subs; i++)
        natsSubscription_Destroy(l->subs[i]);
    if (l->nc) {
        /* The closed callback runs on a libnats thread, after every other callback of the
         * connection: l may go only once it has. */
        struct timespec until;
        natsConnection_Close(l->nc);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 5;
        pthread_mutex_lock(&l->lock);
        while (!l->closed_done &&
               pthread_cond_timedwait(&l->closed_cond, &l->lock, &until) != ETIMEDOUT)
            ;
        bool done = l->closed_done;
        pthread_mutex_unlock(&l->lock);
        if (!done) { /* a callback may still come: l is left to the exit rather than freed */
            log_warning("nats: the connection did not close within 5 s");
            return;
        }
    }
    jsCtx_Destroy(l->js);
    natsConnection_Destroy(l->nc);
    for (Queued *q = l->head, *n; q; q = n) {
        n = q->next;
        natsMsg_Destroy(q->msg);
        free(q);
    }
    if (l->event_fd >= 0)
        close(l->event_fd);
    pthread_cond_destroy(&l->closed_cond);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

natsConnection *natslink_conn(NatsLink *l)
{
    return l->nc;
}

jsCtx *natslink_js(NatsLink *l)
{
    return l->js;
}

int natslink_fd(NatsLink *l)
{
    return l->event_fd;
}

int natslink_subscribe(NatsLink *l, const char *subject, char *err, size_t errlen)
{
    natsStatus s;

    if (l->n_subs == (int)(sizeof(l->subs) / sizeof(l->subs[0])))
        return -ENOSPC;
    s = natsConnection_Subscribe(&l->subs[l->n_subs], l->nc, subject, on_msg, l);
    if (s != NATS_OK) {
        snprintf(err, errlen, "cannot subscribe to %s: %s (%s)", subject, natsStatus_GetText(s),
                 nats_GetLastError(NULL) ?: "no more detail");
        return -EIO;
    }
    l->n_subs++;
    return 0;
}

natsMsg *natslink_next(NatsLink *l)
{
    uint64_t n;
    Queued *q;
    natsMsg *m = NULL;

    if (read(l->event_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        log_warning("nats: eventfd: %s", strerror(errno));
    pthread_mutex_lock(&l->lock);
    if ((q = l->head)) {
        l->head = q->next;
        if (!l->head)
            l->tail = &l->head;
        m = q->msg;
        free(q);
    }
    pthread_mutex_unlock(&l->lock);
    if (m)
        wake(l); /* one message per call: come back for the next */
    return m;
}

bool natslink_gave_up(NatsLink *l, char *why, size_t len)
{
    bool closed;

    pthread_mutex_lock(&l->lock);
    closed = l->closed;
    snprintf(why, len, "%s", l->why);
    pthread_mutex_unlock(&l->lock);
    return closed;
}

bool natslink_up(NatsLink *l)
{
    return natsConnection_Status(l->nc) == NATS_CONN_STATUS_CONNECTED;
}

bool natslink_connected(NatsLink *l, bool *ret_reconnected)
{
    pthread_mutex_lock(&l->lock);
    *ret_reconnected = l->reconnected;
    l->reconnected = false;
    pthread_mutex_unlock(&l->lock);
    return natsConnection_Status(l->nc) == NATS_CONN_STATUS_CONNECTED;
}

json_t *natslink_json(natsMsg *m)
{
    json_t *j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);

    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

int natslink_publish(NatsLink *l, const char *subject, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    natsStatus s = text ? natsConnection_PublishString(l->nc, subject, text) : NATS_NO_MEMORY;

    free(text);
    json_decref(j);
    return s == NATS_OK ? 0 : -EIO;
}

void natslink_reply(NatsLink *l, natsMsg *m, json_t *j)
{
    const char *to = natsMsg_GetReply(m);

    if (to)
        natslink_publish(l, to, j);
    else
        json_decref(j);
}

json_t *natslink_request(NatsLink *l, const char *subject, json_t *j, int timeout_ms)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    natsMsg *reply = NULL;
    json_t *answer = NULL;

    json_decref(j);
    if (text && natsConnection_RequestString(&reply, l->nc, subject, text, timeout_ms) == NATS_OK)
        answer = natslink_json(reply);
    natsMsg_Destroy(reply);
    free(text);
    return answer;
}

int natslink_ensure_stream(NatsLink *l, const Conf *c, char *err, size_t errlen)
{
    const char *subjects[] = {NATS_WORK_SUBJECT};
    jsStreamConfig sc;
    jsConsumerConfig cc;
    jsStreamInfo *si = NULL;
    jsConsumerInfo *ci = NULL;
    jsErrCode code = 0;
    natsStatus s;

    jsStreamConfig_Init(&sc);
    sc.Name = NATS_STREAM;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Retention = js_WorkQueuePolicy;
    sc.Storage = js_FileStorage;
    s = js_AddStream(&si, l->js, &sc, NULL, &code);
    if (s != NATS_OK && code == JSStreamNameExistErr)
        s = js_UpdateStream(&si, l->js, &sc, NULL, &code);
    jsStreamInfo_Destroy(si);
    if (s == NATS_OK) {
        jsConsumerConfig_Init(&cc);
        cc.Durable = NATS_CONSUMER;
        cc.AckPolicy = js_AckExplicit;
        cc.AckWait = (int64_t)c->cluster_ack_wait * 1000000000;
        cc.MaxDeliver = c->cluster_max_deliver;
        cc.FilterSubject = NATS_WORK_SUBJECT;
        s = js_AddConsumer(&ci, l->js, NATS_STREAM, &cc, NULL, &code);
        jsConsumerInfo_Destroy(ci);
    }
    if (s != NATS_OK) {
        snprintf(err, errlen, "JetStream stream %s: %s (error %d: %s)", NATS_STREAM,
                 natsStatus_GetText(s), (int)code, nats_GetLastError(NULL));
        return -EIO;
    }
    return 0;
}
