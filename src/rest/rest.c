/* rest.c - taskmill-rest: the HTTP API on libmicrohttpd.
 *
 * MHD runs its own thread pool; the daemon's loop only waits for signals. On SIGTERM MHD is
 * stopped first, which ends every connection: uploads in flight are removed by upload_free and
 * the clients see a closed connection, so nothing half-uploaded is ever queued. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "rest.h"
#include "taskmill/daemon.h"
#include "taskmill/jobdir.h"
#include "taskmill/log.h"
#include "taskmill/files.h"

static Rest rest;

static int resolve_listen(const Conf *c, struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai;
    char host[256];
    char port[8];
    int p, r;

    if (conf_listen_split(c, host, sizeof(host), &p) < 0)
        return -EINVAL;
    snprintf(port, sizeof(port), "%d", p);
    r = getaddrinfo(host, port, &hints, &ai);
    if (r != 0) {
        log_err("[rest] listen = '%s': %s", c->listen, gai_strerror(r));
        return -EINVAL;
    }
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    return ss->ss_family == AF_INET6 &&
           IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

/* The token file: [rest] tokens_file, else the systemd credential "tokens", else none. */
static int load_tokens(const Conf *c, const struct sockaddr_storage *ss)
{
    const char *creds = getenv("CREDENTIALS_DIRECTORY");
    char path[4096] = "", err[600];
    int r;

    if (c->tokens_file)
        snprintf(path, sizeof(path), "%s", c->tokens_file);
    else if (creds)
        snprintf(path, sizeof(path), "%s/tokens", creds);
    if (*path && (c->tokens_file || access(path, F_OK) == 0)) {
        if ((r = auth_load(path, err, sizeof(err))) < 0) {
            log_err("bad token file: %s", err);
            return r;
        }
        log_info("%zu tokens loaded from %s", auth_count(), path);
    }
    if (auth_count() == 0 && !is_loopback(ss) && !c->allow_open) {
        log_err("refusing to serve %s without tokens: set [rest] tokens_file, or allow_open = yes",
                c->listen);
        return -EPERM;
    }
    return 0;
}

/* [rest] tls_cert/tls_key: read once; MHD keeps pointers to the text. */
static int load_tls(Rest *r)
{
    size_t len;
    int q;

    if (!r->conf->tls_cert)
        return 0;
    if ((q = file_read_all(AT_FDCWD, r->conf->tls_cert, 1 << 20, &r->tls_cert, &len)) < 0 ||
        (q = file_read_all(AT_FDCWD, r->conf->tls_key, 1 << 20, &r->tls_key, &len)) < 0) {
        log_err("cannot read the TLS certificate or key: %s", strerror(-q));
        return q;
    }
    return 0;
}

/* The hard cap of open connections: the limit plus room to refuse a quarter more with an
 * answer. */
static unsigned conn_slots(const Conf *c)
{
    unsigned n = (unsigned)c->max_connections;

    return n + (n / 4 > 16 ? n / 4 : 16);
}

/* Limits against slow and greedy clients: an idle timeout (MHD has none by default), the
 * memory for a request's headers, and room for the connections rest_conn.c counts: those over
 * [rest] max_connections or max_connections_per_ip are still accepted, up to a hard cap, so
 * they can be answered 503/429 instead of being closed without a word. */
static struct MHD_Daemon *start_mhd(Rest *r, const struct sockaddr_storage *ss)
{
    const Conf *c = r->conf;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
                     (ss->ss_family == AF_INET6 ? MHD_USE_IPv6 : 0) |
                     (r->tls_cert ? MHD_USE_TLS : 0);
    struct MHD_OptionItem tls[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, r->tls_cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, r->tls_key},
        {MHD_OPTION_END, 0, NULL},
    };

    return MHD_start_daemon(
        flags, 0, NULL, NULL, route_request, r, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)ss,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)c->rest_threads, MHD_OPTION_NOTIFY_COMPLETED,
        route_completed, r, MHD_OPTION_NOTIFY_CONNECTION, route_connection, r,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->connection_timeout, MHD_OPTION_CONNECTION_LIMIT,
        conn_slots(c), MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)c->max_header_bytes,
        MHD_OPTION_ARRAY, r->tls_cert ? tls : tls + 2, MHD_OPTION_END);
}

static int rest_init(Daemon *d, const Conf *c)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int r;

    rest = (Rest){.conf = c, .data_fd = -1, .request_fd = -1, .keys_fd = -1, .batches_fd = -1};
    daemon_set_userdata(d, &rest);
    metrics_init();
    r = jobdir_open_data(c->root, true, &rest.data_fd);
    if (r < 0) {
        log_err("cannot open %s/data: %s", c->root, strerror(-r));
        return r;
    }
    rest.request_fd = openat(rest.data_fd, "request", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (mkdirat(rest.data_fd, "keys", 0750) < 0 && errno != EEXIST)
        return -errno;
    rest.keys_fd = openat(rest.data_fd, "keys", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rest.keys_fd < 0)
        return -errno;
    if (mkdirat(rest.data_fd, "batches", 0750) < 0 && errno != EEXIST)
        return -errno;
    rest.batches_fd = openat(rest.data_fd, "batches", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rest.batches_fd < 0)
        return -errno;
    if (rest.request_fd < 0 || (r = resolve_listen(c, &ss, &len)) < 0)
        return rest.request_fd < 0 ? -errno : r;
    if ((r = load_tokens(c, &ss)) < 0)
        return r;
    if ((r = load_tls(&rest)) < 0)
        return r;
    upload_recover(&rest);
    r = conn_init((unsigned)c->max_connections, (unsigned)c->max_connections_per_ip,
                  (unsigned)c->header_timeout, conn_slots(c));
    if (r < 0)
        return r;
    rest.mhd = start_mhd(&rest, &ss);
    if (!rest.mhd) { /* libmicrohttpd logged why: the address is taken, or TLS refused */
        log_err("cannot listen on %s%s", c->listen,
                rest.tls_cert ? " (the address is in use, or the TLS certificate and key were "
                                "refused: see the line above)"
                              : " (is the address in use?)");
        return -ECANCELED;
    }
    log_info("listening on %s://%s/", rest.tls_cert ? "https" : "http", c->listen);
    return 0;
}

static void rest_shutdown(Daemon *d)
{
    Rest *r = daemon_userdata(d);

    if (r->mhd)
        MHD_stop_daemon(r->mhd); /* ends every connection; route_completed cleans each */
    conn_free();
    if (r->request_fd >= 0)
        close(r->request_fd);
    if (r->keys_fd >= 0)
        close(r->keys_fd);
    if (r->batches_fd >= 0)
        close(r->batches_fd);
    auth_free();
    metrics_free();
    free(r->tls_cert);
    free(r->tls_key);
    index_close(r->index);
    if (r->data_fd >= 0)
        close(r->data_fd);
}

/* Keys of expired tasks, and batches with no task left, are swept as often as the queue
 * expires results (result_ttl / 4, at most hourly); no task can expire sooner than result_ttl
 * after its key or its batch was written. */
static void rest_tick(Daemon *d)
{
    Rest *r = daemon_userdata(d);
    unsigned ttl = (unsigned)r->conf->result_ttl, every = ttl / 4 < 3600 ? ttl / 4 : 3600;
    unsigned removed, cut = conn_tick();
    int q;

    if (cut)
        log_info("closed %u connections whose request headers took over %d s", cut,
                 r->conf->header_timeout);
    if (ttl == 0 || ++r->ticks < (every ? every : 1))
        return;
    r->ticks = 0;
    /* Batches first: a test (and an admin) reading the key sweep's line knows both ran. */
    q = batches_sweep(r, (time_t)ttl, &removed);
    if (q < 0)
        log_warning("cannot sweep data/batches: %s", strerror(-q));
    else if (removed)
        log_info("removed %u batches whose tasks have all expired", removed);
    q = idem_sweep(r, (time_t)ttl, &removed);
    if (q < 0)
        log_warning("cannot sweep data/keys: %s", strerror(-q));
    else if (removed)
        log_info("removed %u idempotency keys of expired tasks", removed);
}

int main(int argc, char **argv)
{
    static const DaemonSpec spec = {
        .name = "rest",
        .summary = "Serves the taskmill HTTP API and streams uploads into the queue.",
        .init = rest_init,
        .shutdown = rest_shutdown,
        .on_tick = rest_tick,
        .reload_types = true,
    };
    return daemon_main(argc, argv, &spec);
}
