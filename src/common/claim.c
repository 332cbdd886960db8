/* claim.c - claim.json, the attempt counter of a job (see claim.h).
 *
 * The file is small and rewritten whole with json_write_at (temp, fsync, rename, fsync), so a
 * crash leaves either the old or the new counts. */
#include "taskmill/claim.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "taskmill/clock.h"
#include "taskmill/files.h"
#include "taskmill/jobdir.h"

#define CLAIM_FILE "claim.json"

int claim_read(int job_fd, JobClaim *ret)
{
    json_t *j = NULL;
    json_int_t a = 0, i = 0, started = 0;
    int active = 0, r = json_read_at(job_fd, CLAIM_FILE, &j);

    /* A missing or garbled claim.json holds no attempt worth keeping: it reads as zeros. */
    if (r < 0 && r != -ENOENT && r != -EBADMSG)
        return r;
    if (j)
        json_unpack(j, "{s?I, s?I, s?I, s?b}", "attempts", &a, "interruptions", &i, "started_ns",
                    &started, "active", &active);
    json_decref(j);
    *ret = (JobClaim){.attempts = a, .interruptions = i, .started_ns = started, .active = active};
    return 0;
}

static int claim_write(int job_fd, const JobClaim *c)
{
    json_t *j = json_pack("{s:I, s:I, s:I, s:b}", "attempts", (json_int_t)c->attempts,
                          "interruptions", (json_int_t)c->interruptions, "started_ns",
                          (json_int_t)c->started_ns, "active", c->active);
    int r = j ? json_write_at(job_fd, CLAIM_FILE, j) : -ENOMEM;

    json_decref(j);
    return r;
}

int claim_start(int job_fd, JobClaim *ret)
{
    JobClaim c;
    int r = claim_read(job_fd, &c);

    if (r < 0)
        return r;
    r = jobdir_reset(job_fd); /* a new attempt starts from nothing */
    if (r < 0)
        return r;
    c.attempts++;
    c.active = true;
    c.started_ns = now_ns();
    r = claim_write(job_fd, &c);
    if (r == 0 && ret)
        *ret = c;
    return r;
}

int claim_end(int job_fd)
{
    JobClaim c;
    int r = claim_read(job_fd, &c);

    if (r < 0 || !c.active)
        return r;
    c.active = false;
    return claim_write(job_fd, &c);
}

/* The pool writes error.json "worker_crashed" before it reports a dead converter. */
static bool attempt_crashed(int job_fd)
{
    json_t *e = NULL;
    bool crashed;

    if (json_read_at(job_fd, "error.json", &e) < 0)
        return false;
    crashed = json_is_string(json_object_get(e, "code")) &&
              !strcmp(json_string_value(json_object_get(e, "code")), "worker_crashed");
    json_decref(e);
    return crashed;
}

int claim_interrupt(int job_fd)
{
    JobClaim c;
    int r = claim_read(job_fd, &c);

    if (r < 0 || !c.active)
        return r;
    if (!attempt_crashed(job_fd)) {
        c.attempts = c.attempts > 0 ? c.attempts - 1 : 0;
        c.interruptions++;
    }
    c.active = false;
    return claim_write(job_fd, &c);
}
