/* callback_deliver.c - HTTP delivery of callbacks with the libcurl multi interface.
 *
 * libcurl never blocks the daemon: its sockets are watched by the daemon's epoll loop
 * (CURLMOPT_SOCKETFUNCTION -> daemon_watch) and its timeouts by a timerfd of our own
 * (CURLMOPT_TIMERFUNCTION). Each request is one POST with a bounded time, no redirects and only
 * http/https. Every finished transfer is reported once to callback_attempt_done; an aborted one
 * is not reported. Only callback.c calls in here. */
#define _GNU_SOURCE
#include "callback.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "taskmill/log.h"

#ifndef TASKMILL_VERSION
#define TASKMILL_VERSION "0.0.0"
#endif

#define CONNECT_TIMEOUT_MAX_S 10L

/* The receiver's answer is not used: only its status counts. */
static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr, (void)userdata;
    return size * nmemb;
}

/* Ends a transfer: the handle leaves the multi stack and is freed. */
static void request_free(Callback *cb, CallbackJob *j)
{
    curl_multi_remove_handle(cb->multi, j->easy);
    curl_easy_cleanup(j->easy);
    curl_slist_free_all(j->headers);
    j->easy = NULL;
    j->headers = NULL;
    cb->n_in_flight--;
}

static void report_done(Callback *cb, CURL *easy, CURLcode res)
{
    CallbackJob *j = NULL;
    long status = 0;
    char error[CURL_ERROR_SIZE];

    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&j);
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (res != CURLE_OK)
        snprintf(error, sizeof(error), "%s",
                 j->refused[0]  ? j->refused
                 : j->errbuf[0] ? j->errbuf
                                : curl_easy_strerror(res));
    request_free(cb, j);
    callback_attempt_done(cb, j, status, res == CURLE_OK ? NULL : error);
}

/* Hands every finished transfer to callback.c. */
static void collect_done(Callback *cb)
{
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(cb->multi, &left)))
        if (m->msg == CURLMSG_DONE)
            /* m dies with the handle: report_done copies what it needs first. */
            report_done(cb, m->easy_handle, m->data.result);
}

static int on_socket_event(Daemon *d, int fd, uint32_t events, void *userdata)
{
    Callback *cb = userdata;
    int flags = 0, running;

    (void)d;
    if (events & EPOLLIN)
        flags |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        flags |= CURL_CSELECT_OUT;
    if (events & (EPOLLERR | EPOLLHUP))
        flags |= CURL_CSELECT_ERR;
    curl_multi_socket_action(cb->multi, fd, flags, &running);
    collect_done(cb);
    return 0;
}

static int on_curl_timer(Daemon *d, int fd, uint32_t events, void *userdata)
{
    Callback *cb = userdata;
    uint64_t expirations;
    int running;

    (void)d, (void)events;
    if (read(fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
        log_warning("curl timer: %s", strerror(errno));
    curl_multi_socket_action(cb->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    collect_done(cb);
    return 0;
}

/* CURLMOPT_SOCKETFUNCTION: the watch is replaced whenever the wanted events change. socketp is
 * non-NULL while the socket is watched. */
static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    Callback *cb = userp;
    uint32_t events = 0;

    (void)easy;
    if (socketp) {
        daemon_unwatch(cb->daemon, s);
        curl_multi_assign(cb->multi, s, NULL);
    }
    if (what == CURL_POLL_REMOVE)
        return 0;
    if (what & CURL_POLL_IN)
        events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        events |= EPOLLOUT;
    if (daemon_watch(cb->daemon, s, events, on_socket_event, cb) < 0) {
        log_err("cannot watch a callback socket");
        return -1;
    }
    curl_multi_assign(cb->multi, s, cb);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 disarms; 0 means "as soon as possible", which a timerfd spells as
 * one nanosecond (a zero value would disarm it). */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    Callback *cb = userp;
    struct itimerspec its = {{0, 0}, {0, 0}};

    (void)multi;
    if (timeout_ms >= 0) {
        its.it_value.tv_sec = timeout_ms / 1000;
        its.it_value.tv_nsec = timeout_ms % 1000 * 1000000 + (timeout_ms == 0);
    }
    return timerfd_settime(cb->curl_timer_fd, 0, &its, NULL) < 0 ? -1 : 0;
}

int deliver_init(Callback *cb)
{
    int r;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -EIO;
    cb->multi = curl_multi_init();
    if (!cb->multi)
        return -ENOMEM;
    curl_multi_setopt(cb->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(cb->multi, CURLMOPT_SOCKETDATA, cb);
    curl_multi_setopt(cb->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(cb->multi, CURLMOPT_TIMERDATA, cb);
    cb->curl_timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (cb->curl_timer_fd < 0)
        return -errno;
    r = daemon_watch(cb->daemon, cb->curl_timer_fd, EPOLLIN, on_curl_timer, cb);
    return r;
}

void deliver_free(Callback *cb)
{
    if (cb->multi)
        curl_multi_cleanup(cb->multi);
    cb->multi = NULL;
    if (cb->curl_timer_fd >= 0)
        close(cb->curl_timer_fd);
    cb->curl_timer_fd = -1;
    curl_global_cleanup();
}

static struct curl_slist *request_headers(const CallbackJob *j, const char *body)
{
    char id[64], attempt[64], sig[256] = "X-Taskmill-Signature;";
    /* "Expect:" turns off 100-continue, which costs a round trip or a one-second wait. */
    const char *const lines[] = {"Content-Type: application/json", id, attempt, "Expect:", sig};
    struct curl_slist *h = NULL, *t;
    size_t n = sizeof(lines) / sizeof(lines[0]);

    snprintf(id, sizeof(id), "X-Taskmill-Task-Id: %s", j->id);
    snprintf(attempt, sizeof(attempt), "X-Taskmill-Attempt: %d", j->attempts + 1);
    if (guard_sign(j->conf, body, sig, sizeof(sig)) <= 0)
        n--; /* no secret: no signature header */
    for (size_t i = 0; i < n; i++) {
        t = curl_slist_append(h, lines[i]);
        if (!t) {
            curl_slist_free_all(h);
            return NULL;
        }
        h = t;
    }
    return h;
}

/* Every connection curl opens passes the address check first. */
static curl_socket_t open_socket(void *userdata, curlsocktype purpose, struct curl_sockaddr *a)
{
    CallbackJob *j = userdata;

    if (purpose != CURLSOCKTYPE_IPCXN ||
        !guard_address_allowed(j->conf, &a->addr, j->refused, sizeof(j->refused)))
        return CURL_SOCKET_BAD;
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static bool request_setup(Callback *cb, CallbackJob *j, const char *body)
{
    long timeout = cb->conf->callback_timeout;
    CURL *e = j->easy;

    j->errbuf[0] = '\0';
    j->refused[0] = '\0';
    j->conf = cb->conf;
    return curl_easy_setopt(e, CURLOPT_URL, j->url) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, j) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_PROXY, "") == CURLE_OK && /* no proxy from the env */
           curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_TIMEOUT, timeout) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT,
                            timeout < CONNECT_TIMEOUT_MAX_S ? timeout : CONNECT_TIMEOUT_MAX_S) ==
               CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_USERAGENT, "taskmill-callback/" TASKMILL_VERSION) ==
               CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->headers) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_body) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->errbuf) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_PRIVATE, j) == CURLE_OK;
}

int deliver_start(Callback *cb, CallbackJob *j, const char *body)
{
    j->conf = cb->conf;
    j->easy = curl_easy_init();
    j->headers = request_headers(j, body);
    if (j->easy && j->headers && request_setup(cb, j, body) &&
        curl_multi_add_handle(cb->multi, j->easy) == CURLM_OK) {
        cb->n_in_flight++;
        return 0;
    }
    curl_easy_cleanup(j->easy);
    curl_slist_free_all(j->headers);
    j->easy = NULL;
    j->headers = NULL;
    return -ENOMEM;
}

void deliver_abort(Callback *cb, CallbackJob *j)
{
    if (j->easy)
        request_free(cb, j);
}
