/* text.h - checks and conversions of text: UTF-8, control characters, hex.
 *
 * Client strings pass through here before they reach a file, a JSON document or a log line. */
#ifndef TASKMILL_TEXT_H
#define TASKMILL_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Length of the valid UTF-8 sequence at p (1-4), or 0 when it is not valid (overlong,
 * surrogate, beyond U+10FFFF, cut short). */
int utf8_seq(const char *p);
/* The whole string is valid UTF-8. */
bool utf8_valid(const char *s);
/* Cuts s at its first byte that is not part of valid UTF-8, so it can go into JSON. */
void utf8_clip(char *s);
/* s holds a C0 control character, DEL or a C1 control character (U+0080..U+009F). s must be
 * valid UTF-8. */
bool text_has_control(const char *s);
/* Copies s into buf with every control character and every byte that is not valid UTF-8
 * written as \xNN (and '\' as \\), so the result is one printable line. */
void text_escape(const char *s, char *buf, size_t len);
/* Lower-case hex of len bytes into hex (2 * len + 1 bytes). */
void hex_encode(const unsigned char *bytes, size_t len, char *hex);
/* Frees a NULL-terminated vector of strings and the strings (v may be NULL). */
void strv_free(char **v);

#endif
