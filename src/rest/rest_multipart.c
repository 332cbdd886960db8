/* rest_multipart.c - a streaming multipart/form-data parser (see rest_multipart.h).
 *
 * Why not libmicrohttpd's post processor: it cannot tell an empty part from a part whose
 * content has not arrived yet, so "one file part only" could not be enforced, and it accepts
 * application/x-www-form-urlencoded where the API promises 415.
 *
 * The parser looks for the delimiter "\r\n--BOUNDARY"; the body is treated as if it began
 * with "\r\n", so the first delimiter needs no special case. Content is handed out as soon as
 * it cannot be the start of a delimiter: at most the delimiter's length stays buffered. */
#define _GNU_SOURCE
#include "rest_multipart.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BOUNDARY_MAX 70   /* RFC 2046 */
#define HEADERS_MAX  8192 /* one part's header block */
#define CHUNK        65536

typedef enum {
    MP_PREAMBLE, /* before the first delimiter */
    MP_AFTER,    /* just after a delimiter: "--" ends the body, CRLF starts a part */
    MP_HEADERS,  /* a part's header block, up to the empty line */
    MP_BODY,     /* a part's content, up to the next delimiter */
    MP_EPILOGUE, /* after the closing delimiter: ignored */
} MpState;

struct Multipart {
    const MultipartCallbacks *cb;
    void *ud;
    MpState state;
    int error;
    char delim[BOUNDARY_MAX + 5]; /* "\r\n--" BOUNDARY */
    size_t dlen;
    char *buf; /* unprocessed bytes */
    size_t len, cap;
};

/* The boundary parameter of a multipart/form-data Content-Type, quoted or not. */
static int boundary_of(const char *ct, char *out, size_t outlen)
{
    const char *p = ct;
    size_t n = 0;

    if (!ct || strncasecmp(ct, "multipart/form-data", 19) ||
        (ct[19] && ct[19] != ';' && ct[19] != ' ' && ct[19] != '\t'))
        return -EINVAL;
    while ((p = strchr(p, ';'))) {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncasecmp(p, "boundary=", 9))
            continue;
        p += 9;
        if (*p == '"') {
            for (p++; *p && *p != '"' && n + 1 < outlen; p++)
                out[n++] = *p;
            if (*p != '"')
                return -EINVAL;
        } else {
            for (; *p && *p != ';' && *p != ' ' && *p != '\t' && n + 1 < outlen; p++)
                out[n++] = *p;
        }
        out[n] = '\0';
        return n >= 1 && n <= BOUNDARY_MAX ? 0 : -EINVAL;
    }
    return -EINVAL;
}

int multipart_new(const char *content_type, const MultipartCallbacks *cb, void *ud, Multipart **ret)
{
    char boundary[BOUNDARY_MAX + 2];
    Multipart *m;

    if (boundary_of(content_type, boundary, sizeof(boundary)) < 0)
        return -EINVAL;
    m = calloc(1, sizeof(*m));
    if (!m || !(m->buf = malloc(CHUNK + sizeof(m->delim)))) {
        free(m);
        return -ENOMEM;
    }
    m->cb = cb;
    m->ud = ud;
    m->cap = CHUNK + sizeof(m->delim);
    m->dlen = (size_t)snprintf(m->delim, sizeof(m->delim), "\r\n--%s", boundary);
    memcpy(m->buf, "\r\n", 2); /* the body's start counts as a line start */
    m->len = 2;
    *ret = m;
    return 0;
}

void multipart_free(Multipart *m)
{
    if (!m)
        return;
    free(m->buf);
    free(m);
}

/* --- one part's headers --------------------------------------------------------------------- */

/* Reads a token or a quoted-string (with backslash escapes) at p into out; returns the end. */
static const char *param_value(const char *p, const char *end, char *out, size_t outlen)
{
    size_t n = 0;

    if (p < end && *p == '"') {
        for (p++; p < end && *p != '"'; p++) {
            if (*p == '\\' && p + 1 < end)
                p++;
            if (n + 1 < outlen)
                out[n++] = *p;
        }
        if (p >= end)
            return NULL; /* unterminated */
        p++;
    } else {
        for (; p < end && *p != ';' && *p != ' ' && *p != '\t'; p++)
            if (n + 1 < outlen)
                out[n++] = *p;
    }
    out[n] = '\0';
    return p;
}

typedef struct PartHeaders {
    char name[256], filename[1024], content_type[256];
    bool has_disposition, has_name, has_filename, has_type;
} PartHeaders;

/* Content-Disposition: form-data; name="..."; filename="..." */
static int parse_disposition(const char *v, const char *end, PartHeaders *h)
{
    char key[32], junk[8];
    const char *p = v;

    if ((size_t)(end - p) < 9 || strncasecmp(p, "form-data", 9))
        return -EBADMSG;
    p += 9;
    h->has_disposition = true;
    while (p < end) {
        size_t k = 0;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p == end)
            break;
        if (*p++ != ';')
            return -EBADMSG;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        while (p < end && *p != '=' && k + 1 < sizeof(key))
            key[k++] = *p++;
        key[k] = '\0';
        if (p >= end || *p++ != '=')
            return -EBADMSG;
        if (!strcasecmp(key, "name"))
            p = param_value(p, end, h->name, sizeof(h->name)), h->has_name = true;
        else if (!strcasecmp(key, "filename"))
            p = param_value(p, end, h->filename, sizeof(h->filename)), h->has_filename = true;
        else
            p = param_value(p, end, junk, sizeof(junk)); /* filename* and others: ignored */
        if (!p)
            return -EBADMSG;
    }
    return 0;
}

static int parse_header_line(const char *line, const char *end, PartHeaders *h)
{
    const char *colon = memchr(line, ':', (size_t)(end - line)), *v;
    size_t n;

    if (!colon || colon == line)
        return -EBADMSG;
    for (v = colon + 1; v < end && (*v == ' ' || *v == '\t');)
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    n = (size_t)(colon - line);
    if (n == 19 && !strncasecmp(line, "Content-Disposition", 19))
        return h->has_disposition ? -EBADMSG : parse_disposition(v, end, h);
    if (n == 12 && !strncasecmp(line, "Content-Type", 12)) {
        size_t len = (size_t)(end - v);
        if (len >= sizeof(h->content_type))
            return -EBADMSG;
        memcpy(h->content_type, v, len);
        h->content_type[len] = '\0';
        h->has_type = true;
    }
    return 0; /* other headers (Content-Transfer-Encoding is deprecated) are ignored */
}

/* The header block [p, end) without its final empty line. */
static int parse_headers(Multipart *m, const char *p, const char *end)
{
    PartHeaders h = {0};
    int r = 0;

    while (r == 0 && p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol)
            eol = end;
        if (*p == ' ' || *p == '\t') /* obsolete line folding */
            return -EBADMSG;
        r = parse_header_line(p, eol, &h);
        p = eol + 2;
    }
    if (r < 0 || !h.has_disposition || !h.has_name)
        return -EBADMSG;
    return m->cb->part_begin(m->ud, h.name, h.has_filename ? h.filename : NULL,
                             h.has_type ? h.content_type : NULL);
}

/* --- the state machine ---------------------------------------------------------------------- */

/* Handles what it can of buf[0..len); returns how many bytes it consumed, or <0. */
static long step(Multipart *m, const char *b, size_t len, bool more)
{
    const char *hit, *end;
    size_t safe, pad;
    int r;

    switch (m->state) {
    case MP_PREAMBLE:
    case MP_BODY:
        hit = memmem(b, len, m->delim, m->dlen);
        if (!hit) { /* keep what may be the start of a delimiter */
            safe = len >= m->dlen ? len - (m->dlen - 1) : 0;
            if (m->state == MP_BODY && safe && (r = m->cb->part_data(m->ud, b, safe)) < 0)
                return r;
            return (long)safe;
        }
        if (m->state == MP_BODY && hit > b &&
            (r = m->cb->part_data(m->ud, b, (size_t)(hit - b))) < 0)
            return r;
        if (m->state == MP_BODY && (r = m->cb->part_end(m->ud)) < 0)
            return r;
        m->state = MP_AFTER;
        return (long)(hit - b + (long)m->dlen);
    case MP_AFTER:
        if (len >= 2 && !memcmp(b, "--", 2)) {
            m->state = MP_EPILOGUE;
            return 2;
        }
        for (pad = 0; pad < len && (b[pad] == ' ' || b[pad] == '\t');)
            pad++;
        if (pad + 2 <= len) {
            if (memcmp(b + pad, "\r\n", 2))
                return -EBADMSG;
            m->state = MP_HEADERS;
            return (long)(pad + 2);
        }
        return more ? 0 : -EBADMSG;
    case MP_HEADERS:
        if (len >= 2 && !memcmp(b, "\r\n", 2))
            return -EBADMSG; /* a part without headers has no name */
        end = memmem(b, len, "\r\n\r\n", 4);
        /* Up to 3 bytes at the end may be the start of the terminator: the answer must not
         * depend on where the body was cut (found by fuzz_multipart). */
        if (!end)
            return len > HEADERS_MAX + 3 ? -EBADMSG : 0;
        if ((size_t)(end - b) > HEADERS_MAX)
            return -EBADMSG;
        if ((r = parse_headers(m, b, end)) < 0)
            return r;
        m->state = MP_BODY;
        return (long)(end - b + 4);
    case MP_EPILOGUE:
        return (long)len;
    }
    return -EBADMSG;
}

/* Runs the state machine over the buffer until it needs more input. */
static int drain(Multipart *m, bool more)
{
    size_t off = 0;

    for (;;) {
        long n = step(m, m->buf + off, m->len - off, more);
        if (n < 0)
            return m->error = (int)n;
        if (n == 0)
            break;
        off += (size_t)n;
    }
    memmove(m->buf, m->buf + off, m->len - off);
    m->len -= off;
    return 0;
}

int multipart_feed(Multipart *m, const char *data, size_t len)
{
    while (!m->error && len > 0) {
        size_t n = m->cap - m->len < len ? m->cap - m->len : len;
        memcpy(m->buf + m->len, data, n);
        m->len += n;
        data += n;
        len -= n;
        if (drain(m, true) == 0 && m->len == m->cap)
            m->error = -EBADMSG; /* a header block too long to hold */
    }
    return m->error;
}

int multipart_finish(Multipart *m)
{
    if (!m->error)
        drain(m, false);
    if (m->error)
        return m->error;
    return m->state == MP_EPILOGUE ? 0 : -EBADMSG;
}
