/* daemon.c - the start-up skeleton and event loop shared by the daemons.
 *
 * Order: parse arguments, load the config (a bad one stops here, naming file/line/key), open
 * logging, block signals into a signalfd, spec->init, READY=1, loop. The loop is epoll over the
 * daemon's fds, the signalfd and a one-second timerfd that pings the watchdog and calls
 * on_tick. SIGTERM/SIGINT: STOPPING=1, spec->stop, and the loop ends once the daemon quits.
 * SIGHUP: the task types are read again (reload_types). */
#define _GNU_SOURCE
#include "taskmill/daemon.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "taskmill/log.h"
#include "taskmill/tasktype.h"

#ifndef TASKMILL_VERSION
#define TASKMILL_VERSION "0.0.0"
#endif

typedef struct Watch {
    int fd;
    DaemonFdFn fn;
    void *userdata;
    struct Watch *next; /* in the list of all watches, so unwatch can find it */
    bool dead;
} Watch;

struct Daemon {
    const DaemonSpec *spec;
    const char *config_path; /* as given with --config, NULL for the default */
    Conf conf;
    int epoll_fd, signal_fd, timer_fd;
    Watch *watches;
    bool stopping, quit;
    int exit_code;
    void *userdata;
};

void print_version(const char *program)
{
    printf("%s %s\n", program, TASKMILL_VERSION);
}

static void usage(const DaemonSpec *spec)
{
    printf("Usage: taskmill-%s [--config FILE]\n%s\n\n"
           "  -c, --config FILE  configuration file (default %s)\n"
           "  -h, --help         show this help\n"
           "  -V, --version      show the version\n",
           spec->name, spec->summary, CONF_DEFAULT_PATH);
}

/* Returns 0 to go on, 1 to exit successfully (help, version), -1 on a usage error. */
static int parse_args(int argc, char **argv, const DaemonSpec *spec, const char **ret_config)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"version", no_argument, NULL, 'V'},
                                         {0}};
    char prog[64];
    int c;

    snprintf(prog, sizeof(prog), "taskmill-%s", spec->name);
    while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
        if (c == 'c')
            *ret_config = optarg;
        else if (c == 'h')
            return usage(spec), 1;
        else if (c == 'V')
            return print_version(prog), 1;
        else
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[optind]);
        return -1;
    }
    return 0;
}

/* The default path is optional: without it the built-in defaults apply. */
static int load_conf(const char *path, Conf *c)
{
    char err[1024];
    int r;

    if (!path && access(CONF_DEFAULT_PATH, F_OK) == 0)
        path = CONF_DEFAULT_PATH;
    r = conf_load(path, c, err, sizeof(err));
    if (r < 0)
        log_err("bad configuration: %s", err);
    return r;
}

static int setup_fds(Daemon *d)
{
    sigset_t mask;
    struct itimerspec its = {.it_interval = {1, 0}, .it_value = {1, 0}};
    struct epoll_event ev = {.events = EPOLLIN};

    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
        return -errno;
    signal(SIGPIPE, SIG_IGN);
    d->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    d->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    d->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (d->signal_fd < 0 || d->timer_fd < 0 || d->epoll_fd < 0)
        return -errno;
    if (timerfd_settime(d->timer_fd, 0, &its, NULL) < 0)
        return -errno;
    ev.data.ptr = &d->signal_fd;
    if (epoll_ctl(d->epoll_fd, EPOLL_CTL_ADD, d->signal_fd, &ev) < 0)
        return -errno;
    ev.data.ptr = &d->timer_fd;
    return epoll_ctl(d->epoll_fd, EPOLL_CTL_ADD, d->timer_fd, &ev) < 0 ? -errno : 0;
}

int daemon_watch(Daemon *d, int fd, uint32_t events, DaemonFdFn fn, void *userdata)
{
    Watch *w = calloc(1, sizeof(*w));
    struct epoll_event ev = {.events = events};

    if (!w)
        return -ENOMEM;
    *w = (Watch){.fd = fd, .fn = fn, .userdata = userdata, .next = d->watches};
    ev.data.ptr = w;
    if (epoll_ctl(d->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int r = -errno;
        free(w);
        return r;
    }
    d->watches = w;
    return 0;
}

void daemon_unwatch(Daemon *d, int fd)
{
    for (Watch *w = d->watches; w; w = w->next)
        if (w->fd == fd && !w->dead) {
            epoll_ctl(d->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
            w->dead = true; /* freed after the current batch of events */
            return;
        }
}

static void reap_watches(Daemon *d)
{
    Watch **pp = &d->watches;

    while (*pp) {
        Watch *w = *pp;
        if (w->dead) {
            *pp = w->next;
            free(w);
        } else {
            pp = &w->next;
        }
    }
}

void daemon_quit(Daemon *d, int exit_code)
{
    d->quit = true;
    d->exit_code = exit_code;
}

bool daemon_stopping(const Daemon *d)
{
    return d->stopping;
}

void *daemon_userdata(const Daemon *d)
{
    return d->userdata;
}

void daemon_set_userdata(Daemon *d, void *userdata)
{
    d->userdata = userdata;
}

void daemon_status(Daemon *d, const char *fmt, ...)
{
    char buf[256];
    va_list ap;

    (void)d;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    sd_notifyf(0, "STATUS=%s", buf);
}

static void begin_stop(Daemon *d)
{
    if (d->stopping)
        return;
    d->stopping = true;
    sd_notify(0, "STOPPING=1");
    log_info("stopping");
    if (!d->spec->stop || d->spec->stop(d) == 0)
        daemon_quit(d, d->exit_code);
}

/* SIGHUP: the task types of the file as it is now. The table is swapped atomically; the old
 * one stays allocated, so a task that started under it goes on. */
static void reload_types(Daemon *d)
{
    Conf fresh;

    if (!d->spec->reload_types) {
        log_info("SIGHUP ignored: this daemon reads its config at start only");
        return;
    }
    sd_notify(0, "RELOADING=1");
    if (load_conf(d->config_path, &fresh) < 0) {
        log_warning("reload refused; the task types stay as they were");
    } else {
        tasktype_conf_swap(&d->conf, &fresh);
        log_info("reloaded: %zu task types", tasktype_count(&d->conf));
        conf_free(&fresh);
        if (d->spec->on_reload)
            d->spec->on_reload(d);
    }
    sd_notify(0, "READY=1");
}

static void on_signals(Daemon *d)
{
    struct signalfd_siginfo si;

    while (read(d->signal_fd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGCHLD && d->spec->on_child)
            d->spec->on_child(d);
        else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
            begin_stop(d);
        else if (si.ssi_signo == SIGHUP && !d->stopping)
            reload_types(d);
    }
}

static void on_timer(Daemon *d)
{
    uint64_t ticks;

    if (read(d->timer_fd, &ticks, sizeof(ticks)) < 0)
        return;
    /* The watchdog is pinged from the loop that does the work: a hung loop is restarted. */
    sd_notify(0, "WATCHDOG=1");
    if (d->spec->on_tick)
        d->spec->on_tick(d);
}

static int run_loop(Daemon *d)
{
    struct epoll_event evs[32];

    while (!d->quit) {
        int n = epoll_wait(d->epoll_fd, evs, 32, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        for (int i = 0; i < n && !d->quit; i++) {
            void *p = evs[i].data.ptr;
            if (p == &d->signal_fd)
                on_signals(d);
            else if (p == &d->timer_fd)
                on_timer(d);
            else if (!((Watch *)p)->dead)
                ((Watch *)p)->fn(d, ((Watch *)p)->fd, evs[i].events, ((Watch *)p)->userdata);
        }
        reap_watches(d);
    }
    return 0;
}

static void daemon_free(Daemon *d)
{
    for (Watch *w = d->watches; w; w = w->next)
        w->dead = true;
    reap_watches(d);
    close(d->epoll_fd);
    close(d->signal_fd);
    close(d->timer_fd);
    conf_free(&d->conf);
}

int daemon_main(int argc, char **argv, const DaemonSpec *spec)
{
    Daemon d = {.spec = spec, .epoll_fd = -1, .signal_fd = -1, .timer_fd = -1};
    const char *config = NULL;
    char ident[64];
    int r;

    snprintf(ident, sizeof(ident), "taskmill-%s", spec->name);
    log_open(ident);
    r = parse_args(argc, argv, spec, &config);
    if (r != 0)
        return r > 0 ? EXIT_SUCCESS : 2;
    d.config_path = config;
    if (load_conf(config, &d.conf) < 0)
        return EXIT_FAILURE;
    log_set_max_level(d.conf.log_level);
    r = setup_fds(&d);
    if (r == 0)
        r = spec->init(&d, &d.conf);
    if (r < 0) {
        if (r == -ECANCELED) /* init has said why */
            log_err("cannot start");
        else
            log_err("cannot start: %s", strerror(-r));
        daemon_free(&d);
        return EXIT_FAILURE;
    }
    sd_notify(0, "READY=1");
    log_info("started (config %s)", d.conf.path ? d.conf.path : "built-in defaults");
    r = run_loop(&d);
    if (spec->shutdown)
        spec->shutdown(&d);
    daemon_free(&d);
    if (r < 0) {
        log_err("event loop failed: %s", strerror(-r));
        return EXIT_FAILURE;
    }
    log_info("stopped");
    return d.exit_code;
}
