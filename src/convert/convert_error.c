/* convert_error.c - how the media code says what went wrong: a stable code for the task's
 * error.json and a message a person can act on. The first error of a run wins. */
#define CONVERT_MEDIA_INTERNAL
#include "convert_media.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <libavutil/error.h>

static int fill_error(ConvertError *err, const char *code, int averr, int with_reason,
                      const char *fmt, va_list ap)
{
    char why[AV_ERROR_MAX_STRING_SIZE];
    size_t n;

    if (!err || err->code[0])
        return averr;
    snprintf(err->code, sizeof(err->code), "%s", code);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    n = strlen(err->message);
    if (with_reason && averr < 0 && n < sizeof(err->message)) {
        av_strerror(averr, why, sizeof(why));
        snprintf(err->message + n, sizeof(err->message) - n, ": %s", why);
    }
    return averr;
}

int error_fail(ConvertError *err, const char *code, int averr, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    averr = fill_error(err, code, averr, 1, fmt, ap);
    va_end(ap);
    return averr;
}

int error_refuse(ConvertError *err, const char *code, int averr, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    averr = fill_error(err, code, averr, 0, fmt, ap);
    va_end(ap);
    return averr;
}
