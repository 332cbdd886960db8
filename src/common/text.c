/* text.c - UTF-8 checks, control characters, escaping and hex (see text.h).
 *
 * Every client string is checked with these before it is stored; every string written to a
 * log line goes through text_escape, so a client can never start a new log entry or forge its
 * priority. */
#include "taskmill/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int utf8_seq(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned c = p[0], cp;
    int n;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) /* also stops at the terminator */
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

bool utf8_valid(const char *s)
{
    while (*s) {
        int n = utf8_seq(s);
        if (n == 0)
            return false;
        s += n;
    }
    return true;
}

void utf8_clip(char *s)
{
    while (*s) {
        int n = utf8_seq(s);
        if (n == 0) {
            *s = '\0';
            return;
        }
        s += n;
    }
}

/* C0, DEL, and C1 (U+0080..U+009F, encoded as C2 80..C2 9F). */
static bool is_control(const unsigned char *p, int n)
{
    return (n == 1 && (*p < 0x20 || *p == 0x7f)) || (n == 2 && p[0] == 0xc2 && p[1] < 0xa0);
}

bool text_has_control(const char *s)
{
    while (*s) {
        int n = utf8_seq(s);
        if (n == 0 || is_control((const unsigned char *)s, n))
            return true;
        s += n;
    }
    return false;
}

void text_escape(const char *s, char *buf, size_t len)
{
    size_t o = 0;

    if (len == 0)
        return;
    while (*s && o + 1 < len) {
        int n = utf8_seq(s);
        const unsigned char *p = (const unsigned char *)s;

        if (n == 0 || is_control(p, n) || *p == '\\') {
            int w = *p == '\\' ? 2 : 4 * (n ? n : 1);
            if (o + (size_t)w >= len)
                break;
            if (*p == '\\')
                memcpy(buf + o, "\\\\", 2);
            else
                for (int i = 0; i < (n ? n : 1); i++)
                    snprintf(buf + o + 4 * (size_t)i, 5, "\\x%02x", p[i]);
            o += (size_t)w;
            s += n ? n : 1;
            continue;
        }
        if (o + (size_t)n >= len)
            break;
        memcpy(buf + o, s, (size_t)n);
        o += (size_t)n;
        s += n;
    }
    buf[o] = '\0';
}

void hex_encode(const unsigned char *bytes, size_t len, char *hex)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        hex[2 * i] = digits[bytes[i] >> 4];
        hex[2 * i + 1] = digits[bytes[i] & 15];
    }
    hex[2 * len] = '\0';
}

void strv_free(char **v)
{
    for (char **s = v; s && *s; s++)
        free(*s);
    free(v);
}
