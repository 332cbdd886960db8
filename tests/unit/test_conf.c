/* test_conf.c - the config loader: defaults, good values, and errors that name file:line:key. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "check.h"
#include "taskmill/conf.h"
#include "taskmill/jobdir.h"
#include "taskmill/files.h"

/* conf.c itself, for its key table (conf_keys, static there): the shipped file is compared with
 * the built-in defaults on every key the loader knows. Its functions are this program's, so the
 * library's copy of conf.c is not linked in. */
#include "../../src/common/conf.c"

static void test_defaults(void)
{
    char err[512];
    Conf c;

    CHECK(conf_load(NULL, &c, err, sizeof(err)) == 0);
    CHECK_STR(c.listen, "127.0.0.1:8080");
    CHECK(c.workers == conf_cpus() && c.crf == 28); /* workers = 0: one per core */
    CHECK_STR(c.preset, "medium");
    conf_free(&c);
}

static void test_good(const char *dir)
{
    char *path =
        check_write_conf(dir, "; a comment\n[paths]\nroot = /srv/tm\nruntime_dir = /run/tm\n"
                              "[rest]\nlisten = [::1]:9000\n[convert]\nworkers = 2\n"
                              "crf = 30\npreset = ultrafast\nkeep_input = yes\n");
    char err[512], host[64];
    int port;
    Conf c;

    CHECK(conf_load(path, &c, err, sizeof(err)) == 0);
    CHECK_STR(c.root, "/srv/tm");
    CHECK(c.workers == 2 && c.crf == 30 && c.keep_input);
    CHECK(conf_listen_split(&c, host, sizeof(host), &port) == 0);
    CHECK_STR(host, "::1");
    CHECK(port == 9000);
    conf_free(&c);
    free(path);
}

static void expect_error(const char *dir, const char *text, const char *want)
{
    char *path = check_write_conf(dir, text);
    char err[512] = "";
    Conf c;

    CHECK(conf_load(path, &c, err, sizeof(err)) < 0);
    if (!strstr(err, want)) {
        fprintf(stderr, "error '%s' does not contain '%s'\n", err, want);
        check_failures++;
    }
    free(path);
}

static size_t key_size(KeyKind kind)
{
    switch (kind) {
    case KEY_INT:
    case KEY_LEVEL:
        return sizeof(int);
    case KEY_U64:
        return sizeof(uint64_t);
    case KEY_BOOL:
        return sizeof(bool);
    case KEY_DOUBLE:
        return sizeof(double);
    case KEY_LIST:
        return sizeof(char **);
    case KEY_STR:
    case KEY_PRESET:
    case KEY_OUTPUT:
    case KEY_LOADSRC:
        break;
    }
    return sizeof(char *);
}

/* Every field of Conf is a key of the table, or path (the file loaded), n_client_folders
 * (the length of the folder list) or type_table (the [type.*] sections): the table's fields, with
 * those two, laid out in offset order as C lays out a struct, give Conf's size and every field's
 * offset. A field added to Conf without a key fails this, unless it fits in the padding before the
 * next field. */
static void test_keys_cover_conf(void)
{
    struct Field {
        size_t offset, size;
        const char *name;
    } f[sizeof(conf_keys) / sizeof(conf_keys[0]) + 3];
    size_t n = 0, end = 0;

    for (size_t i = 0; i < sizeof(conf_keys) / sizeof(conf_keys[0]); i++)
        f[n++] =
            (struct Field){conf_keys[i].offset, key_size(conf_keys[i].kind), conf_keys[i].name};
    f[n++] = (struct Field){offsetof(Conf, path), sizeof(char *), "path"};
    f[n++] = (struct Field){offsetof(Conf, n_client_folders), sizeof(size_t), "n_client_folders"};
    f[n++] = (struct Field){offsetof(Conf, type_table), sizeof(void *), "type_table"};
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (f[j].offset < f[i].offset) {
                struct Field t = f[i];
                f[i] = f[j];
                f[j] = t;
            }
    for (size_t i = 0; i < n; i++) {
        size_t at = (end + f[i].size - 1) / f[i].size * f[i].size; /* aligned like its size */
        if (i > 0 && f[i].offset == f[i - 1].offset)
            continue; /* a key read in two sections ([cluster] and [node] nats_*) */
        CHECK_MSG(f[i].offset == at,
                  "Conf has %zu bytes before '%s' (offset %zu) that no key of conf.c's table holds",
                  f[i].offset - end, f[i].name, f[i].offset);
        end = f[i].offset + f[i].size;
    }
    CHECK_MSG((end + 7) / 8 * 8 == sizeof(Conf),
              "Conf has %zu bytes after its last known field that no key holds",
              sizeof(Conf) - end);
}

/* The shipped conf/taskmill.conf must load and match the built-in defaults it documents: every
 * key of the loader's table, each compared by its kind, and every key named in the file (set,
 * or commented out as ";key = ..."). */
static void test_shipped(const char *path)
{
    char err[512] = "", *text = NULL;
    size_t len, keys = 0;
    Conf c, d;

    CHECK(conf_load(path, &c, err, sizeof(err)) == 0);
    if (*err)
        fprintf(stderr, "%s\n", err);
    CHECK(conf_load(NULL, &d, err, sizeof(err)) == 0);
    for (size_t i = 0; i < sizeof(conf_keys) / sizeof(conf_keys[0]); i++) {
        const ConfKey *k = &conf_keys[i];
        const char *a = (const char *)&c + k->offset, *b = (const char *)&d + k->offset;
        int same = 1;

        switch (k->kind) {
        case KEY_STR:
        case KEY_PRESET:
        case KEY_OUTPUT:
        case KEY_LOADSRC: {
            const char *x = *(char *const *)a, *y = *(char *const *)b;
            same = (!x && !y) || (x && y && !strcmp(x, y));
            if (!same)
                fprintf(stderr, "[%s] %s: shipped '%s', built-in '%s'\n", k->section, k->name,
                        x ? x : "(unset)", y ? y : "(unset)");
            break;
        }
        case KEY_INT:
        case KEY_LEVEL:
            same = *(const int *)a == *(const int *)b;
            if (!same)
                fprintf(stderr, "[%s] %s: shipped %d, built-in %d\n", k->section, k->name,
                        *(const int *)a, *(const int *)b);
            break;
        case KEY_U64:
            same = *(const uint64_t *)a == *(const uint64_t *)b;
            if (!same)
                fprintf(stderr, "[%s] %s: shipped %" PRIu64 ", built-in %" PRIu64 "\n", k->section,
                        k->name, *(const uint64_t *)a, *(const uint64_t *)b);
            break;
        case KEY_DOUBLE:
            same = *(const double *)a == *(const double *)b;
            if (!same)
                fprintf(stderr, "[%s] %s: shipped %g, built-in %g\n", k->section, k->name,
                        *(const double *)a, *(const double *)b);
            break;
        case KEY_BOOL:
            same = *(const bool *)a == *(const bool *)b;
            if (!same)
                fprintf(stderr, "[%s] %s: shipped %d, built-in %d\n", k->section, k->name,
                        *(const bool *)a, *(const bool *)b);
            break;
        case KEY_LIST: {
            char *const *x = *(char **const *)a, *const *y = *(char **const *)b;
            size_t nx = list_len((char **)x), ny = list_len((char **)y);
            same = nx == ny;
            for (size_t m = 0; same && m < nx; m++)
                same = !strcmp(x[m], y[m]);
            if (!same)
                fprintf(stderr, "[%s] %s: shipped %zu values, built-in %zu, or they differ\n",
                        k->section, k->name, nx, ny);
            break;
        }
        }
        if (!same)
            check_failures++;
        keys++;
    }
    CHECK_INT(c.n_client_folders, d.n_client_folders);
    CHECK(keys > 50); /* the table was walked */

    /* Every key is documented in the file, under its section. */
    CHECK(file_read_all(AT_FDCWD, path, 1 << 20, &text, &len) == 0);
    for (size_t i = 0; text && i < sizeof(conf_keys) / sizeof(conf_keys[0]); i++) {
        const ConfKey *k = &conf_keys[i];
        char head[64], set[96], commented[96];
        const char *sec, *next;

        snprintf(head, sizeof(head), "\n[%s]\n", k->section);
        snprintf(set, sizeof(set), "\n%s = ", k->name);
        snprintf(commented, sizeof(commented), "\n;%s = ", k->name);
        sec = strstr(text, head);
        next = sec ? strstr(sec + 1, "\n[") : NULL;
        const char *hit = sec ? strstr(sec, set) : NULL,
                   *hit2 = sec ? strstr(sec, commented) : NULL;
        CHECK_MSG(sec && ((hit && (!next || hit < next)) || (hit2 && (!next || hit2 < next))),
                  "the shipped file does not name [%s] %s", k->section, k->name);
    }
    free(text);
    conf_free(&c);
    conf_free(&d);
}

static void test_client(const char *dir)
{
    char *path = check_write_conf(dir, "[client]\nfolder = /a\nfolder = /b c\noutput = mirror\n"
                                       "output_dir = /out\n");
    char err[512];
    Conf c;

    CHECK(conf_load(path, &c, err, sizeof(err)) == 0);
    CHECK(c.n_client_folders == 2);
    CHECK_STR(c.client_folders[1], "/b c");
    CHECK_STR(c.client_output, "mirror");
    conf_free(&c);
    free(path);
}

int main(int argc, char **argv)
{
    char *dir = check_tmpdir();

    test_keys_cover_conf();
    if (argc > 1)
        test_shipped(argv[1]);
    test_client(dir);
    expect_error(dir, "[client]\noutput = elsewhere\n", ":2: [client] output");
    expect_error(dir, "[callback]\nallow_networks = 192.168.1.0/24 10.0.0.0/33\n",
                 "allow_networks: '10.0.0.0/33' is not a network");
    expect_error(dir, "[callback]\nallow_networks = 192.168.1/24\n", "'192.168.1/24'");
    expect_error(dir, "[callback]\nallow_networks = 10.0.0.1/8\n", "'10.0.0.1/8'");
    expect_error(dir, "[client]\noutput = mirror\n", "output = mirror needs output_dir");

    test_defaults();
    test_good(dir);
    expect_error(dir, "[convert]\nworkers = 2\ncrf = 99\n", "taskmill.conf:3: [convert] crf");
    expect_error(dir, "[convert]\nwokers = 2\n", ":2: [convert] wokers = '2': unknown key");
    expect_error(dir, "[paths]\nroot = relative/dir\n", "root: must be an absolute path");
    expect_error(dir, "[rest]\nlisten = 8080\n", "listen: must be host:port");
    expect_error(dir, "[convert]\nkeep_input = maybe\n", ":2: [convert] keep_input");
    expect_error(dir, "[convert]\npreset = fastest\n", ":2: [convert] preset");
    expect_error(dir, "[nosuch]\nkey = 1\n", ":2: [nosuch] key");
    expect_error(dir, "this is not ini\n", ":1:");
    {
        char err[512];
        Conf c;
        CHECK(conf_load("/nonexistent/taskmill.conf", &c, err, sizeof(err)) == -ENOENT);
        CHECK(strstr(err, "/nonexistent/taskmill.conf") != NULL);
    }
    rm_rf_at(AT_FDCWD, dir);
    free(dir);
    return check_done("test_conf");
}
