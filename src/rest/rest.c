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

static enum MHD_Result unauthorized(struct MHD_Connection *c)
{
    json_t *body = json_pack("{s:{s:s, s:s}}", "error", "code", "unauthorized", "message",
                             "a valid 'Authorization: Bearer <token>' header is required");
    char *s = json_dumps(body, JSON_COMPACT);
    struct MHD_Response *resp;
    enum MHD_Result ret;

    json_decref(body);
    resp = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json; charset=utf-8");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"taskmill\"");
    ret = MHD_queue_response(c, MHD_HTTP_UNAUTHORIZED, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **con_cls)
{
    Rest *r = cls;
    Req *req = *con_cls;

    (void)version;
    if (!req) {
        req = calloc(1, sizeof(*req));
        if (!req)
            return MHD_NO;
        *con_cls = req;
        if (strcmp(url, "/healthz") &&
            auth_check(
                MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
                &req->auth) < 0)
            return unauthorized(c); /* before any body is read */
        if (!strcmp(method, "POST") && !strcmp(url, "/v1/tasks")) {
            int q = upload_begin(r, c, &req->auth, &req->upload);
            /* Refused before the body (413, 415): answer at once; MHD then closes the
             * connection rather than read a body nobody wants. */
            return q < 0 ? MHD_NO : q > 0 ? upload_finish(req->upload, c) : MHD_YES;
        }
        return MHD_YES; /* answer on the second call, so MHD keeps the connection alive */
    }
    if (req->upload) {
        if (*data_size > 0)
            return upload_feed(req->upload, data, data_size);
        return upload_finish(req->upload, c);
    }
    return rest_dispatch(r, c, &req->auth, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    Req *req = *con_cls;

    (void)cls, (void)c, (void)toe;
    if (!req)
        return;
    if (req->upload)
        upload_free(req->upload);
    free(req);
    *con_cls = NULL;
}

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

/* Limits against slow and greedy clients: connection timeout (MHD has none by default),
 * connections in all and per address, and the memory for a request's headers. */
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

    return MHD_start_daemon(flags, 0, NULL, NULL, on_request, r, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)ss, MHD_OPTION_THREAD_POOL_SIZE,
                            (unsigned)c->rest_threads, MHD_OPTION_NOTIFY_COMPLETED, on_completed, r,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->connection_timeout,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->max_connections,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)c->max_connections_per_ip,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)c->max_header_bytes,
                            MHD_OPTION_ARRAY, r->tls_cert ? tls : tls + 2, MHD_OPTION_END);
}

static int rest_init(Daemon *d, const Conf *c)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int r;

    rest = (Rest){.conf = c, .data_fd = -1, .request_fd = -1, .keys_fd = -1};
    daemon_set_userdata(d, &rest);
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
    if (rest.request_fd < 0 || (r = resolve_listen(c, &ss, &len)) < 0)
        return rest.request_fd < 0 ? -errno : r;
    if ((r = load_tokens(c, &ss)) < 0)
        return r;
    if ((r = load_tls(&rest)) < 0)
        return r;
    upload_recover(&rest);
    rest.mhd = start_mhd(&rest, &ss);
    if (!rest.mhd) {
        log_err("cannot listen on %s", c->listen);
        return -EADDRINUSE;
    }
    log_info("listening on %s://%s/", rest.tls_cert ? "https" : "http", c->listen);
    return 0;
}

static void rest_shutdown(Daemon *d)
{
    Rest *r = daemon_userdata(d);

    if (r->mhd)
        MHD_stop_daemon(r->mhd); /* ends every connection; on_completed cleans each */
    if (r->request_fd >= 0)
        close(r->request_fd);
    if (r->keys_fd >= 0)
        close(r->keys_fd);
    auth_free();
    free(r->tls_cert);
    free(r->tls_key);
    if (r->data_fd >= 0)
        close(r->data_fd);
}

/* Keys of expired tasks are swept as often as the queue expires results (result_ttl / 4,
 * at most hourly); no task can expire sooner than result_ttl after its key was written. */
static void rest_tick(Daemon *d)
{
    Rest *r = daemon_userdata(d);
    unsigned ttl = (unsigned)r->conf->result_ttl, every = ttl / 4 < 3600 ? ttl / 4 : 3600;
    unsigned removed;
    int q;

    if (ttl == 0 || ++r->ticks < (every ? every : 1))
        return;
    r->ticks = 0;
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
    };
    return daemon_main(argc, argv, &spec);
}
