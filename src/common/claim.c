/* claim.c - claim.json, the attempt counter of a job (see claim.h).
 *
 * The file is small and rewritten whole with json_write_at (temp, fsync, rename, fsync), so a
 * crash leaves either the old or the new counts. */
#include "taskmill/claim.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "taskmill/clock.h"
#include "taskmill/files.h"
#include "taskmill/jobdir.h"

#define CLAIM_FILE "claim.json"

int claim_read(int job_fd, JobClaim *ret)
{
    json_t *j = NULL;
    json_int_t a = 0, i = 0, started = 0, next = 0;
    const char *code = "", *message = "";
    int active = 0, r = json_read_at(job_fd, CLAIM_FILE, &j);

    /* A missing or garbled claim.json holds no attempt worth keeping: it reads as zeros. */
    if (r < 0 && r != -ENOENT && r != -EBADMSG)
        return r;
    if (j)
        json_unpack(j, "{s?I, s?I, s?I, s?b, s?I, s?{s?s, s?s}}", "attempts", &a, "interruptions",
                    &i, "started_ns", &started, "active", &active, "next_attempt_ns", &next,
                    "last_error", "code", &code, "message", &message);
    *ret = (JobClaim){.attempts = a,
                      .interruptions = i,
                      .started_ns = started,
                      .active = active,
                      .next_attempt_ns = next};
    snprintf(ret->last_code, sizeof(ret->last_code), "%s", code);
    snprintf(ret->last_message, sizeof(ret->last_message), "%s", message);
    json_decref(j);
    return 0;
}

static int claim_write(int job_fd, const JobClaim *c)
{
    json_t *j =
        json_pack("{s:I, s:I, s:I, s:b, s:I}", "attempts", (json_int_t)c->attempts, "interruptions",
                  (json_int_t)c->interruptions, "started_ns", (json_int_t)c->started_ns, "active",
                  c->active, "next_attempt_ns", (json_int_t)c->next_attempt_ns);
    int r;

    if (j && c->last_code[0])
        json_object_set_new(
            j, "last_error",
            json_pack("{s:s, s:s}", "code", c->last_code, "message", c->last_message));
    r = j ? json_write_at(job_fd, CLAIM_FILE, j) : -ENOMEM;
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
    c.next_attempt_ns = 0;
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

int claim_restart(int job_fd)
{
    JobClaim c;
    int r = claim_read(job_fd, &c);

    if (r < 0)
        return r;
    c.interruptions++;
    c.active = true;
    c.started_ns = now_ns();
    return claim_write(job_fd, &c);
}

int claim_retry(int job_fd, int64_t next_ns)
{
    json_t *e = NULL;
    JobClaim c;
    int r = claim_read(job_fd, &c);

    if (r < 0)
        return r;
    if (json_read_at(job_fd, "error.json", &e) == 0) {
        snprintf(c.last_code, sizeof(c.last_code), "%s",
                 json_string_value(json_object_get(e, "code")) ?: "");
        snprintf(c.last_message, sizeof(c.last_message), "%s",
                 json_string_value(json_object_get(e, "message")) ?: "");
        json_decref(e);
    }
    c.active = false;
    c.next_attempt_ns = next_ns;
    return claim_write(job_fd, &c);
}

int claim_rearm(int job_fd)
{
    JobClaim c;
    int r = claim_read(job_fd, &c);

    if (r < 0)
        return r;
    c.attempts = 0;
    c.active = false;
    c.next_attempt_ns = 0;
    return claim_write(job_fd, &c);
}
