/* check.h - the few assertion macros the unit tests share.
 *
 * A failed CHECK prints the file, line and expression and marks the test failed; the test
 * program's exit status is what ctest reads. Tests use real temporary directories. */
#ifndef TASKMILL_CHECK_H
#define TASKMILL_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr);               \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

/* CHECK with a printf-style explanation. */
#define CHECK_MSG(expr, ...)                                                                       \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #expr);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_)) {                                                        \
            fprintf(stderr, "%s:%d: '%s' != '%s'\n", __FILE__, __LINE__, a_ ? a_ : "(null)",       \
                    b_ ? b_ : "(null)");                                                           \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

/* Two strings that are equal, or both NULL. */
#define CHECK_STR_OR_NULL(a, b)                                                                    \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if ((!a_ != !b_) || (a_ && strcmp(a_, b_))) {                                              \
            fprintf(stderr, "%s:%d: %s != %s: '%s' != '%s'\n", __FILE__, __LINE__, #a, #b,         \
                    a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                       \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

/* Two integers that are equal; prints both when they are not. */
#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            fprintf(stderr, "%s:%d: %s != %s: %lld != %lld\n", __FILE__, __LINE__, #a, #b, a_,     \
                    b_);                                                                           \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

static inline int check_done(const char *name)
{
    printf("%s: %s\n", name, check_failures ? "FAILED" : "ok");
    return check_failures ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* A fresh temporary directory; removed by the test with rm_rf_at when done. */
static inline char *check_tmpdir(void)
{
    char tmpl[] = "/tmp/taskmill-unit-XXXXXX";
    char *d = mkdtemp(tmpl);

    if (!d) {
        perror("mkdtemp");
        exit(EXIT_FAILURE);
    }
    return strdup(d);
}

/* Writes text to dir/taskmill.conf; returns the path (free it). */
static inline char *check_write_conf(const char *dir, const char *text)
{
    size_t len = strlen(dir) + sizeof("/taskmill.conf");
    char *path = malloc(len);
    FILE *f;

    if (path)
        snprintf(path, len, "%s/taskmill.conf", dir);
    if (!path || !(f = fopen(path, "w"))) {
        perror("check_write_conf");
        exit(EXIT_FAILURE);
    }
    fputs(text, f);
    fclose(f);
    return path;
}

#endif
