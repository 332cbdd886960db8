/* fuzz_multipart.c - libFuzzer target for the upload body parser (src/rest/rest_multipart.c).
 *
 * A client's POST /v1/tasks body goes through multipart_feed in whatever pieces the network
 * delivers, so the parser must not care where the pieces end. The input is a 4-byte header and
 * a body (see LLVMFuzzerTestOneInput); each body is parsed fed whole, fed in pieces whose sizes
 * come from the header's seed (often ending inside a line break), and, up to 2 KiB, fed a byte
 * at a time. Checked:
 *   - the runs make the same callbacks (a part's data compared as one string, since the
 *     pieces may cut it differently) and give the same feed and finish results;
 *   - data is reported only inside a part_begin/part_end pair, parts do not nest, and a
 *     finished body (finish returns 0) has no part left open;
 *   - every name, filename and content type handed to part_begin is NUL-terminated within the
 *     parser's buffer for it (an overrun there is inside one struct, where ASan cannot see it);
 *   - a callback's negative return stops the parser: the feed returns it, no callback follows,
 *     and every later feed and finish return it again (likewise for -EBADMSG);
 *   - a body the harness encodes itself (fixed boundary) from fuzzed field names, filenames,
 *     content types and values parses back to exactly those fields; a header block over the
 *     parser's limit is refused.
 * A broken promise calls abort() so that libFuzzer reports the input. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rest_multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BOUNDARY "fuzzB0undary7MA4YWxkTrZu0gW"
#define CTYPE    "multipart/form-data; boundary=" BOUNDARY
#define DELIM    "\r\n--" BOUNDARY
/* Limits private to rest_multipart.c: a part's header block and PartHeaders' buffers (a longer
 * name or filename is cut to fit, and the upload refuses such names anyway; a longer type is
 * refused). */
#define HEADERS_MAX  8192 /* the longest header block it takes */
#define NAME_BUF     256
#define FILENAME_BUF 1024
#define CTYPE_BUF    256
#define STOP         (-4242) /* what a callback returns to stop the parser */
#define MAX_FIELDS   16
#define MIN(a, b)    ((a) < (b) ? (a) : (b))

static const char fixed_ct[] = CTYPE;

typedef struct Event {
    char kind; /* 'B' part_begin, 'D' data (consecutive pieces joined), 'E' part_end */
    char *name, *filename, *ctype;
    char *data;
    size_t len;
} Event;

typedef struct Run {
    Event *ev;
    size_t n, cap;
    bool in_part;
    bool dead;         /* the parser returned an error: no callback may follow */
    unsigned stop_at;  /* 0: never; n: the n-th part_begin/part_end returns STOP */
    size_t stop_bytes; /* 0: never; n: the part_data that reaches n bytes in all returns STOP */
    unsigned marks;
    size_t bytes;
    bool stopped;
} Run;

typedef struct Result {
    int feed;   /* the first error a feed returned, or 0 */
    int finish; /* multipart_finish */
} Result;

static char *dup_or_null(const char *s)
{
    char *d;

    if (!s)
        return NULL;
    if (!(d = strdup(s)))
        abort();
    return d;
}

static Event *push(Run *r, char kind)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 16;
        if (!(r->ev = realloc(r->ev, r->cap * sizeof(*r->ev))))
            abort();
    }
    r->ev[r->n] = (Event){.kind = kind};
    return &r->ev[r->n++];
}

static void run_free(Run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->ev[i].name);
        free(r->ev[i].filename);
        free(r->ev[i].ctype);
        free(r->ev[i].data);
    }
    free(r->ev);
}

/* The string must end within its buffer in PartHeaders (not inlined: it names the check in a
 * stack). */
__attribute__((noinline)) static void check_terminated(const char *s, size_t buf)
{
    if (!memchr(s, '\0', buf))
        abort();
}

static int mark(Run *r)
{
    if (r->stop_at && ++r->marks == r->stop_at) {
        r->stopped = true;
        return STOP;
    }
    return 0;
}

static int on_begin(void *ud, const char *name, const char *filename, const char *ctype)
{
    Run *r = ud;
    Event *e;

    if (r->dead || r->stopped)
        abort(); /* a callback after the parser stopped */
    if (r->in_part || !name)
        abort(); /* a part inside a part */
    check_terminated(name, NAME_BUF);
    if (filename)
        check_terminated(filename, FILENAME_BUF);
    if (ctype)
        check_terminated(ctype, CTYPE_BUF);
    e = push(r, 'B');
    e->name = dup_or_null(name);
    e->filename = dup_or_null(filename);
    e->ctype = dup_or_null(ctype);
    r->in_part = true;
    return mark(r);
}

static int on_data(void *ud, const char *data, size_t len)
{
    Run *r = ud;
    Event *e;

    if (r->dead || r->stopped)
        abort(); /* a callback after the parser stopped */
    if (!r->in_part || (len && !data))
        abort(); /* data outside a part */
    e = r->n && r->ev[r->n - 1].kind == 'D' ? &r->ev[r->n - 1] : push(r, 'D');
    if (!(e->data = realloc(e->data, e->len + len + 1)))
        abort();
    memcpy(e->data + e->len, data, len);
    e->len += len;
    r->bytes += len;
    if (r->stop_bytes && r->bytes >= r->stop_bytes) {
        r->stopped = true;
        return STOP;
    }
    return 0;
}

static int on_end(void *ud)
{
    Run *r = ud;

    if (r->dead || r->stopped)
        abort(); /* a callback after the parser stopped */
    if (!r->in_part)
        abort(); /* an end without a begin */
    push(r, 'E');
    r->in_part = false;
    return mark(r);
}

static const MultipartCallbacks callbacks = {on_begin, on_data, on_end};

static uint32_t next_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* A piece size: one byte, a few, up to 128, or up to just past the next CR or LF, where the
 * parser's state changes (a piece that ends inside "\r\n\r\n" or a delimiter). */
static size_t piece(uint32_t *rng, const char *p, size_t left)
{
    uint32_t x = next_rand(rng);
    const char *eol;
    size_t n;

    switch (x & 3) {
    case 0:
        n = 1;
        break;
    case 1:
        n = 1 + (x >> 2) % 8;
        break;
    case 2:
        n = 1 + (x >> 2) % 128;
        break;
    default:
        eol = memchr(p + 1, "\r\n"[x >> 2 & 1], left - 1);
        n = eol ? (size_t)(eol - p) + (x >> 3) % 4 : left;
        break;
    }
    return n < left ? n : left;
}

#define WHOLE        0u
#define BYTEWISE     1u /* one byte at a time: every place a piece can end */
#define BYTEWISE_MAX 2048
/* Parses body with content type ct, whole, a byte at a time, or in pieces of sizes drawn from
 * seed (any other value); returns -EINVAL when multipart_new refuses ct. */
static int parse(const char *ct, const char *body, size_t len, uint32_t seed, Run *run, Result *res)
{
    Multipart *m = NULL;
    uint32_t rng = seed;
    size_t off = 0;
    int r = multipart_new(ct, &callbacks, run, &m);

    if (r < 0) {
        if (r != -EINVAL || m)
            abort();
        return r;
    }
    res->feed = 0;
    do {
        size_t n = seed == WHOLE || off == len ? len - off
                   : seed == BYTEWISE          ? 1
                                               : piece(&rng, body + off, len - off);
        r = multipart_feed(m, body + off, n);
        off += n;
        if (r > 0 || (res->feed && r != res->feed))
            abort(); /* an error sticks */
        if (r < 0 && !res->feed) {
            res->feed = r;
            run->dead = true;
        }
    } while (off < len);
    if ((run->stopped && res->feed != STOP) || (!run->stopped && res->feed == STOP))
        abort(); /* a callback's error, and only that, is returned as it is */
    if (res->feed && res->feed != -EBADMSG && res->feed != STOP)
        abort();
    res->finish = multipart_finish(m);
    if (res->feed && (res->finish != res->feed || multipart_feed(m, "\r\n", 2) != res->feed ||
                      multipart_finish(m) != res->feed))
        abort(); /* after an error every later call returns it again */
    if (!res->feed && res->finish && res->finish != -EBADMSG)
        abort();
    if (res->finish == 0 && run->in_part)
        abort(); /* a body that ended well has no part left open */
    multipart_free(m);
    return 0;
}

static bool str_eq(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

static bool same_event(const Event *x, const Event *y)
{
    return x->kind == y->kind && str_eq(x->name, y->name) && str_eq(x->filename, y->filename) &&
           str_eq(x->ctype, y->ctype) && x->len == y->len &&
           (!x->len || !memcmp(x->data, y->data, x->len));
}

/* With stopped_in_data, the runs stopped in the same part_data call but its piece differs
 * with the pieces fed: the last data of one is then a prefix of the other's. */
static void same_events(const Run *a, const Run *b, bool stopped_in_data)
{
    size_t n = a->n;
    const Event *x, *y;

    if (a->n != b->n)
        abort();
    if (stopped_in_data && n) {
        x = &a->ev[--n];
        y = &b->ev[n];
        if (x->len > y->len) {
            const Event *t = x;
            x = y;
            y = t;
        }
        if (x->kind != 'D' || y->kind != 'D' || memcmp(x->data, y->data, x->len))
            abort();
    }
    for (size_t i = 0; i < n; i++)
        if (!same_event(&a->ev[i], &b->ev[i]))
            abort();
}

/* The body fed whole and fed in pieces: the same callbacks, the same results. */
static void whole_and_pieces(const char *ct, const char *body, size_t len, uint32_t seed,
                             unsigned stop_at, size_t stop_bytes, Run *whole, Result *res)
{
    whole->stop_at = stop_at;
    whole->stop_bytes = stop_bytes;
    if (parse(ct, body, len, WHOLE, whole, res) < 0) {
        if (ct == fixed_ct)
            abort(); /* our own Content-Type is valid */
        res->feed = res->finish = -EINVAL;
        return;
    }
    /* A byte at a time costs the parser O(n^2) in a long header block: small bodies only. */
    for (int i = len <= BYTEWISE_MAX ? 0 : 1; i < 2; i++) {
        Run pieces = {.stop_at = stop_at, .stop_bytes = stop_bytes};
        Result rp;
        if (parse(ct, body, len, i ? seed : BYTEWISE, &pieces, &rp) < 0 || rp.feed != res->feed ||
            rp.finish != res->finish)
            abort(); /* the pieces changed the answer */
        same_events(whole, &pieces, stop_bytes && whole->stopped);
        run_free(&pieces);
    }
}

/* --- bodies the harness encodes ----------------------------------------------------------- */

typedef struct Buf {
    char *p;
    size_t len, cap;
} Buf;

static void put(Buf *b, const void *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = 2 * (b->len + n + 1);
        if (!(b->p = realloc(b->p, b->cap)))
            abort();
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(Buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* A quoted-string with backslash escapes, or a bare token. */
static void put_param(Buf *b, const char *v, bool bare)
{
    if (bare) {
        puts_(b, v);
        return;
    }
    put(b, "\"", 1);
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\')
            put(b, "\\", 1);
        put(b, p, 1);
    }
    put(b, "\"", 1);
}

static bool can_be_bare(const char *v)
{
    return v[0] && v[0] != '"' && !strpbrk(v, "; \t");
}

/* n fuzzed bytes as a header text: CR, LF and NUL cannot be sent there (RFC 7578 would
 * percent-encode them), so they become '_'. */
static char *header_text(const uint8_t **p, const uint8_t *end, size_t want)
{
    size_t n = (size_t)(end - *p) < want ? (size_t)(end - *p) : want;
    char *s = malloc(n + 1);

    if (!s)
        abort();
    for (size_t i = 0; i < n; i++)
        s[i] = ((*p)[i] == '\r' || (*p)[i] == '\n' || (*p)[i] == '\0') ? '_' : (char)(*p)[i];
    s[n] = '\0';
    *p += n;
    return s;
}

static size_t take_byte(const uint8_t **p, const uint8_t *end)
{
    return *p < end ? *(*p)++ : 0;
}

static char *cut(const char *s, size_t buf)
{
    char *d = strndup(s, buf - 1);

    if (!d)
        abort();
    return d;
}

/* Fields from the input, each: flags, name length, name, [filename length, filename],
 * [type length, type], value length (2 bytes, little-endian), value. Flags: 1 a filename,
 * 2 a Content-Type, 4 and 8 longer name and filename, 16 transport padding, 32 header names
 * in another case, 64 an ignored header and parameter, 128 a bare (unquoted) name. */
static void built_body(const uint8_t *p, const uint8_t *end, uint32_t seed, bool frame, bool pad)
{
    Buf body = {0};
    Run expect = {0}, got = {0};
    Result res;
    unsigned nf = 0;
    size_t pad_len = 0;
    bool over = false; /* the loop stopped at a header block over the limit */

    if (pad) { /* the first part's header block grows by pad_len bytes of X-Pad */
        pad_len = take_byte(&p, end);
        pad_len |= take_byte(&p, end) << 8;
    }
    if (frame)
        puts_(&body, "This is the preamble; it is ignored.\r\n");
    puts_(&body, "--" BOUNDARY);
    while (p < end && nf++ < MAX_FIELDS) {
        unsigned flags = (unsigned)take_byte(&p, end);
        char *name = header_text(&p, end, take_byte(&p, end) + (flags & 4 ? 200 : 0));
        char *filename = NULL, *ctype = NULL, *t;
        size_t vlen, block;
        Event *e;

        if (flags & 1)
            filename = header_text(&p, end, take_byte(&p, end) + (flags & 8 ? 900 : 0));
        if (flags & 2) {
            ctype = header_text(&p, end, take_byte(&p, end) % CTYPE_BUF);
            for (t = ctype + strlen(ctype); t > ctype && (t[-1] == ' ' || t[-1] == '\t');)
                *--t = '\0'; /* the parser trims a header value */
            t = ctype + strspn(ctype, " \t");
            memmove(ctype, t, strlen(t) + 1);
        }
        vlen = take_byte(&p, end);
        vlen |= take_byte(&p, end) << 8;
        if (vlen > (size_t)(end - p))
            vlen = (size_t)(end - p);

        if (flags & 16)
            puts_(&body, " \t"); /* transport padding */
        block = body.len + 2;    /* the header block starts after the CRLF */
        puts_(&body, flags & 32 ? "\r\ncontent-disposition: form-data; NAME="
                                : "\r\nContent-Disposition: form-data; name=");
        put_param(&body, name, (flags & 128) && can_be_bare(name));
        if (flags & 64)
            puts_(&body, "; filename*=UTF-8''%e2%82%ac.mp4");
        if (filename) {
            puts_(&body, "; filename=");
            put_param(&body, filename, false);
        }
        if (ctype) {
            puts_(&body, flags & 32 ? "\r\nCONTENT-TYPE:  " : "\r\nContent-Type: ");
            puts_(&body, ctype);
        }
        if (flags & 64)
            puts_(&body, "\r\nX-Ignored: yes\t");
        if (pad_len) {
            /* Up to exactly HEADERS_MAX, which must still be taken; from 0xf000 on, 1 to 256
             * bytes past it, which must be refused. */
            size_t used = body.len - block + strlen("\r\nX-Pad: ");
            size_t room = used < HEADERS_MAX ? HEADERS_MAX - used : 0;
            size_t n = pad_len >= 0xf000 ? room + 1 + (pad_len & 0xff) : MIN(pad_len, room);
            puts_(&body, "\r\nX-Pad: ");
            for (size_t i = 0; i < n; i++)
                put(&body, "p", 1);
            over = pad_len >= 0xf000;
            pad_len = 0;
        }
        puts_(&body, "\r\n\r\n");
        if (over) {
            free(name);
            free(filename);
            free(ctype);
            break;
        }
        e = push(&expect, 'B');
        e->name = cut(name, NAME_BUF);
        e->filename = filename ? cut(filename, FILENAME_BUF) : NULL;
        e->ctype = ctype;
        if (vlen) {
            size_t at = body.len;
            char *hit;
            put(&body, p, vlen);
            /* The value may not hold the delimiter: spoil each one's last byte. */
            while ((hit = memmem(body.p + at, vlen, DELIM, strlen(DELIM))))
                hit[strlen(DELIM) - 1] = '_';
            e = push(&expect, 'D');
            if (!(e->data = malloc(vlen)))
                abort();
            memcpy(e->data, body.p + at, vlen);
            e->len = vlen;
            p += vlen;
        }
        push(&expect, 'E');
        puts_(&body, DELIM);
        free(name);
        free(filename);
    }
    puts_(&body, "--");
    if (frame)
        puts_(&body, "\r\nThis is the epilogue.\r\n");

    whole_and_pieces(fixed_ct, body.p, body.len, seed, 0, 0, &got, &res);
    if (over ? res.feed != -EBADMSG || res.finish != -EBADMSG : res.feed || res.finish)
        abort(); /* a body we encoded must parse, unless its headers are too long */
    same_events(&expect, &got, false);
    run_free(&expect);
    run_free(&got);
    free(body.p);
}

/* Input: mode, two bytes of seed for the piece sizes, stop (bits 7-6 10: the (stop & 15)-th
 * part_begin/part_end returns an error; 11: the part_data that brings the data to
 * 1 + (stop & 63) * 5 bytes does), then the body. Mode bit 0: the rest is a list of fields for
 * built_body (bit 2: with a preamble and an epilogue; bit 3: the list starts with two bytes of
 * padding for the first part's headers); bit 1: the body's first line is its Content-Type,
 * otherwise the fixed one with BOUNDARY. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *ct = fixed_ct, *body;
    char *own_ct = NULL;
    unsigned mode, stop_at;
    size_t stop_bytes;
    uint32_t seed;
    size_t len;
    Run run = {0};
    Result res;

    if (size < 4)
        return 0;
    mode = data[0];
    seed = (uint32_t)data[1] << 24 | (uint32_t)data[2] << 8 | 0x5a0002u; /* not 0 or 1 */
    stop_at = (data[3] & 0xc0) == 0x80 ? data[3] & 15u : 0;
    stop_bytes = (data[3] & 0xc0) == 0xc0 ? 1 + (data[3] & 63u) * 5 : 0;
    data += 4;
    size -= 4;
    if (mode & 1) {
        built_body(data, data + size, seed, mode & 4, mode & 8);
        return 0;
    }
    body = (const char *)data;
    len = size;
    if (mode & 2) {
        const char *nl = memchr(body, '\n', len);
        size_t n = nl ? (size_t)(nl - body) : len;
        if (!(own_ct = strndup(body, n)))
            abort();
        ct = own_ct;
        body += nl ? n + 1 : n;
        len -= nl ? n + 1 : n;
    }
    whole_and_pieces(ct, body, len, seed, stop_at, stop_bytes, &run, &res);
    if (own_ct && run.n && strncasecmp(ct, "multipart/form-data", 19))
        abort(); /* parts found with another Content-Type */
    run_free(&run);
    free(own_ct);
    return 0;
}
