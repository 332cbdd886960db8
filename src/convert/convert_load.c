/* convert_load.c - how many tasks the pool may run now: load-aware parallelism and cooldown
 * (seed 003's "parallel by load" and seed 004's load manager).
 *
 * The load is the 1-minute load average per core (/proc/loadavg) or, with load_source =
 * pressure, the CPU pressure of the last 10 s (/proc/pressure/cpu, "some avg10", percent). Below
 * load_medium the pool runs parallel_low tasks, below load_high parallel_medium, else
 * parallel_high (-1: as many as workers); never more than workers. A start also waits until
 * cooldown seconds have passed since the previous one. The pool asks again on its one-second
 * tick and whenever a task ends, and says why a slot is held. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "convert.h"
#include "taskmill/clock.h"

static int cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n > 0 ? (int)n : 1;
}

/* The current load in the configured measure, or -1 when it cannot be read. */
static double load_now(const Conf *c)
{
    char line[256];
    double v = -1;
    FILE *f;

    if (!strcmp(c->load_source, "pressure")) {
        if (!(f = fopen("/proc/pressure/cpu", "re")))
            return -1;
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "some avg10=%lf", &v) == 1)
                break;
        fclose(f);
        return v;
    }
    if (!(f = fopen("/proc/loadavg", "re")))
        return -1;
    if (fscanf(f, "%lf", &v) != 1)
        v = -1;
    fclose(f);
    return v < 0 ? v : v / cores();
}

static int level_slots(const Conf *c, int level)
{
    int v = level == 0 ? c->parallel_low : level == 1 ? c->parallel_medium : c->parallel_high;

    return v < 0 || v > c->workers ? c->workers : v;
}

LoadGate load_gate(const Conf *c, int busy, int64_t last_start_ns)
{
    double load = load_now(c);
    int level = load < 0 ? 0 : load >= c->load_high ? 2 : load >= c->load_medium ? 1 : 0;
    static const char *const names[] = {"low", "medium", "high"};
    LoadGate g = {.load = load, .allowed = level_slots(c, level)};
    int64_t cool_until = last_start_ns + (int64_t)c->cooldown * 1000000000;

    g.level = names[level];
    if (busy >= g.allowed && g.allowed < c->workers)
        snprintf(g.reason, sizeof(g.reason), "load %s (%.2f%s): %d at a time", names[level], load,
                 strcmp(c->load_source, "pressure") ? " per core" : "% cpu pressure", g.allowed);
    else if (c->cooldown && now_ns() < cool_until) {
        g.cooling = true;
        snprintf(g.reason, sizeof(g.reason), "cooldown: %llds until the next start",
                 (long long)((cool_until - now_ns()) / 1000000000 + 1));
    }
    return g;
}
