/* rest.c - taskmill-rest: the HTTP API on libmicrohttpd.
 *
 * MHD runs its own thread pool; the daemon's loop only waits for signals. On SIGTERM MHD is
 * stopped first, which ends every connection: uploads in flight are removed by upload_free and
 * the clients see a closed connection, so nothing half-uploaded is ever queued. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <netdb.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "rest.h"
#include "taskmill/daemon.h"
#include "taskmill/jobdir.h"
#include "taskmill/log.h"

static Rest rest;

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
        if (!strcmp(method, "POST") && !strcmp(url, "/v1/tasks")) {
            int q = upload_begin(r, c, &req->upload);
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
    return rest_dispatch(r, c, url, method);
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
    rest.mhd = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
            (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
        0, NULL, NULL, on_request, &rest, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)c->rest_threads, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, &rest, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->connection_timeout,
        MHD_OPTION_END);
    if (!rest.mhd) {
        log_err("cannot listen on %s", c->listen);
        return -EADDRINUSE;
    }
    log_info("listening on http://%s/", c->listen);
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
    if (r->data_fd >= 0)
        close(r->data_fd);
}

int main(int argc, char **argv)
{
    static const DaemonSpec spec = {
        .name = "rest",
        .summary = "Serves the taskmill HTTP API and streams uploads into the queue.",
        .init = rest_init,
        .shutdown = rest_shutdown,
    };
    return daemon_main(argc, argv, &spec);
}
