/* queue.c - taskmill-queue: the only process that moves jobs between stage folders.
 *
 * It rebuilds its view from ROOT/data at start, listens on RUNTIME_DIR/queue.sock, and hands
 * pending jobs to converters in priority order as soon as one has a free slot: every step is
 * driven by a message, there is no polling loop. */
#include <errno.h>
#include <sys/timerfd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "queue.h"
#include "taskmill/ipc.h"
#include "taskmill/log.h"
#include "taskmill/files.h"

static Queue queue;

static void peer_close(Queue *q, Peer *p)
{
    daemon_unwatch(q->daemon, p->fd);
    for (Peer **pp = &q->peers; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    sched_peer_gone(q, p);
    close(p->fd);
    json_decref(p->kinds);
    json_decref(p->slots);
    free(p);
}

static int on_peer(Daemon *d, int fd, uint32_t events, void *userdata)
{
    Queue *q = daemon_userdata(d);
    Peer *p = userdata;
    int r = proto_receive(q, p);

    (void)fd, (void)events;
    if (r < 0 && r != -EAGAIN)
        peer_close(q, p);
    return 0;
}

static int on_accept(Daemon *d, int fd, uint32_t events, void *userdata)
{
    Queue *q = userdata;
    Peer *p;
    int cfd, r;

    (void)events;
    r = ipc_accept(fd, &cfd);
    if (r < 0) {
        if (r != -EAGAIN)
            log_warning("refused a peer: %s", strerror(-r));
        return 0;
    }
    p = calloc(1, sizeof(*p));
    if (!p) {
        close(cfd);
        return 0;
    }
    p->fd = cfd;
    p->role = IPC_ROLE_NONE;
    r = daemon_watch(d, cfd, EPOLLIN, on_peer, p);
    if (r < 0) {
        close(cfd);
        free(p);
        return 0;
    }
    p->next = q->peers;
    q->peers = p;
    return 0;
}

/* A scheduled job (run_at, or a back-off) became due. */
static int on_wake(Daemon *d, int fd, uint32_t events, void *userdata)
{
    Queue *q = userdata;
    uint64_t n;

    (void)d, (void)events;
    if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        log_warning("wake timer: %s", strerror(errno));
    sched_dispatch(q);
    return 0;
}

static int queue_init(Daemon *d, const Conf *c)
{
    Queue *q = &queue;
    int r;

    *q = (Queue){.finished = json_object(),
                 .daemon = d,
                 .conf = c,
                 .data_fd = -1,
                 .listen_fd = -1,
                 .lock_fd = -1,
                 .wake_fd = -1,
                 .history_lines = (size_t)-1};
    hist_init(&q->conversion, metrics_conversion_le, metrics_conversion_n);
    hist_init(&q->wait, metrics_wait_le, metrics_wait_n);
    q->claims_tail = &q->claims;
    daemon_set_userdata(d, q);
    r = jobdir_open_data(c->root, true, &q->data_fd);
    if (r < 0) {
        log_err("cannot open %s/data: %s", c->root, strerror(-r));
        return r;
    }
    r = jobdir_lock(q->data_fd, &q->lock_fd);
    if (r < 0) {
        log_err("cannot take %s/data/.queue.lock: %s", c->root,
                r == -EWOULDBLOCK ? "another taskmill-queue runs on this root" : strerror(-r));
        return r;
    }
    /* Listen first, then scan: a job rest publishes meanwhile is either seen by the scan or
     * told through the socket, whose messages wait until the loop runs. */
    r = mkdir_p(c->runtime_dir, 0750);
    if (r == 0)
        r = ipc_listen(c->runtime_dir, IPC_QUEUE_SOCK, &q->listen_fd);
    if (r < 0) {
        log_err("cannot listen on %s/%s: %s", c->runtime_dir, IPC_QUEUE_SOCK, strerror(-r));
        return r;
    }
    q->wake_fd = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC | TFD_NONBLOCK);
    if (q->wake_fd < 0 || (r = daemon_watch(d, q->wake_fd, EPOLLIN, on_wake, q)) < 0)
        return q->wake_fd < 0 ? -errno : r;
    q->draining = admin_draining_saved(q);
    r = index_open(c->root, true, &q->index);
    if (r < 0) {
        log_err("cannot open the task index in %s/data/index: %s", c->root, strerror(-r));
        return r;
    }
    r = sched_scan(q);
    if (r < 0)
        return r;
    sched_arm(q);
    sched_update_status(q);
    return daemon_watch(d, q->listen_fd, EPOLLIN, on_accept, q);
}

static void queue_shutdown(Daemon *d)
{
    Queue *q = daemon_userdata(d);

    /* Jobs handed out stay in in_progress/: the converters hand them back or init resets them. */
    while (q->peers) {
        Peer *p = q->peers;
        q->peers = p->next;
        close(p->fd);
        json_decref(p->kinds);
        json_decref(p->slots);
        free(p);
    }
    if (q->wake_fd >= 0)
        close(q->wake_fd);
    sched_free(q);
    json_decref(q->finished);
    index_close(q->index);
    if (q->listen_fd >= 0)
        close(q->listen_fd);
    if (q->data_fd >= 0)
        close(q->data_fd);
    if (q->lock_fd >= 0)
        close(q->lock_fd);
}

/* Expired results are swept every minute, or more often for a short result_ttl. */
static void queue_tick(Daemon *d)
{
    Queue *q = daemon_userdata(d);
    unsigned every = q->conf->result_ttl / 4 < 60 ? (unsigned)q->conf->result_ttl / 4 : 60;

    if (++q->ticks >= (every ? every : 1)) {
        q->ticks = 0;
        sched_expire(q);
    }
}

/* SIGHUP: types may have been added or changed; jobs that waited for theirs may start now. */
static void queue_reload(Daemon *d)
{
    sched_dispatch(daemon_userdata(d));
}

int main(int argc, char **argv)
{
    static const DaemonSpec spec = {
        .name = "queue",
        .summary = "Moves jobs through the file queue and hands work to converters.",
        .init = queue_init,
        .shutdown = queue_shutdown,
        .on_tick = queue_tick,
        .reload_types = true,
        .on_reload = queue_reload,
    };
    return daemon_main(argc, argv, &spec);
}
