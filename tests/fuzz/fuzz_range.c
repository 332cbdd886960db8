/* fuzz_range.c - libFuzzer target for the Range header and the list cursor (src/rest/rest_tasks.c).
 *
 * GET /v1/tasks/ID/result sends the bytes tasks_range_parse picks from a client's Range header;
 * GET /v1/tasks resumes a listing at tasks_cursor_parse's position. The first input byte picks
 * what is tried (see LLVMFuzzerTestOneInput). Checked for Range:
 *   - the answer is 0, -ERANGE or -EINVAL; on 0 the range lies in the file (first <= last <
 *     size when size > 0, and nothing partial in an empty file), and it is partial only for a
 *     header that starts with "bytes="; no header means the whole file;
 *   - an error never comes with a range set: the Range is the whole file, not partial;
 *   - a header in RFC 9110's strict grammar (one byte-range-spec of plain digits) gets exactly
 *     the answer the RFC gives, computed here independently; in particular "bytes=a-b" with
 *     a <= b < size is exactly [a, b] (also built from fuzzed 64-bit numbers every time).
 * Checked for the cursor: the answer is 0 or -EINVAL, NULL is 0 with nothing set; on 0 the id
 * is a valid task id and the text after the number's '.', and "%lld.%s" of the result gives
 * the cursor back unless its number had leading zeros (a sign or a leading space is refused);
 * a cursor built the way list_page builds it parses back to its number and id.
 * A broken promise calls abort() so that libFuzzer reports the input. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uuid/uuid.h>

#include "rest.h"
#include "taskmill/task.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static bool same_range(const Range *a, const Range *b)
{
    return a->first == b->first && a->last == b->last && a->partial == b->partial;
}

static Range whole_file(uint64_t size)
{
    return (Range){0, size ? size - 1 : 0, false};
}

/* [p, p + n) as a number: only digits, and it fits. */
static bool plain_number(const char *p, size_t n, uint64_t *ret)
{
    uint64_t v = 0;

    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(p[i] - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *ret = v;
    return true;
}

/* RFC 9110 14.1.2 for one byte-range-spec in the strict grammar ("bytes=" first-pos "-"
 * [last-pos], or "bytes=-" suffix-length). false when h is not one: then only the invariants
 * are checked (the parser may ignore such a header or read it leniently). */
static bool rfc_answer(const char *h, uint64_t size, int *want_r, Range *want)
{
    const char *spec = h + 6, *dash;
    uint64_t a = 0, b = 0;
    bool has_a, has_b;

    if (strncasecmp(h, "bytes=", 6) || !(dash = strchr(spec, '-')))
        return false;
    has_a = dash > spec;
    has_b = dash[1] != '\0';
    if ((!has_a && !has_b) || (has_a && !plain_number(spec, (size_t)(dash - spec), &a)) ||
        (has_b && !plain_number(dash + 1, strlen(dash + 1), &b)))
        return false;
    *want = whole_file(size);
    if (!has_a) { /* the last b bytes */
        *want_r = b == 0 || size == 0 ? -ERANGE : 0;
        if (*want_r == 0)
            *want = (Range){b >= size ? 0 : size - b, size - 1, true};
    } else if (has_b && b < a) {
        *want_r = -EINVAL; /* invalid: the header is ignored */
    } else if (a >= size) {
        *want_r = -ERANGE;
    } else {
        *want_r = 0;
        *want = (Range){a, has_b && b < size ? b : size - 1, true};
    }
    return true;
}

static int check_range(const char *h, uint64_t size, Range *got)
{
    Range whole = whole_file(size), want;
    int r, want_r;

    memset(got, 0xa5, sizeof(*got));
    r = tasks_range_parse(h, size, got);
    if (r != 0 && r != -ERANGE && r != -EINVAL)
        abort();
    if (r != 0 && !same_range(got, &whole))
        abort(); /* an error with a range set */
    if (r == 0) {
        if (size > 0 && !(got->first <= got->last && got->last < size))
            abort(); /* outside the file */
        if (size == 0 && got->partial)
            abort(); /* a part of nothing */
        if (got->partial && (!h || strncasecmp(h, "bytes=", 6)))
            abort(); /* partial without a byte range */
        if (!h && !same_range(got, &whole))
            abort();
    }
    if (h && rfc_answer(h, size, &want_r, &want) && (r != want_r || !same_range(got, &want)))
        abort(); /* not what RFC 9110 says */
    return r;
}

/* "bytes=a-b" with a <= b < size, "bytes=a-" and "bytes=-n" from fuzzed 64-bit numbers. */
static void built_range(unsigned kind, uint64_t size, uint64_t x, uint64_t y)
{
    static const char *const unit[] = {"bytes=", "BYTES=", "Bytes="};
    char h[80];
    uint64_t a, b;
    Range got;

    size = size ? size : 1;
    a = x % size;
    b = a + y % (size - a);
    switch (kind % 3) {
    case 0:
        snprintf(h, sizeof(h), "%s%" PRIu64 "-%" PRIu64, unit[kind / 3 % 3], a, b);
        if (check_range(h, size, &got) != 0 || got.first != a || got.last != b || !got.partial)
            abort(); /* a well-formed range inside the file is taken exactly */
        break;
    case 1:
        snprintf(h, sizeof(h), "bytes=%" PRIu64 "-", x);
        check_range(h, size, &got);
        break;
    default:
        snprintf(h, sizeof(h), "bytes=-%" PRIu64, y);
        check_range(h, size, &got);
        break;
    }
}

/* strtoll also reads a sign and leading zeros, which list_page never writes; anything else in
 * the number part of an accepted cursor must come back as it was. */
static bool has_sign_or_leading_zero(const char *s)
{
    size_t n = strcspn(s, ".");
    const char *digit = s + strcspn(s, "0123456789");

    return memchr(s, '+', n) || memchr(s, '-', n) || (digit[0] == '0' && digit[1] != '.');
}

static void check_cursor(const char *s)
{
    char id[TASK_ID_LEN + 1], back[128];
    const char *dot;
    int64_t ns = 0x5a5a5a5a;
    int r;

    memset(id, 'Z', sizeof(id));
    r = tasks_cursor_parse(s, &ns, id);
    if (r != 0 && r != -EINVAL)
        abort();
    if (!s && (r != 0 || ns != 0x5a5a5a5a || id[0] != 'Z'))
        abort(); /* no cursor: nothing set */
    if (!s || r != 0)
        return;
    if (!memchr(id, '\0', sizeof(id)) || !task_id_valid(id))
        abort();
    dot = strchr(s, '.');
    if (!dot || strcmp(dot + 1, id))
        abort(); /* the id is the cursor's own */
    snprintf(back, sizeof(back), "%lld.%s", (long long)ns, id);
    if (!has_sign_or_leading_zero(s) && strcmp(back, s))
        abort(); /* read as another position than the one written */
}

/* A cursor as list_page writes it. */
static void built_cursor(int64_t ns, const uint8_t u[16])
{
    char s[128], id[TASK_ID_LEN + 1];
    int64_t got_ns;
    uuid_t uu;

    memcpy(uu, u, sizeof(uu));
    uuid_unparse_lower(uu, id);
    snprintf(s, sizeof(s), "%" PRId64 ".%s", ns, id);
    if (tasks_cursor_parse(s, &got_ns, id) != 0 || got_ns != ns || strcmp(strchr(s, '.') + 1, id))
        abort();
    check_cursor(s);
}

/* Input: a mode byte, then
 *   mode % 4 == 0: 8 bytes of file size, then the Range header (NUL-terminated here). mode bits
 *     2-3 scale the size: 0 below 65536, 1 below 256, 2 any, 3 near UINT64_MAX;
 *   mode % 4 == 1: 24 bytes: size, x, y for built_range (kind: mode >> 2);
 *   mode % 4 == 2: the cursor (NUL-terminated here);
 *   mode % 4 == 3: 8 bytes of created_ns and 16 of uuid for built_cursor.
 * Every input also tries no header and no cursor. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned mode;
    uint64_t fsize;
    char *s;
    Range got;

    if (size < 1)
        return 0;
    mode = data[0];
    data++;
    size--;
    switch (mode % 4) {
    case 0:
        if (size < 8)
            return 0;
        fsize = le64(data);
        switch (mode >> 2 & 3) {
        case 0:
            fsize &= 0xffff;
            break;
        case 1:
            fsize &= 0xff;
            break;
        case 3:
            fsize = UINT64_MAX - (fsize & 0xff);
            break;
        }
        if (!(s = strndup((const char *)data + 8, size - 8)))
            abort();
        check_range(s, fsize, &got);
        check_range(NULL, fsize, &got);
        free(s);
        break;
    case 1:
        if (size < 24)
            return 0;
        built_range(mode >> 2, le64(data), le64(data + 8), le64(data + 16));
        break;
    case 2:
        if (!(s = strndup((const char *)data, size)))
            abort();
        check_cursor(s);
        check_cursor(NULL);
        free(s);
        break;
    default:
        if (size < 24)
            return 0;
        /* created_ns is never negative: list_page writes no sign, and the parser takes none */
        built_cursor((int64_t)(le64(data) & INT64_MAX), data + 8);
        break;
    }
    return 0;
}
