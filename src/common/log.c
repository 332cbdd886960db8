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

void log_task(int prio, const char *task_id, const char *fmt, ...)
{
    char raw[2048], msg[4096];
    va_list ap;

    if (prio > log_max)
        return;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    /* Client strings end up in messages: a newline or a control character in one must not
     * start a new log entry (with a forged "<0>" priority) or garble the terminal. */
    text_escape(raw, msg, sizeof(msg));
    if (log_journal) {
        if (task_id)
            sd_journal_send("MESSAGE=%s: %s", task_id, msg, "PRIORITY=%d", prio,
                            "SYSLOG_IDENTIFIER=%s", log_ident, "TASK_ID=%s", task_id, NULL);
        else
            sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", prio, "SYSLOG_IDENTIFIER=%s",
                            log_ident, NULL);
        return;
    }
    if (task_id)
        fprintf(stderr, "<%d>%s: %s: %s\n", prio, log_ident, task_id, msg);
    else
        fprintf(stderr, "<%d>%s: %s\n", prio, log_ident, msg);
}
