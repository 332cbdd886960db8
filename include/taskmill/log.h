/* log.h - one logging entry point for every taskmill program.
 *
 * Under systemd (JOURNAL_STREAM set) lines go to the journal with PRIORITY=, SYSLOG_IDENTIFIER=
 * and, for job lines, TASK_ID=, so `journalctl TASK_ID=<uuid>` shows one task across daemons
 * (its events also TASK_TYPE= and TASK_STATE=).
 * Elsewhere they go to stderr as "<N>ident: message" lines. Library code never logs. */
#ifndef TASKMILL_LOG_H
#define TASKMILL_LOG_H

#include <syslog.h>

void log_open(const char *ident);
void log_set_max_level(int prio);
void log_task(int prio, const char *task_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A task's event (it changed state, or a worker took it or let it go): log_task's line, and in
 * the journal also TASK_TYPE= and TASK_STATE=, the state the event leads to (received,
 * scheduled, pending, in_progress, done, failed, deleted, expired); NULL leaves one out. So
 * `journalctl TASK_STATE=failed` lists every failure, `journalctl TASK_TYPE=...` one type. */
void log_event(int prio, const char *task_id, const char *task_type, const char *state,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define log_err(...)     log_task(LOG_ERR, NULL, __VA_ARGS__)
#define log_warning(...) log_task(LOG_WARNING, NULL, __VA_ARGS__)
#define log_notice(...)  log_task(LOG_NOTICE, NULL, __VA_ARGS__)
#define log_info(...)    log_task(LOG_INFO, NULL, __VA_ARGS__)
#define log_debug(...)   log_task(LOG_DEBUG, NULL, __VA_ARGS__)

#endif
