/* test_jail.c - a hostile decoder's escape attempts, run inside the real conversion jail.
 *
 * The test plays the pool: it holds an fd of data/ and a socket connected to a fake queue, then
 * forks a child that stands in one job folder, enters jail_enter() exactly as a conversion child
 * does (as the unprivileged user nobody when the test runs as root, so RLIMIT_NPROC counts) and
 * tries to get out: use the inherited fds, open sockets, io_uring, read or write other jobs and
 * data/, write outside, run programs, trace or signal the pool, make namespaces, mount, and
 * exhaust processes, files, disk and memory. Every attempt must be refused; what a decoder needs
 * (its own folder, the libraries, the CPU count) must still work. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/io_uring.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/convert/convert.h"
#include "check.h"
#include "taskmill/files.h"

static int data_fd = -1, queue_fd = -1;
static pid_t pool_pid, pool_pgid;

/* A refusal by the jail: the call fails with the errno the jail gives (seccomp EPERM, Landlock
 * EACCES or EXDEV, a closed fd EBADF, clone3 ENOSYS), not by accident for another reason. */
#define REFUSED(what, want, call)                                                                  \
    do {                                                                                           \
        errno = 0;                                                                                 \
        long ret_ = (long)(call);                                                                  \
        if (ret_ < 0 && (errno == (want) || ((want) == EACCES && errno == EXDEV)))                 \
            printf("ok: refused %s (%s)\n", what, strerror(errno));                                \
        else                                                                                       \
            CHECK_MSG(0, "%s: %s (returned %ld)",                                                  \
                      ret_ < 0 ? "not refused by the jail" : "escaped", what, ret_);               \
        if (ret_ < 0)                                                                              \
            printf("   errno %s\n", strerror(errno));                                              \
    } while (0)

static void try_fds(void)
{
    char path[64];

    CHECK_MSG(fcntl(data_fd, F_GETFD) < 0, "the pool's data/ fd %d is still open", data_fd);
    CHECK_MSG(fcntl(queue_fd, F_GETFD) < 0, "the pool's queue socket %d is still open", queue_fd);
    for (int fd = 3; fd < 1024; fd++) {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        CHECK_MSG(access(path, F_OK) < 0, "fd %d is open in the jail", fd);
    }
    REFUSED("a job.delete on the inherited queue socket", EBADF,
            send(queue_fd, "{\"v\":1,\"type\":\"job.delete\",\"rid\":1}", 35, MSG_NOSIGNAL));
}

static void try_network(const char *root)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    REFUSED("socket(AF_UNIX)", EPERM, socket(AF_UNIX, SOCK_SEQPACKET, 0));
    REFUSED("socket(AF_INET)", EPERM, socket(AF_INET, SOCK_STREAM, 0));
    REFUSED("socket(AF_INET6)", EPERM, socket(AF_INET6, SOCK_DGRAM, 0));
    REFUSED("socket(AF_NETLINK)", EPERM, socket(AF_NETLINK, SOCK_RAW, 0));
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/run/queue.sock", root);
    REFUSED("connect to the queue socket", EPERM, connect(3, (struct sockaddr *)&sa, sizeof(sa)));
}

static void try_kernel_interfaces(void)
{
    struct io_uring_params p = {0};
    struct rlimit rl = {0, 0};

    REFUSED("io_uring_setup", EPERM, syscall(SYS_io_uring_setup, 4, &p));
    REFUSED("io_uring_enter", EPERM, syscall(SYS_io_uring_enter, 0, 1, 0, 0, NULL, 0));
    REFUSED("userfaultfd", EPERM, syscall(SYS_userfaultfd, 0));
    REFUSED("perf_event_open", EPERM, syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    REFUSED("bpf", EPERM, syscall(SYS_bpf, 0, NULL, 0));
    REFUSED("keyctl", EPERM, syscall(SYS_keyctl, 0, 0, 0, 0, 0));
    REFUSED("unshare(CLONE_NEWUSER)", EPERM, unshare(CLONE_NEWUSER));
    REFUSED("unshare(CLONE_NEWNS)", EPERM, unshare(CLONE_NEWNS));
    REFUSED("setns", EPERM, setns(0, 0));
    REFUSED("mount", EPERM, mount("none", "/tmp", "tmpfs", 0, NULL));
    REFUSED("fsopen", EPERM, syscall(SYS_fsopen, "tmpfs", 0));
    REFUSED("open_tree", EPERM, syscall(SYS_open_tree, AT_FDCWD, "/", 0));
    REFUSED("open_by_handle_at", EPERM, syscall(SYS_open_by_handle_at, AT_FDCWD, NULL, 0));
    REFUSED("name_to_handle_at", EPERM,
            syscall(SYS_name_to_handle_at, AT_FDCWD, ".", NULL, NULL, 0));
    REFUSED("clone(CLONE_NEWUSER)", EPERM, syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0));
    REFUSED("clone(CLONE_NEWNET)", EPERM, syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0));
    REFUSED("clone3", ENOSYS, syscall(SYS_clone3, NULL, 0));
    REFUSED("raising RLIMIT_CORE", EPERM,
            setrlimit(RLIMIT_CORE, &(struct rlimit){RLIM_INFINITY, RLIM_INFINITY}));
    (void)rl;
}

static void try_processes(void)
{
    char buf[16];
    struct iovec local = {buf, sizeof(buf)}, remote = {(void *)&pool_pid, sizeof(buf)};

    REFUSED("execve /bin/true", EPERM, execl("/bin/true", "true", (char *)NULL));
    REFUSED("ptrace the pool", EPERM, ptrace(PTRACE_ATTACH, pool_pid, NULL, NULL));
    REFUSED("process_vm_readv of the pool", EPERM,
            process_vm_readv(pool_pid, &local, 1, &remote, 1, 0));
    REFUSED("kill the pool", EPERM, kill(pool_pid, 0));
    REFUSED("signal the pool's process group", EPERM, kill(-pool_pgid, 0));
    REFUSED("pidfd_open + pidfd_getfd", EPERM, syscall(SYS_pidfd_getfd, 0, 0, 0));
}

static void try_files(const char *root)
{
    char path[4200];

    REFUSED("read another job's result.json", EACCES, open("../B/result.json", O_RDONLY));
    REFUSED("overwrite another job's output", EACCES, open("../B/output.mp4", O_WRONLY));
    REFUSED("create a file in another job", EACCES, open("../B/evil", O_WRONLY | O_CREAT, 0644));
    REFUSED("rename another job", EACCES, rename("../B", "../C"));
    REFUSED("move this job out of in_progress/", EACCES, rename("../A", "../../done/A"));
    REFUSED("list in_progress/", EACCES, open("..", O_RDONLY | O_DIRECTORY));
    snprintf(path, sizeof(path), "%s/data", root);
    REFUSED("open data/", EACCES, open(path, O_RDONLY | O_DIRECTORY));
    snprintf(path, sizeof(path), "%s/data/done/D", root);
    REFUSED("create a job in done/", EACCES, mkdir(path, 0750));
    REFUSED("append to /etc/passwd", EACCES, open("/etc/passwd", O_WRONLY | O_APPEND));
    REFUSED("write in /tmp", EACCES, open("/tmp/taskmill-jail-escape", O_WRONLY | O_CREAT, 0644));
    REFUSED("read /root", EACCES, open("/root", O_RDONLY | O_DIRECTORY));
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pool_pid);
    REFUSED("read the pool's memory map", EACCES, open(path, O_RDONLY));
}

/* What a decoder needs must still work. */
static void still_works(void)
{
    char *buf;
    int fd;

    CHECK_MSG(file_read_all(AT_FDCWD, "request.json", 4096, &buf, NULL) == 0,
              "cannot read its own request.json");
    free(buf);
    fd = open("output.mkv.partial", O_WRONLY | O_CREAT | O_TRUNC, 0640);
    CHECK_MSG(fd >= 0 && write(fd, "x", 1) == 1, "cannot write its own output");
    close(fd);
    CHECK_MSG(rename("output.mkv.partial", "output.mkv") == 0, "cannot rename its own output");
    CHECK_MSG(open("/usr/lib/os-release", O_RDONLY) >= 0 || open("/etc/os-release", O_RDONLY) >= 0,
              "cannot read a system file");
    CHECK_MSG(sysconf(_SC_NPROCESSORS_ONLN) > 0, "cannot count the CPUs");
    CHECK_MSG(open("/dev/null", O_WRONLY) >= 0, "cannot open /dev/null");
}

static void check_limit(int resource, rlim_t want, const char *name)
{
    struct rlimit rl;

    CHECK_MSG(getrlimit(resource, &rl) == 0 && rl.rlim_cur == want && rl.rlim_max == want,
              "%s is %llu, not %llu", name, (unsigned long long)rl.rlim_cur,
              (unsigned long long)want);
}

static void try_exhaustion(const JailSpec *j)
{
    int p[2], n = 0, fd, files = 0;
    char big[65536] = {0};
    pid_t pid;

    check_limit(RLIMIT_CORE, 0, "RLIMIT_CORE");
    check_limit(RLIMIT_FSIZE, j->max_output_bytes, "RLIMIT_FSIZE");
    check_limit(RLIMIT_CPU, j->max_cpu_seconds, "RLIMIT_CPU");
    check_limit(RLIMIT_NOFILE, j->max_open_files, "RLIMIT_NOFILE");
#if !defined(__SANITIZE_ADDRESS__)
    check_limit(RLIMIT_AS, j->max_memory_bytes, "RLIMIT_AS");
    CHECK_MSG(malloc(2 * j->max_memory_bytes) == NULL, "an allocation over RLIMIT_AS succeeded");
#endif
    /* Disk: a write past RLIMIT_FSIZE fails with EFBIG (SIGXFSZ is ignored). */
    fd = open("big.partial", O_WRONLY | O_CREAT | O_TRUNC, 0640);
    while (fd >= 0 && write(fd, big, sizeof(big)) == (ssize_t)sizeof(big))
        if (lseek(fd, 0, SEEK_CUR) > (off_t)j->max_output_bytes)
            break;
    CHECK_MSG(fd >= 0 && errno == EFBIG && lseek(fd, 0, SEEK_CUR) <= (off_t)j->max_output_bytes,
              "wrote past RLIMIT_FSIZE");
    close(fd);
    unlink("big.partial");
    /* Files. */
    while ((fd = open("/dev/null", O_RDONLY)) >= 0)
        files++;
    CHECK_MSG(errno == EMFILE && files < (int)j->max_open_files, "opened %d files", files);
    for (fd = 3; fd < 3 + files + 1; fd++)
        close(fd);
    /* Processes: a fork bomb stops at the budget (root is exempt from RLIMIT_NPROC). */
    if (getuid() == 0) {
        printf("skipped: the fork bomb check, running as root (RLIMIT_NPROC does not bind root)\n");
        return;
    }
    CHECK(pipe(p) == 0);
    while (n < 10 * (int)j->max_processes && (pid = fork()) >= 0) {
        if (pid == 0) {
            char c;
            close(p[1]);
            _exit(read(p[0], &c, 1) < 0);
        }
        n++;
    }
    close(p[1]); /* the children see EOF and exit */
    while (wait(NULL) > 0)
        ;
    CHECK_MSG(n <= (int)j->max_processes, "a fork bomb started %d processes", n);
    printf("ok: a fork bomb stopped after %d processes (budget %u)\n", n, j->max_processes);
}

static int child(const char *root, const JailSpec *j)
{
    char path[4200];
    struct passwd *nobody = getpwnam("nobody");

    snprintf(path, sizeof(path), "%s/data/in_progress/A", root);
    if (chdir(path) < 0)
        return 100;
    if (getuid() == 0 && nobody) {
        if (setgroups(0, NULL) < 0 || setgid(nobody->pw_gid) < 0 || setuid(nobody->pw_uid) < 0)
            return 101;
        printf("ok: running as nobody (uid %d)\n", (int)getuid());
    }
    int r = jail_enter(j);
    if (r < 0) {
        printf("FAIL: jail_enter: %s\n", strerror(-r));
        return 102;
    }
    try_fds();
    try_network(root);
    try_kernel_interfaces();
    try_processes();
    try_files(root);
    still_works();
    try_exhaustion(j);
    return check_failures ? 1 : 0;
}

static void make_jobs(const char *root)
{
    static const char *const files[] = {"request.json", "result.json", "output.mp4"};
    char path[4200];
    struct passwd *nobody = getpwnam("nobody");

    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/data/in_progress/%c", root, "AB"[i]);
        CHECK(mkdir_p(path, 0755) == 0);
        for (size_t f = 0; f < 3; f++) {
            char file[4300];
            int fd;
            snprintf(file, sizeof(file), "%s/%s", path, files[f]);
            fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0666);
            CHECK(fd >= 0 && write(fd, "{}", 2) == 2);
            close(fd);
            chmod(file, 0666); /* only Landlock stands between nobody and these */
        }
        if (getuid() == 0 && nobody && i == 0)
            CHECK(chown(path, nobody->pw_uid, nobody->pw_gid) == 0);
        chmod(path, 0777);
    }
    snprintf(path, sizeof(path), "%s/data/done", root);
    CHECK(mkdir_p(path, 0777) == 0);
    chmod(root, 0755);
}

/* A fake queue: a listening socket the "pool" is connected to, as the real pool is. */
static void fake_queue(const char *root)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int l = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    char run[4200];

    snprintf(run, sizeof(run), "%s/run", root);
    CHECK(mkdir_p(run, 0755) == 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/run/queue.sock", root);
    CHECK(bind(l, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(l, 4) == 0);
    chmod(sa.sun_path, 0666);
    queue_fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    CHECK(connect(queue_fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
}

int main(void)
{
    char *root = check_tmpdir(), path[4200];
    JailSpec j = {.max_memory_bytes = UINT64_C(1) << 30,
                  .max_output_bytes = 1 << 20,
                  .max_cpu_seconds = 60,
                  .max_processes = 16,
                  .max_open_files = 64};
    int status;
    pid_t pid;

    pool_pid = getpid();
    pool_pgid = getpgid(0);
    chmod(root, 0755);
    make_jobs(root);
    fake_queue(root);
    snprintf(path, sizeof(path), "%s/data", root);
    data_fd = open(path, O_RDONLY | O_DIRECTORY); /* no O_CLOEXEC: the pool's fds are inherited */
    CHECK(data_fd >= 0);
    printf("Landlock ABI %d\n", jail_landlock_abi());
    CHECK_MSG(jail_landlock_abi() > 0, "this kernel has no Landlock: the filesystem is open");
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        int r = child(root, &j);
        fflush(stdout);
        _exit(r);
    }
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the jailed child reported %d",
              WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
    close(data_fd);
    close(queue_fd);
    rm_rf_at(AT_FDCWD, root);
    free(root);
    return check_done("test_jail");
}
