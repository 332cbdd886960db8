/* callback_deliver.c - HTTP transfers with the libcurl multi interface, for callbacks and for
 * http tasks.
 *
 * libcurl never blocks the daemon: its sockets are watched by the daemon's epoll loop
 * (CURLMOPT_SOCKETFUNCTION -> daemon_watch) and its timeouts by a timerfd of our own
 * (CURLMOPT_TIMERFUNCTION). Each transfer is one request with a bounded time, no redirects,
 * no proxy from the environment, only http/https, and every address it connects to passes
 * callback_guard first. Every finished transfer is reported once to its owner (t->done); an
 * aborted one is not reported. */
#define _GNU_SOURCE
#include "callback.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "taskmill/files.h"
#include "taskmill/log.h"
#include "taskmill/text.h"

#ifndef TASKMILL_VERSION
#define TASKMILL_VERSION "0.0.0"
#endif

#define CONNECT_TIMEOUT_MAX_S 10L

/* The answer's body: kept in body_fd up to body_max bytes, the rest counted and dropped. */
static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    Transfer *t = userdata;
    size_t n = size * nmemb, keep = 0;

    if (t->body_fd >= 0 && t->body_len < t->body_max)
        keep = n < t->body_max - t->body_len ? n : (size_t)(t->body_max - t->body_len);
    if (keep && fd_write_all(t->body_fd, ptr, keep) < 0)
        t->write_failed = true;
    t->body_truncated = t->body_truncated || keep < n;
    t->body_len += keep;
    return n;
}

/* Drops the spaces, tabs and CR LF around s. */
static void trim(char *s)
{
    size_t b = strspn(s, " \t"), n = strlen(s);

    while (n > b && strchr(" \t\r\n", s[n - 1]))
        n--;
    memmove(s, s + b, n - b);
    s[n - b] = '\0';
}

/* The answer's headers, for an http task's result: the last value of each name, names in lower
 * case, at most 64 of them. The status line and the blank line end are skipped. */
static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    Transfer *t = userdata;
    size_t n = size * nitems, k;
    char name[128], value[1024], *colon = memchr(buf, ':', n);

    if (!t->resp_headers || !colon || (size_t)(colon - buf) >= sizeof(name) ||
        json_object_size(t->resp_headers) >= 64)
        return n;
    for (k = 0; buf + k < colon; k++)
        name[k] = (char)tolower((unsigned char)buf[k]);
    name[k] = '\0';
    k = n - (size_t)(colon + 1 - buf);
    snprintf(value, sizeof(value), "%.*s", (int)k, colon + 1);
    trim(value);
    if (utf8_valid(name) && utf8_valid(value) && !text_has_control(value))
        json_object_set_new(t->resp_headers, name, json_string(value));
    return n;
}

/* Ends a transfer: the handle leaves the multi stack and is freed. */
static void request_free(Callback *cb, Transfer *t)
{
    curl_multi_remove_handle(cb->multi, t->easy);
    curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
    t->easy = NULL;
    t->headers = NULL;
    cb->n_transfers--;
}

static void report_done(Callback *cb, CURL *easy, CURLcode res)
{
    Transfer *t = NULL;
    long status = 0;
    char error[CURL_ERROR_SIZE];

    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (res != CURLE_OK)
        snprintf(error, sizeof(error), "%s",
                 t->refused[0]  ? t->refused
                 : t->errbuf[0] ? t->errbuf
                                : curl_easy_strerror(res));
    request_free(cb, t);
    t->result = res;
    t->done(cb, t, status, res == CURLE_OK ? NULL : error);
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

static struct curl_slist *request_headers(const TransferSpec *spec)
{
    /* "Expect:" turns off 100-continue, which costs a round trip or a one-second wait. */
    struct curl_slist *h = curl_slist_append(NULL, "Expect:"), *t;

    for (const char *const *l = spec->headers; h && l && *l; l++) {
        if (!(t = curl_slist_append(h, *l))) {
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
    Transfer *t = userdata;

    if (purpose != CURLSOCKTYPE_IPCXN ||
        !guard_address_allowed(t->conf, &a->addr, t->refused, sizeof(t->refused)))
        return CURL_SOCKET_BAD;
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static bool method_setup(CURL *e, const TransferSpec *spec)
{
    if (!strcmp(spec->method, "GET") && !spec->body)
        return curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) == CURLE_OK;
    if (curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, spec->body ? spec->body : "") != CURLE_OK)
        return false;
    return !strcmp(spec->method, "POST") ||
           curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, spec->method) == CURLE_OK;
}

static bool request_setup(Callback *cb, Transfer *t, const TransferSpec *spec)
{
    long timeout = spec->timeout_s > 0 ? spec->timeout_s : 30;
    CURL *e = t->easy;

    t->errbuf[0] = '\0';
    t->refused[0] = '\0';
    t->conf = cb->conf;
    t->body_len = 0;
    t->body_truncated = t->write_failed = false;
    return curl_easy_setopt(e, CURLOPT_URL, spec->url) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, t) == CURLE_OK &&
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
           curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers) == CURLE_OK &&
           method_setup(e, spec) &&
           curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_WRITEDATA, t) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_HEADERDATA, t) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf) == CURLE_OK &&
           curl_easy_setopt(e, CURLOPT_PRIVATE, t) == CURLE_OK;
}

int transfer_start(Callback *cb, Transfer *t, const TransferSpec *spec)
{
    t->easy = curl_easy_init();
    t->headers = request_headers(spec);
    if (t->easy && t->headers && request_setup(cb, t, spec) &&
        curl_multi_add_handle(cb->multi, t->easy) == CURLM_OK) {
        cb->n_transfers++;
        return 0;
    }
    curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
    t->easy = NULL;
    t->headers = NULL;
    return -ENOMEM;
}

void transfer_abort(Callback *cb, Transfer *t)
{
    if (t->easy)
        request_free(cb, t);
}
