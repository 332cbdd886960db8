/* convert_jail.c - what a conversion child may do: resource limits and a syscall filter.
 *
 * Applied in the child before it opens the input, so a hostile file meets a decoder that cannot
 * use more than its share of memory, CPU time or disk, cannot dump core, cannot run programs,
 * and cannot open network sockets. A decoder that hits a limit fails its task (a crash is
 * retried a bounded number of times, then the task fails for good); the pool is untouched. */
#include <errno.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/resource.h>

#include "convert.h"

static int limit(int resource, rlim_t value)
{
    struct rlimit rl = {value, value};

    return setrlimit(resource, &rl) < 0 ? -errno : 0;
}

static int set_limits(const Conf *c, uint64_t input_size)
{
    uint64_t out = c->max_output_bytes ? c->max_output_bytes : 4 * input_size + (UINT64_C(1) << 30);
    int r = 0;

    r |= limit(RLIMIT_CORE, 0);
    r |= limit(RLIMIT_FSIZE, out);
    if (c->max_cpu_seconds)
        r |= limit(RLIMIT_CPU, (rlim_t)c->max_cpu_seconds);
#if !defined(__SANITIZE_ADDRESS__)
    /* AddressSanitizer reserves terabytes of address space: no RLIMIT_AS under it. */
    if (c->max_memory_bytes)
        r |= limit(RLIMIT_AS, c->max_memory_bytes);
#endif
    /* Past RLIMIT_FSIZE a write fails with EFBIG instead of killing the process. */
    signal(SIGXFSZ, SIG_IGN);
    return r ? -EPERM : 0;
}

/* Default allow, and a short deny list of what a decoder never needs. */
static int set_filter(void)
{
    static const int denied[] = {
        SCMP_SYS(execve),
        SCMP_SYS(execveat),
        SCMP_SYS(socket),
        SCMP_SYS(connect),
        SCMP_SYS(bind),
        SCMP_SYS(ptrace),
        SCMP_SYS(process_vm_readv),
        SCMP_SYS(process_vm_writev),
        SCMP_SYS(mount),
        SCMP_SYS(bpf),
        SCMP_SYS(keyctl),
        SCMP_SYS(add_key),
    };
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    int r = ctx ? 0 : -ENOMEM;

    for (size_t i = 0; r == 0 && i < sizeof(denied) / sizeof(denied[0]); i++)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), denied[i], 0);
    if (r == 0)
        r = seccomp_load(ctx);
    seccomp_release(ctx);
    return r;
}

int job_jail(const Conf *c, uint64_t input_size)
{
    int r = set_limits(c, input_size);

    return r < 0 ? r : set_filter();
}
