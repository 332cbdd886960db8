/* test_multipart.c - the upload parser: parts reported exactly as sent, whatever the pieces the
 * body arrives in; malformed bodies refused. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/rest/rest_multipart.h"
#include "check.h"

/* What the callbacks saw, as text: "[name|filename|type]content{" per part ("}" at its end). */
typedef struct Seen {
    char log[8192];
    size_t len;
} Seen;

static void add(Seen *s, const char *data, size_t n)
{
    if (s->len + n < sizeof(s->log)) {
        memcpy(s->log + s->len, data, n);
        s->len += n;
        s->log[s->len] = '\0';
    }
}

static int on_begin(void *ud, const char *name, const char *filename, const char *ct)
{
    char buf[2048];
    int n =
        snprintf(buf, sizeof(buf), "[%s|%s|%s]", name, filename ? filename : "-", ct ? ct : "-");

    add(ud, buf, (size_t)n);
    return 0;
}

static int on_data(void *ud, const char *data, size_t len)
{
    add(ud, data, len);
    return 0;
}

static int on_end(void *ud)
{
    add(ud, "}", 1);
    return 0;
}

static const MultipartCallbacks cbs = {on_begin, on_data, on_end};

/* Parses body in pieces of step bytes; returns feed's or finish's result, log in *s. */
static int parse(const char *ct, const char *body, size_t len, size_t step, Seen *s)
{
    Multipart *m;
    int r = multipart_new(ct, &cbs, s, &m);

    memset(s, 0, sizeof(*s));
    if (r < 0)
        return r;
    for (size_t off = 0; r == 0 && off < len; off += step)
        r = multipart_feed(m, body + off, len - off < step ? len - off : step);
    if (r == 0)
        r = multipart_finish(m);
    multipart_free(m);
    return r;
}

#define CT "multipart/form-data; boundary=XyZ"

static void check_all_steps(const char *ct, const char *body, int want_r, const char *want_log)
{
    size_t len = strlen(body);
    static const size_t steps[] = {1, 2, 3, 5, 7, 64, 100000};
    Seen s;

    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        int r = parse(ct, body, len, steps[i], &s);
        CHECK_MSG(r == want_r, "step %zu: r=%d, want %d", steps[i], r, want_r);
        if (want_log)
            CHECK_STR(s.log, want_log);
    }
}

int main(void)
{
    check_all_steps(
        CT,
        "--XyZ\r\nContent-Disposition: form-data; name=\"task_type\"\r\n\r\nconv\r\n"
        "--XyZ\r\ncontent-disposition: form-data; name=\"file_data\"; "
        "filename=\"a \\\"b\\\".mp4\"\r\nContent-Type: video/mp4\r\n\r\n"
        "\r\n--XyYa\r\n-X\r\n--Xy\r\n--XyZ--\r\n",
        0, "[task_type|-|-]conv}[file_data|a \"b\".mp4|video/mp4]\r\n--XyYa\r\n-X\r\n--Xy}");
    /* Preamble and epilogue are ignored; a quoted boundary; transport padding after it. */
    check_all_steps("multipart/form-data; charset=utf-8; boundary=\"a b\"",
                    "ignored\r\n--a b  \r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n"
                    "--a b--\r\nepilogue --a b",
                    0, "[x|-|-]1}");
    /* An empty part, then a second one of the same name: both reported. */
    check_all_steps(CT,
                    "--XyZ\r\nContent-Disposition: form-data; name=\"file_data\"; filename=a\r\n"
                    "\r\n\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file_data\"; "
                    "filename=b\r\n\r\nDATA\r\n--XyZ--",
                    0, "[file_data|a|-]}[file_data|b|-]DATA}");
    /* Cut short: no closing delimiter. */
    check_all_steps(CT, "--XyZ\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nabc", -EBADMSG,
                    NULL);
    check_all_steps(CT, "--XyZ\r\nContent-Disposition: form-data; name=\"x\"\r\n", -EBADMSG, NULL);
    check_all_steps(CT, "no delimiter at all", -EBADMSG, NULL);
    /* A part without a name, without headers, with a bad disposition, folded headers. */
    check_all_steps(CT, "--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--", -EBADMSG,
                    NULL);
    check_all_steps(CT, "--XyZ\r\n\r\nx\r\n--XyZ--", -EBADMSG, NULL);
    check_all_steps(CT, "--XyZ\r\nContent-Disposition: attachment; name=x\r\n\r\nx\r\n--XyZ--",
                    -EBADMSG, NULL);
    check_all_steps(CT, "--XyZ\r\nContent-Disposition: form-data;\r\n name=x\r\n\r\nx\r\n--XyZ--",
                    -EBADMSG, NULL);
    check_all_steps(CT, "--XyZ\r\nContent-Disposition: form-data; name=\"x\r\n\r\nx\r\n--XyZ--",
                    -EBADMSG, NULL);
    /* Junk after a delimiter. */
    check_all_steps(CT, "--XyZjunk\r\nContent-Disposition: form-data; name=x\r\n\r\n\r\n--XyZ--",
                    -EBADMSG, NULL);
    /* Not multipart/form-data, or no usable boundary. */
    check_all_steps("application/x-www-form-urlencoded", "a=b", -EINVAL, NULL);
    check_all_steps("multipart/form-dataX; boundary=a", "", -EINVAL, NULL);
    check_all_steps("multipart/form-data", "", -EINVAL, NULL);
    check_all_steps("multipart/form-data; boundary=", "", -EINVAL, NULL);
    check_all_steps("multipart/form-data; boundary=\"unterminated", "", -EINVAL, NULL);
    /* A header block over the limit. */
    {
        size_t n = 20000;
        char *body = malloc(n + 100);
        strcpy(body, "--XyZ\r\nContent-Disposition: form-data; name=x\r\nX-Pad: ");
        memset(body + strlen(body), 'p', n);
        body[n] = '\0';
        check_all_steps(CT, body, -EBADMSG, NULL);
        free(body);
    }
    return check_done("test_multipart");
}
