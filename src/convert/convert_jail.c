/* convert_jail.c - what a conversion child may do: its fds, its limits, its files, its syscalls.
 *
 * jail_enter() runs in the child once it stands in its job folder, before it opens the input,
 * so a hostile file meets a decoder that:
 *   - holds no fd but stdin/stdout/stderr (not the pool's queue socket, not data/);
 *   - is its own process group, and (Landlock ABI 6 and later) may signal only itself;
 *   - cannot use more than its share of memory, CPU time, disk, processes or open files, and
 *     cannot dump core (rlimits);
 *   - sees the filesystem through Landlock: its own job folder read-write, a few system paths
 *     read-only (libraries, /etc, the CPU topology), nothing else - not other jobs, not data/;
 *   - cannot run programs, open network sockets, trace or read other processes, make
 *     namespaces, mount, use io_uring (whose operations seccomp does not see), userfaultfd,
 *     perf events, BPF or the kernel keyring (a seccomp deny list).
 * A decoder that hits a limit fails its task; the pool is untouched. The order matters: fds are
 * closed first, the filter is loaded last (it forbids what the earlier steps use). */
#define _GNU_SOURCE
#include "convert.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Landlock rights newer than the kernel headers of Debian 12 (6.1). */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#define LL_ACCESS_NET_BIND_TCP    (1ULL << 0)
#define LL_ACCESS_NET_CONNECT_TCP (1ULL << 1)
#define LL_SCOPE_ABSTRACT_UNIX    (1ULL << 0)
#define LL_SCOPE_SIGNAL           (1ULL << 1)

/* struct landlock_ruleset_attr as of ABI 6; older kernels get a shorter prefix of it. */
typedef struct LandlockAttr {
    uint64_t handled_access_fs, handled_access_net, scoped;
} LandlockAttr;

#define FS_READ (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)
#define FS_EXEC (FS_READ | LANDLOCK_ACCESS_FS_EXECUTE)

int jail_landlock_abi(void)
{
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);

    return abi < 0 ? 0 : (int)abi;
}

/* --- rlimits ------------------------------------------------------------------------------- */

static int limit(int resource, rlim_t value)
{
    struct rlimit rl = {value, value};

    return setrlimit(resource, &rl) < 0 ? -errno : 0;
}

/* Tasks (processes and threads) that run as our real uid now: RLIMIT_NPROC counts them all, so
 * the child's budget comes on top of what the other taskmill processes already use. */
static unsigned user_tasks(void)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    unsigned n = 0;
    char path[300], line[128];
    uid_t me = getuid();

    while (d && (de = readdir(d))) {
        unsigned uid = (unsigned)-1, threads = 0;
        FILE *f;
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/status", de->d_name);
        if (!(f = fopen(path, "re")))
            continue;
        while (fgets(line, sizeof(line), f)) {
            sscanf(line, "Uid: %u", &uid);
            sscanf(line, "Threads: %u", &threads);
        }
        fclose(f);
        if (uid == me)
            n += threads;
    }
    if (d)
        closedir(d);
    return n;
}

static int set_limits(const JailSpec *j)
{
    int r = 0;

    r |= limit(RLIMIT_CORE, 0);
    r |= limit(RLIMIT_FSIZE, j->max_output_bytes ? j->max_output_bytes : RLIM_INFINITY);
    if (j->max_cpu_seconds)
        r |= limit(RLIMIT_CPU, (rlim_t)j->max_cpu_seconds);
#if !defined(__SANITIZE_ADDRESS__)
    /* AddressSanitizer reserves terabytes of address space: no RLIMIT_AS under it. */
    if (j->max_memory_bytes)
        r |= limit(RLIMIT_AS, j->max_memory_bytes);
#endif
    if (j->max_processes)
        r |= limit(RLIMIT_NPROC, user_tasks() + j->max_processes);
    if (j->max_open_files)
        r |= limit(RLIMIT_NOFILE, j->max_open_files);
    /* Past RLIMIT_FSIZE a write fails with EFBIG instead of killing the process. */
    signal(SIGXFSZ, SIG_IGN);
    return r ? -EPERM : 0;
}

/* --- Landlock ------------------------------------------------------------------------------ */

static uint64_t fs_rights(int abi)
{
    uint64_t all = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1; /* ABI 1: bits 0..12 */

    if (abi >= 2)
        all |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3)
        all |= LANDLOCK_ACCESS_FS_TRUNCATE;
    if (abi >= 5)
        all |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
    return all;
}

/* Allows rights beneath path; a path this system lacks is skipped. A file gets only the rights
 * that apply to files. */
static int allow_path(int ruleset, const char *path, uint64_t rights)
{
    struct landlock_path_beneath_attr pb = {.allowed_access = rights};
    uint64_t file_rights = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                           LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |
                           LANDLOCK_ACCESS_FS_IOCTL_DEV;
    struct stat st;
    int r = 0;

    pb.parent_fd = open(path, O_PATH | O_CLOEXEC);
    if (pb.parent_fd < 0)
        return errno == ENOENT ? 0 : -errno;
    if (fstat(pb.parent_fd, &st) == 0 && !S_ISDIR(st.st_mode))
        pb.allowed_access &= file_rights;
    if (syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0)
        r = -errno;
    close(pb.parent_fd);
    return r;
}

static int set_landlock(const JailSpec *j, int abi)
{
    static const char *const system_ro[] = {"/usr",
                                            "/lib",
                                            "/lib64",
                                            "/etc",
                                            "/sys/devices/system/cpu",
                                            "/sys/devices/system/node",
                                            "/proc/self",
                                            "/proc/stat",
                                            "/dev/urandom",
                                            "/dev/zero"};
    static const char *const system_x[] = {"/usr", "/lib", "/lib64", "/bin", "/sbin"};
    LandlockAttr attr = {.handled_access_fs = fs_rights(abi)};
    uint64_t mask = attr.handled_access_fs;
    size_t size = sizeof(attr.handled_access_fs);
    int rs, r = 0;

    if (abi >= 4) { /* TCP: nothing may be bound or connected to */
        attr.handled_access_net = LL_ACCESS_NET_BIND_TCP | LL_ACCESS_NET_CONNECT_TCP;
        size = offsetof(LandlockAttr, scoped);
    }
    if (abi >= 6) { /* no signal to, no abstract socket of, a process outside the jail */
        attr.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL;
        size = sizeof(attr);
    }
    rs = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    if (rs < 0)
        return -errno;
    r = allow_path(rs, ".", mask & ~LANDLOCK_ACCESS_FS_EXECUTE); /* the job folder */
    for (size_t i = 0; r == 0 && i < sizeof(system_ro) / sizeof(system_ro[0]); i++)
        r = allow_path(rs, system_ro[i], FS_READ);
    for (size_t i = 0; r == 0 && j->allow_exec && i < sizeof(system_x) / sizeof(system_x[0]); i++)
        r = allow_path(rs, system_x[i], FS_EXEC);
    if (r == 0)
        r = allow_path(rs, "/dev/null",
                       LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE);
    if (r == 0 && syscall(SYS_landlock_restrict_self, rs, 0) < 0)
        r = -errno;
    close(rs);
    return r;
}

/* --- seccomp ------------------------------------------------------------------------------- */

/* What a decoder, an encoder or an admin's exec program never needs. */
static const int denied[] = {
    SCMP_SYS(socket),
    SCMP_SYS(connect),
    SCMP_SYS(bind),
    SCMP_SYS(listen),
    SCMP_SYS(accept),
    SCMP_SYS(accept4),
    SCMP_SYS(ptrace),
    SCMP_SYS(process_vm_readv),
    SCMP_SYS(process_vm_writev),
    SCMP_SYS(process_madvise),
    SCMP_SYS(pidfd_getfd),
    SCMP_SYS(pidfd_send_signal),
    SCMP_SYS(tkill),
    SCMP_SYS(rt_sigqueueinfo),
    SCMP_SYS(rt_tgsigqueueinfo),
    SCMP_SYS(kcmp),
    SCMP_SYS(io_uring_setup),
    SCMP_SYS(io_uring_enter),
    SCMP_SYS(io_uring_register),
    SCMP_SYS(userfaultfd),
    SCMP_SYS(perf_event_open),
    SCMP_SYS(bpf),
    SCMP_SYS(keyctl),
    SCMP_SYS(add_key),
    SCMP_SYS(request_key),
    SCMP_SYS(unshare),
    SCMP_SYS(setns),
    SCMP_SYS(mount),
    SCMP_SYS(umount2),
    SCMP_SYS(pivot_root),
    SCMP_SYS(chroot),
    SCMP_SYS(fsopen),
    SCMP_SYS(fsconfig),
    SCMP_SYS(fsmount),
    SCMP_SYS(fspick),
    SCMP_SYS(move_mount),
    SCMP_SYS(open_tree),
    SCMP_SYS(mount_setattr),
    SCMP_SYS(open_by_handle_at),
    SCMP_SYS(name_to_handle_at),
    SCMP_SYS(fanotify_init),
    SCMP_SYS(kexec_load),
    SCMP_SYS(kexec_file_load),
    SCMP_SYS(init_module),
    SCMP_SYS(finit_module),
    SCMP_SYS(delete_module),
    SCMP_SYS(reboot),
    SCMP_SYS(swapon),
    SCMP_SYS(swapoff),
    SCMP_SYS(acct),
    SCMP_SYS(quotactl),
    SCMP_SYS(syslog),
    SCMP_SYS(settimeofday),
    SCMP_SYS(clock_settime),
    SCMP_SYS(clock_adjtime),
    SCMP_SYS(adjtimex),
    SCMP_SYS(sethostname),
    SCMP_SYS(setdomainname),
    SCMP_SYS(iopl),
    SCMP_SYS(ioperm),
    SCMP_SYS(vhangup),
    SCMP_SYS(personality),
    SCMP_SYS(uselib),
    SCMP_SYS(lookup_dcookie),
    SCMP_SYS(move_pages),
    SCMP_SYS(migrate_pages),
};

static int deny(scmp_filter_ctx ctx, int sys)
{
    return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), sys, 0);
}

/* No new namespaces through clone; clone3 passes its flags in memory, which a filter cannot
 * read, so it answers ENOSYS and the C library falls back to clone. */
static int clone_rules(scmp_filter_ctx ctx)
{
    const scmp_datum_t ns = CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET |
                            CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
    int r = 0;

    for (scmp_datum_t bit = 1; r == 0 && bit <= ns; bit <<= 1)
        if (ns & bit)
            r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                 SCMP_A0(SCMP_CMP_MASKED_EQ, bit, bit));
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    /* Pushing input into a terminal the child might still share. */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                             SCMP_A1(SCMP_CMP_EQ, TIOCSTI));
    return r;
}

static int set_filter(const JailSpec *j)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    int r = ctx ? 0 : -ENOMEM;

    for (size_t i = 0; r == 0 && i < sizeof(denied) / sizeof(denied[0]); i++)
        r = deny(ctx, denied[i]);
    if (r == 0 && !j->allow_exec)
        r = deny(ctx, SCMP_SYS(execve));
    if (r == 0 && !j->allow_exec)
        r = deny(ctx, SCMP_SYS(execveat));
    if (r == 0)
        r = clone_rules(ctx);
    if (r == 0)
        r = seccomp_load(ctx);
    seccomp_release(ctx);
    return r;
}

/* --- all of it ----------------------------------------------------------------------------- */

JailSpec jail_spec(const Conf *c, uint64_t input_size)
{
    return (JailSpec){
        .max_memory_bytes = c->max_memory_bytes,
        .max_output_bytes =
            c->max_output_bytes ? c->max_output_bytes : 4 * input_size + (UINT64_C(1) << 30),
        .max_cpu_seconds = (unsigned)c->max_cpu_seconds,
        .max_processes = (unsigned)c->max_processes,
        .max_open_files = (unsigned)c->max_open_files,
    };
}

int jail_enter(const JailSpec *j)
{
    int abi = jail_landlock_abi(), r;

    /* The pool's fds (queue socket, data/, anything a library opened) stay behind. */
    if (syscall(SYS_close_range, 3, ~0U, 0) < 0)
        return -errno;
    if (setsid() < 0 && errno != EPERM)
        return -errno;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    if ((r = set_limits(j)) < 0)
        return r;
    if (abi > 0 && (r = set_landlock(j, abi)) < 0)
        return r;
    return set_filter(j);
}
