/* rest_conn.c - every open HTTP connection: limits, and a deadline for the request headers.
 *
 * libmicrohttpd's own limits close a connection over the limit without a word, count IPv6
 * clients per address (a /64 holds 2^64 of them), and its timeout counts idle time only, so a
 * client that sends one header byte every 45 s holds a connection for ever. Here:
 *   - connections are counted in all and per client (an IPv4 address, an IPv6 /64); one over
 *     a limit is still read up to its request line and answered 429 or 503 (conn_refusal);
 *   - a request's line and headers must be complete within [rest] header_timeout seconds of
 *     the connection opening (or of the previous request's end): conn_tick shuts down the
 *     socket of one that is late, and libmicrohttpd then closes it.
 * MHD runs connections on several threads; one mutex guards the table. A slot's fd is shut
 * down only under that mutex, and MHD reports a connection closed (conn_closed) before it
 * closes the fd, so a reused fd number is never hit. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "rest.h"
#include "taskmill/clock.h"

typedef struct Conn {
    bool used, headers_done;
    ConnRefusal refusal;
    int fd;
    unsigned char client[16]; /* IPv4 address, or the /64 of an IPv6 one */
    int64_t since_ns;         /* when the current request began to be awaited */
} Conn;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static Conn *conns;
static size_t n_slots, n_used;
static unsigned max_total, max_per_client, header_timeout;

int conn_init(unsigned total, unsigned per_client, unsigned header_timeout_s, unsigned slots)
{
    conns = calloc(slots, sizeof(*conns));
    if (!conns)
        return -ENOMEM;
    n_slots = slots;
    max_total = total;
    max_per_client = per_client;
    header_timeout = header_timeout_s;
    return 0;
}

void conn_free(void)
{
    free(conns);
    conns = NULL;
    n_slots = n_used = 0;
}

/* Clients are told apart by IPv4 address and by IPv6 /64 (an IPv4-mapped address is IPv4). */
static void client_key(const struct sockaddr *sa, unsigned char key[16])
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    memset(key, 0, 16);
    if (sa && sa->sa_family == AF_INET) {
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa && sa->sa_family == AF_INET6) {
        const unsigned char *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (!memcmp(a, mapped, 12))
            memcpy(key + 12, a + 12, 4);
        else
            memcpy(key, a, 8);
    }
}

void *conn_opened(int fd, const struct sockaddr *sa)
{
    unsigned char key[16];
    unsigned same = 0;
    Conn *c = NULL;

    client_key(sa, key);
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_slots; i++) {
        if (!conns[i].used) {
            c = c ? c : &conns[i];
            continue;
        }
        same += !memcmp(conns[i].client, key, 16);
    }
    if (c) {
        *c = (Conn){.used = true, .fd = fd, .since_ns = now_ns()};
        memcpy(c->client, key, 16);
        if (n_used >= max_total)
            c->refusal = CONN_BUSY;
        else if (same >= max_per_client)
            c->refusal = CONN_TOO_MANY;
        n_used += c->refusal == CONN_OK;
    }
    pthread_mutex_unlock(&lock);
    return c;
}

void conn_closed(void *handle)
{
    Conn *c = handle;

    if (!c)
        return;
    pthread_mutex_lock(&lock);
    n_used -= c->refusal == CONN_OK;
    c->used = false;
    pthread_mutex_unlock(&lock);
}

ConnRefusal conn_request_begins(void *handle)
{
    Conn *c = handle;
    ConnRefusal r;

    if (!c) /* the table was full when it opened */
        return CONN_BUSY;
    pthread_mutex_lock(&lock);
    c->headers_done = true;
    r = c->refusal;
    pthread_mutex_unlock(&lock);
    return r;
}

void conn_request_ends(void *handle)
{
    Conn *c = handle;

    if (!c)
        return;
    pthread_mutex_lock(&lock);
    c->headers_done = false;
    c->since_ns = now_ns();
    pthread_mutex_unlock(&lock);
}

unsigned conn_tick(void)
{
    int64_t deadline = now_ns() - (int64_t)header_timeout * 1000000000;
    unsigned cut = 0;

    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_slots; i++)
        if (conns[i].used && !conns[i].headers_done && conns[i].since_ns < deadline &&
            conns[i].fd >= 0) {
            shutdown(conns[i].fd, SHUT_RDWR); /* MHD sees the end and closes it */
            conns[i].fd = -1;
            cut++;
        }
    pthread_mutex_unlock(&lock);
    return cut;
}
