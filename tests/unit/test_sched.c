/* test_sched.c - the queue's state machine on a real data directory, with converters played
 * by the other end of a socketpair: priority order, FIFO within a priority, submit, finish,
 * crash retries up to the attempt limit, release (interruption) and delete. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/queue/queue.h"
#include "check.h"
#include "taskmill/ipc.h"
#include "taskmill/jobdir.h"
#include "taskmill/files.h"
#include "taskmill/tasktype.h"

static Conf conf;

static void make_job(Queue *q, Stage s, const char *id, int priority, int64_t created)
{
    char path[128];
    int fd;
    Task t = {.task_type = "convert_video_to_libx265",
              .file_name = "a.mp4",
              .file_path = "/v",
              .input_name = "input.mp4",
              .size = 1,
              .priority = priority,
              .created_ns = created,
              .params = json_object()};

    memcpy(t.id, id, sizeof(t.id));
    snprintf(path, sizeof(path), "%s/%s", stage_dir(s), id);
    CHECK(mkdirat(q->data_fd, path, 0750) == 0);
    CHECK(jobdir_open(q->data_fd, s, id, &fd) == 0);
    CHECK(task_save(fd, &t) == 0);
    close(fd);
    json_decref(t.params);
}

static void id_of(int n, char *buf)
{
    snprintf(buf, TASK_ID_LEN + 1, "%08d-0000-4000-8000-000000000000", n);
}

/* Claims one job as peer p and returns the id the queue assigned ("" if none). */
static void claim(Queue *q, Peer *p, int other_fd, char *ret_id)
{
    json_t *msg = NULL;

    ret_id[0] = '\0';
    CHECK(sched_claim(q, p, 7) == 0);
    if (ipc_recv_timeout(other_fd, 100, &msg) == 0) {
        CHECK_STR(ipc_type(msg), "work.assign");
        CHECK(ipc_rid(msg) == 7);
        snprintf(ret_id, TASK_ID_LEN + 1, "%s", json_string_value(json_object_get(msg, "id")));
        json_decref(msg);
    }
}

static Stage where(Queue *q, const char *id)
{
    Stage s = STAGE_INVALID;

    jobdir_find(q->data_fd, id, &s);
    return s;
}

static void test_order(Queue *q, Peer *p, int other)
{
    static const int prio[] = {500, 900, 500, 100, 900};
    char id[5][40], got[40];

    for (int i = 0; i < 5; i++) {
        id_of(i + 1, id[i]);
        make_job(q, STAGE_PENDING, id[i], prio[i], 1000 + i);
    }
    CHECK(sched_scan(q) == 0 && q->n_pending == 5);
    /* 900 (oldest first), then 500 (oldest first), then 100 */
    static const int want[] = {1, 4, 0, 2, 3};
    for (int i = 0; i < 5; i++) {
        claim(q, p, other, got);
        CHECK_STR(got, id[want[i]]);
        CHECK(where(q, got) == STAGE_IN_PROGRESS);
    }
    claim(q, p, other, got); /* nothing left: the claim waits */
    CHECK(got[0] == '\0');
    CHECK(q->claims != NULL);
    /* A new submission reaches the waiting claim at once. */
    id_of(6, id[0]);
    make_job(q, STAGE_REQUEST, id[0], 500, 2000);
    char err[128];
    CHECK(sched_submit(q, id[0], err, sizeof(err)) == 0);
    json_t *msg = NULL;
    CHECK(ipc_recv_timeout(other, 100, &msg) == 0);
    CHECK_STR(json_string_value(json_object_get(msg, "id")), id[0]);
    json_decref(msg);
}

static void test_outcomes(Queue *q, Peer *p, int other)
{
    char id[40];

    id_of(1, id);
    CHECK(sched_finish(q, p, id, "done", NULL) == 0);
    CHECK(where(q, id) == STAGE_DONE);
    CHECK(faccessat(q->data_fd, "done/00000001-0000-4000-8000-000000000000/input.mp4", F_OK, 0) <
          0);
    id_of(2, id);
    CHECK(sched_finish(q, p, id, "failed", NULL) == 0);
    CHECK(where(q, id) == STAGE_FAILED);
    id_of(3, id); /* crash on attempt 1 of 2: back to pending */
    CHECK(sched_finish(q, p, id, "crashed", NULL) == 0);
    CHECK(where(q, id) == STAGE_PENDING);
    char got[40];
    claim(q, p, other, got);
    CHECK_STR(got, id);
    CHECK(sched_finish(q, p, id, "crashed", NULL) == 0); /* attempt 2 of 2: failed */
    CHECK(where(q, id) == STAGE_FAILED);
    id_of(4, id); /* interrupted: back to pending, not counted as an attempt */
    CHECK(sched_release(q, p, id) == 0);
    CHECK(where(q, id) == STAGE_PENDING);
    CHECK(sched_delete(q, p, 9, id) == 0);
    CHECK(where(q, id) == STAGE_INVALID);
    CHECK(sched_finish(q, p, id, "done", NULL) == -ENOENT); /* not running any more */
}

static void test_peer_gone(Queue *q, Peer *p)
{
    char id[40];

    id_of(5, id); /* still in progress from test_order */
    CHECK(where(q, id) == STAGE_IN_PROGRESS);
    sched_peer_gone(q, p);
    CHECK(where(q, id) == STAGE_PENDING);
    CHECK(q->claims == NULL);
}

int main(void)
{
    char *root = check_tmpdir();
    int sv[2];
    Queue q = {.conf = &conf, .listen_fd = -1};
    Peer p = {
        .role = IPC_ROLE_CONVERT, .workers = 1, .kinds = json_pack("[s, s]", "video", "exec")};
    char err[256];

    CHECK(conf_load(NULL, &conf, err, sizeof(err)) == 0);
    ((TaskType *)tasktype_find(&conf, TASKTYPE_X265))->max_attempts = 2;
    conf.retry_backoff = 0; /* a crashed attempt may start again at once */
    q.claims_tail = &q.claims;
    q.wake_fd = -1;
    CHECK(jobdir_open_data(root, true, &q.data_fd) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
    p.fd = sv[0];
    q.peers = &p;
    /* The codec keeps the envelope: a body may not carry its own type (work.assign once did). */
    json_t *bad = ipc_msg("work.assign", 1, json_pack("{s:s}", "type", "convert"));
    CHECK(bad == NULL);
    CHECK(ipc_send_new(sv[0], bad) < 0);
    test_order(&q, &p, sv[1]);
    test_outcomes(&q, &p, sv[1]);
    test_peer_gone(&q, &p);
    free(q.pending);
    json_decref(p.kinds);
    conf_free(&conf);
    close(sv[0]);
    close(sv[1]);
    close(q.data_fd);
    rm_rf_at(AT_FDCWD, root);
    free(root);
    return check_done("test_sched");
}
