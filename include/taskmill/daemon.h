/* daemon.h - the one start-up skeleton every taskmill daemon is handed to.
 *
 * daemon_main parses --config/--help/--version, loads the config, sets up logging, blocks
 * signals into a signalfd, calls the daemon's init, sends READY=1, runs an epoll loop that
 * dispatches fd callbacks and pings the watchdog, and on SIGTERM/SIGINT sends STOPPING=1 and
 * calls the daemon's shutdown. SIGHUP reloads the task types of daemons that ask for it. */
#ifndef TASKMILL_DAEMON_H
#define TASKMILL_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "taskmill/conf.h"

typedef struct Daemon Daemon;
typedef int (*DaemonFdFn)(Daemon *d, int fd, uint32_t events, void *userdata);

typedef struct DaemonSpec {
    const char *name;    /* "queue" -> program taskmill-queue */
    const char *summary; /* one line for --help */
    /* 0, or -errno to refuse to start (-ECANCELED: init has logged why itself). */
    int (*init)(Daemon *d, const Conf *c);
    /* Asked to stop (SIGTERM/SIGINT). Return 0 when the loop may end now, 1 to keep running
     * until daemon_quit() is called (to finish work in flight). */
    int (*stop)(Daemon *d);
    void (*shutdown)(Daemon *d);
    void (*on_child)(Daemon *d); /* SIGCHLD; may be NULL */
    void (*on_tick)(Daemon *d);  /* about once a second; may be NULL */
    /* SIGHUP re-reads the config file and takes its task types (the rest of the config is
     * read at start only); a file with a mistake is refused and the old types stay. Without
     * this, SIGHUP is ignored. */
    bool reload_types;
    void (*on_reload)(Daemon *d); /* after a reload took; may be NULL */
} DaemonSpec;

int daemon_main(int argc, char **argv, const DaemonSpec *spec);

int daemon_watch(Daemon *d, int fd, uint32_t events, DaemonFdFn fn, void *userdata);
void daemon_unwatch(Daemon *d, int fd);
void daemon_quit(Daemon *d, int exit_code);
bool daemon_stopping(const Daemon *d);
void *daemon_userdata(const Daemon *d);
void daemon_set_userdata(Daemon *d, void *userdata);
/* sd_notify STATUS= line (also kept for logging). */
void daemon_status(Daemon *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Shared by all programs: prints "taskmill-NAME VERSION". */
void print_version(const char *program);

#endif
