/* convert_usage.c - what a task's process used, for taskmill-convert and taskmill-node alike:
 * CPU and memory of a running child (GET /v1/workers), and an ended attempt's figures (its
 * task's history and GET /v1/workers/history). */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "convert.h"
#include "taskmill/clock.h"

void child_usage(pid_t pid, double *ret_cpu, uint64_t *ret_rss)
{
    char path[64], buf[1024], *p;
    unsigned long utime = 0, stime = 0;
    long rss = 0;
    size_t len;
    FILE *f;

    *ret_cpu = 0;
    *ret_rss = 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "re")))
        return;
    len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    if (!(p = strrchr(buf, ')'))) /* the command name may hold spaces */
        return;
    if (sscanf(p + 2,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d "
               "%*u %*u %ld",
               &utime, &stime, &rss) == 3) {
        *ret_cpu = (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
        *ret_rss = (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
    }
}

json_t *attempt_figures(const char *host, int slot, pid_t pid, const char *type, int64_t started_ns,
                        const struct rusage *ru)
{
    char started[40], finished[40];
    int64_t now = now_ns();
    double cpu = (double)(ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) +
                 (double)(ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) / 1e6;

    format_time(started_ns, started, sizeof(started));
    format_time(now, finished, sizeof(finished));
    return json_pack("{s:i, s:i, s:s, s:s, s:s, s:s, s:f, s:f, s:I}", "slot", slot, "pid", (int)pid,
                     "host", host, "task_type", type, "started_at", started, "finished_at",
                     finished, "wall_seconds", (double)(now - started_ns) / 1e9, "cpu_seconds", cpu,
                     "max_rss_bytes", (json_int_t)ru->ru_maxrss * 1024);
}
