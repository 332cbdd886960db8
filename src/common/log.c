/* log.c - the logging boundary: journal fields under systemd, "<N>" lines elsewhere.
 *
 * Only daemons and the client call this; the shared library returns errors instead of logging.
 * A line about a job carries TASK_ID= in the journal and starts with the id on stderr. Every
 * message is escaped (text_escape): one call, one line, whatever a client sent. */
#include "taskmill/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include "taskmill/text.h"

static const char *log_ident = "taskmill";
static int log_max = LOG_INFO;
static bool log_journal;

void log_open(const char *ident)
{
    log_ident = ident;
    /* systemd sets JOURNAL_STREAM when stderr is connected to the journal. */
    log_journal = getenv("JOURNAL_STREAM") != NULL;
}

void log_set_max_level(int prio)
{
    log_max = prio;
}

/* One field of a journal entry, "NAME=value", into buf; the iovec points at it. */
static void field(struct iovec *v, char *buf, size_t len, const char *name, const char *value)
{
    int n = snprintf(buf, len, "%s=%s", name, value);

    v->iov_base = buf;
    v->iov_len = n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
}

static void vlog(int prio, const char *task_id, const char *type, const char *state,
                 const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));
static void vlog(int prio, const char *task_id, const char *type, const char *state,
                 const char *fmt, va_list ap)
{
    char raw[2048], msg[4096], line[4200], f[6][4200];
    struct iovec v[6];
    int n = 0;

    if (prio > log_max)
        return;
    vsnprintf(raw, sizeof(raw), fmt, ap);
    /* Client strings end up in messages: a newline or a control character in one must not
     * start a new log entry (with a forged "<0>" priority) or garble the terminal. */
    text_escape(raw, msg, sizeof(msg));
    if (!log_journal) {
        if (task_id)
            fprintf(stderr, "<%d>%s: %s: %s\n", prio, log_ident, task_id, msg);
        else
            fprintf(stderr, "<%d>%s: %s\n", prio, log_ident, msg);
        return;
    }
    if (task_id) {
        snprintf(line, sizeof(line), "%s: %s", task_id, msg);
        field(&v[n], f[n], sizeof(f[n]), "MESSAGE", line), n++;
        field(&v[n], f[n], sizeof(f[n]), "TASK_ID", task_id), n++;
    } else {
        field(&v[n], f[n], sizeof(f[n]), "MESSAGE", msg), n++;
    }
    snprintf(raw, sizeof(raw), "%d", prio);
    field(&v[n], f[n], sizeof(f[n]), "PRIORITY", raw), n++;
    field(&v[n], f[n], sizeof(f[n]), "SYSLOG_IDENTIFIER", log_ident), n++;
    if (type)
        field(&v[n], f[n], sizeof(f[n]), "TASK_TYPE", type), n++;
    if (state)
        field(&v[n], f[n], sizeof(f[n]), "TASK_STATE", state), n++;
    sd_journal_sendv(v, n);
}

void log_task(int prio, const char *task_id, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(prio, task_id, NULL, NULL, fmt, ap);
    va_end(ap);
}

void log_event(int prio, const char *task_id, const char *task_type, const char *state,
               const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(prio, task_id, task_type, state, fmt, ap);
    va_end(ap);
}
