/* test_jobdir.c - the file queue on a real temporary directory: moves, no-replace, reset, and
 * boot recovery compared against a golden listing of data/. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "taskmill/jobdir.h"
#include "taskmill/task.h"
#include "taskmill/files.h"
#include "taskmill/recover.h"
#include "taskmill/claim.h"

static const char *ID1 = "11111111-1111-4111-8111-111111111111";
static const char *ID2 = "22222222-2222-4222-8222-222222222222";
static const char *ID3 = "33333333-3333-4333-8333-333333333333";
static const char *ID4 = "44444444-4444-4444-8444-444444444444";

static void touch(int dir_fd, const char *path)
{
    int fd = openat(dir_fd, path, O_WRONLY | O_CREAT | O_TRUNC, 0640);

    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(write(fd, "x", 1) == 1);
        close(fd);
    }
}

static void make_job(int data_fd, Stage s, const char *id, bool complete)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", stage_dir(s), id);
    CHECK(mkdirat(data_fd, path, 0750) == 0);
    snprintf(path, sizeof(path), "%s/%s/input.mp4", stage_dir(s), id);
    touch(data_fd, path);
    if (complete) {
        snprintf(path, sizeof(path), "%s/%s/request.json", stage_dir(s), id);
        touch(data_fd, path);
    }
}

/* "stage/name[/file...]" lines of everything under data/, sorted: the golden form. */
static void listing(int dir_fd, const char *prefix, char *out, size_t len)
{
    char *names[64];
    int n = 0, fd = openat(dir_fd, prefix[0] ? prefix : ".", O_RDONLY | O_DIRECTORY);
    DIR *d = fdopendir(fd);
    struct dirent *de;

    while (d && (de = readdir(d)) && n < 64)
        if (de->d_name[0] != '.' || strlen(de->d_name) > 2)
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                names[n++] = strdup(de->d_name);
    if (d)
        closedir(d);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(names[i], names[j]) > 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
    for (int i = 0; i < n; i++) {
        char path[512];
        struct stat st;
        snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "/" : "", names[i]);
        strncat(out, path, len - strlen(out) - 1);
        strncat(out, "\n", len - strlen(out) - 1);
        if (fstatat(dir_fd, path, &st, 0) == 0 && S_ISDIR(st.st_mode))
            listing(dir_fd, path, out, len);
        free(names[i]);
    }
}

static void test_move(int data_fd)
{
    Stage s;

    make_job(data_fd, STAGE_PENDING, ID1, true);
    CHECK(jobdir_find(data_fd, ID1, &s) == 0 && s == STAGE_PENDING);
    CHECK(jobdir_move(data_fd, ID1, STAGE_PENDING, STAGE_IN_PROGRESS) == 0);
    CHECK(jobdir_find(data_fd, ID1, &s) == 0 && s == STAGE_IN_PROGRESS);
    CHECK(jobdir_move(data_fd, ID1, STAGE_PENDING, STAGE_IN_PROGRESS) == -ENOENT);
    make_job(data_fd, STAGE_PENDING, ID1, true); /* a second copy must never overwrite */
    CHECK(jobdir_move(data_fd, ID1, STAGE_PENDING, STAGE_IN_PROGRESS) == -EEXIST);
    CHECK(jobdir_remove(data_fd, STAGE_PENDING, ID1) == 0);
    CHECK(jobdir_remove(data_fd, STAGE_IN_PROGRESS, ID1) == 0);
    CHECK(jobdir_find(data_fd, ID1, &s) == -ENOENT);
    CHECK(jobdir_find(data_fd, "../pending", &s) == -EINVAL);
    CHECK(jobdir_move(data_fd, "../../etc", STAGE_PENDING, STAGE_DONE) == -EINVAL);
}

/* A reset removes everything an attempt produced or half-wrote (jobdir.h names them all) and
 * keeps what the job is: its request, its input, its claim, its callback record. */
static void test_reset(int data_fd)
{
    static const char *const attempt[] = {
        "output.mkv.partial", "output.mkv", "progress.json", ".tmp.result.json",     "result.json",
        "error.json",         "node.json",  "output.node-2", "output.node-3.partial"};
    static const char after[] = "callback.json\nclaim.json\ninput.mp4\nrequest.json\n";
    char out[1024] = "";
    int fd;

    make_job(data_fd, STAGE_IN_PROGRESS, ID1, true);
    CHECK(jobdir_open(data_fd, STAGE_IN_PROGRESS, ID1, &fd) == 0);
    for (size_t i = 0; i < sizeof(attempt) / sizeof(attempt[0]); i++)
        touch(fd, attempt[i]);
    touch(fd, "claim.json");
    touch(fd, "callback.json");
    CHECK_INT(jobdir_reset(fd), 9);
    for (size_t i = 0; i < sizeof(attempt) / sizeof(attempt[0]); i++)
        CHECK_MSG(faccessat(fd, attempt[i], F_OK, AT_SYMLINK_NOFOLLOW) < 0, "%s survived the reset",
                  attempt[i]);
    listing(fd, "", out, sizeof(out));
    CHECK_STR(out, after);
    CHECK_INT(jobdir_reset(fd), 0);
    close(fd);
    CHECK(jobdir_remove(data_fd, STAGE_IN_PROGRESS, ID1) == 0);
}

static void test_recover(int data_fd)
{
    static const char golden[] = "corrupt\ndone\nfailed\nin_progress\npending\n"
                                 "pending/11111111-1111-4111-8111-111111111111\n"
                                 "pending/11111111-1111-4111-8111-111111111111/claim.json\n"
                                 "pending/11111111-1111-4111-8111-111111111111/input.mp4\n"
                                 "pending/11111111-1111-4111-8111-111111111111/request.json\n"
                                 "pending/22222222-2222-4222-8222-222222222222\n"
                                 "pending/22222222-2222-4222-8222-222222222222/input.mp4\n"
                                 "pending/22222222-2222-4222-8222-222222222222/request.json\n"
                                 "request\ntrash\n";
    char out[4096] = "";
    RecoverStats st;
    JobClaim c;
    int fd;

    make_job(data_fd, STAGE_IN_PROGRESS, ID1, true);
    CHECK(jobdir_open(data_fd, STAGE_IN_PROGRESS, ID1, &fd) == 0);
    touch(fd, "output.mp4.partial");
    CHECK(claim_start(fd, &c) == 0 && c.attempts == 1 && c.active); /* an attempt in flight */
    close(fd);
    make_job(data_fd, STAGE_REQUEST, ID2, true);  /* complete upload: published */
    make_job(data_fd, STAGE_REQUEST, ID3, false); /* no request.json: removed */
    CHECK(mkdirat(data_fd, "request/.tmp-44444444-4444-4444-8444-444444444444", 0750) == 0);
    make_job(data_fd, STAGE_TRASH, ID3, true); /* an interrupted deletion */
    CHECK(recover_run(data_fd, RECOVER_UPLOADS, NULL, NULL, &st) == 0);
    CHECK(st.requeued == 1 && st.published == 1 && st.dropped_uploads == 2 && st.errors == 0);
    listing(data_fd, "", out, sizeof(out));
    CHECK_STR(out, golden);
    /* The interrupted attempt is an interruption, not an attempt. */
    CHECK(jobdir_open(data_fd, STAGE_PENDING, ID1, &fd) == 0);
    CHECK(claim_read(fd, &c) == 0);
    CHECK(c.attempts == 0 && c.interruptions == 1 && !c.active);
    close(fd);
    /* Safe to run twice: nothing changes. */
    CHECK(recover_run(data_fd, RECOVER_UPLOADS, NULL, NULL, &st) == 0);
    CHECK(st.requeued == 0 && st.published == 0 && st.dropped_uploads == 0);
    out[0] = '\0';
    listing(data_fd, "", out, sizeof(out));
    CHECK_STR(out, golden);
    CHECK(jobdir_open(data_fd, STAGE_PENDING, ID1, &fd) == 0);
    CHECK(claim_read(fd, &c) == 0 && c.attempts == 0 && c.interruptions == 1);
    close(fd);
}

/* Two interruptions (a queue killed twice mid-conversion) and one crash: attempts counts the
 * crash only; a recovery that is itself interrupted and run again counts nothing twice. */
static void test_claim_counts(int data_fd)
{
    JobClaim c;
    int fd;

    make_job(data_fd, STAGE_IN_PROGRESS, ID3, true);
    CHECK(jobdir_open(data_fd, STAGE_IN_PROGRESS, ID3, &fd) == 0);
    for (int i = 0; i < 2; i++) {
        CHECK(claim_start(fd, NULL) == 0);
        CHECK(claim_interrupt(fd) == 0);
        CHECK(claim_interrupt(fd) == 0); /* a second recovery of the same interruption */
    }
    CHECK(claim_read(fd, &c) == 0 && c.attempts == 0 && c.interruptions == 2 && !c.active);
    CHECK(claim_start(fd, NULL) == 0);
    CHECK(file_write_atomic(fd, "error.json", "{\"code\":\"worker_crashed\"}", 25) == 0);
    CHECK(claim_interrupt(fd) == 0); /* the converter died: an attempt, not an interruption */
    CHECK(claim_read(fd, &c) == 0 && c.attempts == 1 && c.interruptions == 2 && !c.active);
    CHECK(claim_start(fd, &c) == 0 && c.attempts == 2 && c.active);
    CHECK(faccessat(fd, "error.json", F_OK, 0) < 0); /* a new attempt starts from nothing */
    /* a cluster node went silent and another took the task over at once: an interruption,
     * the same attempt count, still active, and the new attempt's files stay */
    CHECK(file_write_atomic(fd, "node.json", "{}", 2) == 0);
    CHECK(claim_restart(fd) == 0 && claim_read(fd, &c) == 0);
    CHECK(c.attempts == 2 && c.interruptions == 3 && c.active);
    CHECK(faccessat(fd, "node.json", F_OK, 0) == 0);
    CHECK(claim_end(fd) == 0 && claim_read(fd, &c) == 0 && c.attempts == 2 && !c.active);
    close(fd);
    CHECK(jobdir_remove(data_fd, STAGE_IN_PROGRESS, ID3) == 0);
}

static void test_recover_keeps_uploads(int data_fd)
{
    RecoverStats st;

    CHECK(mkdirat(data_fd, "request/.tmp-55555555-5555-4555-8555-555555555555", 0750) == 0);
    CHECK(recover_run(data_fd, 0, NULL, NULL, &st) == 0);
    CHECK(faccessat(data_fd, "request/.tmp-55555555-5555-4555-8555-555555555555", F_OK, 0) == 0);
}

static void test_atomic_write(int data_fd)
{
    char *buf;
    size_t len;

    CHECK(file_write_atomic(data_fd, "x.json", "{\"a\":1}", 7) == 0);
    CHECK(file_read_all(data_fd, "x.json", 100, &buf, &len) == 0 && len == 7);
    CHECK(faccessat(data_fd, ".tmp.x.json", F_OK, 0) < 0);
    free(buf);
    unlinkat(data_fd, "x.json", 0);
}

/* A writer keeps publishing callback.json through the job's fd (as taskmill-callback does)
 * while the job is deleted: the deletion succeeds every time and the task is gone. */
typedef struct Writer {
    int fd;
    volatile int stop;
    unsigned writes;
} Writer;

static void *writer_main(void *arg)
{
    Writer *w = arg;

    while (!w->stop)
        if (file_write_atomic(w->fd, "callback.json", "{\"attempts\":[]}", 15) == 0)
            w->writes++;
    return NULL;
}

static void test_remove_while_written(int data_fd)
{
    unsigned writes = 0;
    Stage s;

    for (int i = 0; i < 200; i++) {
        Writer w = {0};
        pthread_t t;
        make_job(data_fd, STAGE_DONE, ID4, true);
        CHECK(jobdir_open(data_fd, STAGE_DONE, ID4, &w.fd) == 0);
        CHECK(pthread_create(&t, NULL, writer_main, &w) == 0);
        while (w.writes < 3)
            sched_yield();
        CHECK(jobdir_remove(data_fd, STAGE_DONE, ID4) == 0);
        CHECK(jobdir_find(data_fd, ID4, &s) == -ENOENT);
        w.stop = 1;
        pthread_join(t, NULL);
        close(w.fd);
        writes += w.writes;
        rm_rf_at(data_fd, "trash/44444444-4444-4444-8444-444444444444");
    }
    printf("removed 200 jobs while %u callback records were written into them\n", writes);
}

int main(void)
{
    char *root = check_tmpdir();
    int data_fd;

    CHECK(jobdir_open_data(root, false, &data_fd) < 0); /* not created unless asked */
    CHECK(jobdir_open_data(root, true, &data_fd) == 0);
    test_move(data_fd);
    test_reset(data_fd);
    test_atomic_write(data_fd);
    test_recover(data_fd);
    test_recover_keeps_uploads(data_fd);
    test_claim_counts(data_fd);
    test_remove_while_written(data_fd);
    close(data_fd);
    rm_rf_at(AT_FDCWD, root);
    free(root);
    return check_done("test_jobdir");
}
