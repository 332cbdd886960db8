/* test_index.c - the task index against real job folders: what the rebuild mends (a move it
 * missed, a job it never saw, a job that is gone, a damaged or deleted database), and what the
 * readers ask of it (pages in creation order after a cursor, owner/stage/batch/context and
 * due/scheduled filters, a token's usage, owed callbacks, expired jobs). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "taskmill/claim.h"
#include "taskmill/files.h"
#include "taskmill/index.h"
#include "taskmill/jobdir.h"

static char root[256];
static int data_fd = -1;

/* A job folder as rest and the queue leave it: request.json, a 10-byte input, and for finished
 * jobs result.json or error.json with finished_ns. */
static void job(Stage s, int n, const char *owner, const char *batch, const char *callback_url,
                int64_t run_at_ns)
{
    char id[TASK_ID_LEN + 1], path[128];
    json_t *req;
    int fd;

    snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012d", n);
    snprintf(path, sizeof(path), "%s/%s", stage_dir(s), id);
    CHECK(mkdirat(data_fd, path, 0750) == 0);
    CHECK(jobdir_open(data_fd, s, id, &fd) == 0);
    req = json_pack("{s:s, s:I, s:s?, s:s?, s:s?, s:s}", "id", id, "created_ns",
                    (json_int_t)(1000 + n), "owner", owner, "batch", batch, "callback_url",
                    callback_url, "context", n % 2 ? "odd" : "even");
    if (run_at_ns)
        json_object_set_new(req, "run_at_ns", json_integer(run_at_ns));
    CHECK(json_write_at(fd, "request.json", req) == 0);
    json_decref(req);
    CHECK(file_write_atomic(fd, "input.mp4", "0123456789", 10) == 0);
    if (s == STAGE_DONE || s == STAGE_FAILED) {
        json_t *fin = json_pack("{s:I}", "finished_ns", (json_int_t)(5000 + n));
        CHECK(json_write_at(fd, s == STAGE_DONE ? "result.json" : "error.json", fin) == 0);
        json_decref(fin);
    }
    close(fd);
}

static const char *idn(int n)
{
    static char id[TASK_ID_LEN + 1];

    snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012d", n);
    return id;
}

/* The numbers (last id digits) of a list query's rows, as "1 2 3". */
static const char *list(Index *ix, IndexQuery q)
{
    static char out[512];
    IndexRow *v = NULL;
    size_t n = 0;

    out[0] = '\0';
    if (!q.after_id) {
        q.after_id = "";
        q.after_ns = INT64_MIN;
    }
    if (!q.limit)
        q.limit = 100;
    CHECK(index_list(ix, &q, &v, &n) == 0);
    for (size_t i = 0; i < n; i++)
        snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%d", i ? " " : "",
                 atoi(v[i].id + 24));
    free(v);
    return out;
}

static int collect(const IndexRow *row, void *userdata)
{
    char *out = userdata;

    snprintf(out + strlen(out), 256 - strlen(out), "%s%d/%d", out[0] ? " " : "", atoi(row->id + 24),
             row->stage);
    return 0;
}

static void test_rebuild_and_queries(void)
{
    Index *w, *r;
    IndexRebuilt got;
    char out[256] = "";
    unsigned unfinished;
    uint64_t bytes;

    job(STAGE_PENDING, 1, "alice", NULL, NULL, 0);
    job(STAGE_PENDING, 2, "bob", NULL, NULL, INT64_MAX / 2); /* scheduled far ahead */
    job(STAGE_IN_PROGRESS, 3, "alice", "b0000000-0000-4000-8000-000000000001", NULL, 0);
    job(STAGE_DONE, 4, "alice", "b0000000-0000-4000-8000-000000000001", "http://x/", 0);
    job(STAGE_FAILED, 5, NULL, NULL, "http://x/", 0);
    job(STAGE_REQUEST, 6, "bob", NULL, NULL, 0);

    CHECK(index_open(root, false, &r) == -ENOENT); /* readers wait for the queue */
    CHECK(index_open(root, true, &w) == 0);
    CHECK(index_rebuild(w, data_fd, &got) == 0);
    CHECK_INT(got.changed, 6);
    CHECK_INT(got.jobs[STAGE_REQUEST], 1); /* the folders it walked, per stage */
    CHECK_INT(got.jobs[STAGE_PENDING], 2);
    CHECK_INT(got.jobs[STAGE_IN_PROGRESS], 1);
    CHECK_INT(got.jobs[STAGE_DONE], 1);
    CHECK_INT(got.jobs[STAGE_FAILED], 1);
    CHECK(index_open(root, false, &r) == 0);

    CHECK_STR(list(r, (IndexQuery){.stage = STAGE_INVALID}), "1 2 3 4 5 6");
    CHECK_STR(list(r, (IndexQuery){.stage = STAGE_INVALID, .owner = "alice"}), "1 3 4");
    CHECK_STR(list(r, (IndexQuery){.stage = STAGE_DONE}), "4");
    CHECK_STR(list(r, (IndexQuery){.stage = STAGE_REQUEST}), "6");
    CHECK_STR(list(r, (IndexQuery){.stage = STAGE_INVALID,
                                   .batch = "b0000000-0000-4000-8000-000000000001"}),
              "3 4");
    CHECK_STR(list(r, (IndexQuery){.stage = STAGE_INVALID, .context = "odd"}), "1 3 5");
    CHECK_STR(list(r, (IndexQuery){.stage = STAGE_PENDING, .timing = 1, .now_ns = 1}), "1");
    CHECK_STR(list(r, (IndexQuery){.stage = STAGE_PENDING, .timing = 2, .now_ns = 1}), "2");
    /* A page of 2, then the page after its last row. */
    CHECK_STR(list(r, (IndexQuery){.stage = STAGE_INVALID, .limit = 2}), "1 2");
    CHECK_STR(list(r, (IndexQuery){.stage = STAGE_INVALID, .after_ns = 1002, .after_id = idn(2)}),
              "3 4 5 6");

    CHECK(index_usage(r, "alice", &unfinished, &bytes) == 0);
    CHECK_INT(unfinished, 2);
    CHECK(bytes > 30 && bytes < 2000); /* three inputs of 10 bytes plus their JSON files */
    CHECK(index_usage(r, "nobody", &unfinished, &bytes) == 0);
    CHECK_INT(unfinished + bytes, 0);

    CHECK(index_each_owed(r, collect, out) == 0);
    CHECK_STR(out, "4/3 5/4");
    out[0] = '\0';
    CHECK(index_each_finished_before(r, 5005, collect, out) == 0);
    CHECK_STR(out, "4/3");

    /* A settled callback is no longer owed once the row is refreshed. */
    int fd;
    CHECK(jobdir_open(data_fd, STAGE_DONE, idn(4), &fd) == 0);
    CHECK(file_write_atomic(fd, "callback.json", "{\"delivered\": true}", 19) == 0);
    close(fd);
    CHECK(index_refresh(w, data_fd, STAGE_DONE, idn(4)) == 0);
    out[0] = '\0';
    CHECK(index_each_owed(r, collect, out) == 0);
    CHECK_STR(out, "5/4");

    /* Behind the index's back (init, an admin, a lost commit): a move, a new job, a removal. */
    CHECK(jobdir_move(data_fd, idn(3), STAGE_IN_PROGRESS, STAGE_PENDING) == 0);
    job(STAGE_DONE, 7, "carol", NULL, NULL, 0);
    CHECK(rm_rf_at(data_fd, "pending/00000000-0000-4000-8000-000000000001") == 0);
    CHECK(index_rebuild(w, data_fd, &got) == 0);
    CHECK_INT(got.changed, 3);
    CHECK_STR(list(r, (IndexQuery){.stage = STAGE_PENDING}), "2 3");
    CHECK_STR(list(r, (IndexQuery){.stage = STAGE_INVALID}), "2 3 4 5 6 7");
    CHECK(index_rebuild(w, data_fd, &got) == 0);
    CHECK_INT(got.changed, 0);

    /* An unfinished job's due time can change without a move (a back-off written before a
     * crash): the rebuild reads unfinished jobs again whatever their row says. */
    CHECK(jobdir_open(data_fd, STAGE_PENDING, idn(3), &fd) == 0);
    CHECK(claim_retry(fd, INT64_MAX / 2) == 0);
    close(fd);
    CHECK_STR(list(r, (IndexQuery){.stage = STAGE_PENDING, .timing = 2, .now_ns = 1}), "2");
    CHECK(index_rebuild(w, data_fd, &got) == 0);
    CHECK_STR(list(r, (IndexQuery){.stage = STAGE_PENDING, .timing = 2, .now_ns = 1}), "2 3");

    /* A refresh of a job whose folder is gone forgets it. */
    CHECK(rm_rf_at(data_fd, "request/00000000-0000-4000-8000-000000000006") == 0);
    CHECK(index_refresh(w, data_fd, STAGE_REQUEST, idn(6)) == 0);
    CHECK_STR(list(r, (IndexQuery){.stage = STAGE_INVALID}), "2 3 4 5 7");
    index_close(r);
    index_close(w);
}

/* The index is a cache: deleted or damaged, it is rebuilt and no task is lost. */
static void test_damage(void)
{
    char path[512];
    Index *w, *r;
    IndexRebuilt got;
    int fd;

    CHECK(index_open(root, false, &r) == 0); /* rest, open while the queue replaces it */
    CHECK_STR(list(r, (IndexQuery){.stage = STAGE_INVALID}), "2 3 4 5 7");
    snprintf(path, sizeof(path), "%s/data/index", root);
    CHECK(rm_rf_at(AT_FDCWD, path) == 0); /* an admin's rm -r data/index */
    snprintf(path, sizeof(path), "%s/data/index/tasks.db", root);
    job(STAGE_DONE, 8, NULL, NULL, NULL, 0);
    CHECK(index_open(root, true, &w) == 0);
    CHECK(index_rebuild(w, data_fd, &got) == 0);
    CHECK_INT(got.changed, 6);
    index_close(w);
    CHECK(index_keep_open(&r, root) == 0);
    CHECK_STR(list(r, (IndexQuery){.stage = STAGE_INVALID}), "2 3 4 5 7 8");
    index_close(r);

    fd = open(path, O_WRONLY | O_TRUNC);
    CHECK(fd >= 0 && write(fd, "this is not a database, it is a cat on the keyboard", 51) == 51);
    close(fd);
    snprintf(path, sizeof(path), "%s/data/index/tasks.db-wal", root);
    unlink(path);
    CHECK(index_open(root, true, &w) == 0);
    CHECK(index_rebuild(w, data_fd, &got) == 0);
    CHECK_INT(got.changed, 6);
    /* The queue stopped: a reader still opens the index read-only (the WAL files stay). */
    index_close(w);
    CHECK(index_open(root, false, &r) == 0);
    CHECK_STR(list(r, (IndexQuery){.stage = STAGE_INVALID}), "2 3 4 5 7 8");
    index_close(r);
}

int main(void)
{
    char *d = check_tmpdir();

    snprintf(root, sizeof(root), "%s", d);
    CHECK(jobdir_open_data(root, true, &data_fd) == 0);
    test_rebuild_and_queries();
    test_damage();
    close(data_fd);
    rm_rf_at(AT_FDCWD, d);
    free(d);
    return check_done("test_index");
}
