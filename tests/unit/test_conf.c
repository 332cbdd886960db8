/* test_conf.c - the config loader: defaults, good values, and errors that name file:line:key. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "check.h"
#include "taskmill/conf.h"
#include "taskmill/jobdir.h"
#include "taskmill/files.h"

static char *write_conf(const char *dir, const char *text)
{
    char *path;
    FILE *f;

    if (asprintf(&path, "%s/taskmill.conf", dir) < 0)
        exit(1);
    f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_defaults(void)
{
    char err[512];
    Conf c;

    CHECK(conf_load(NULL, &c, err, sizeof(err)) == 0);
    CHECK_STR(c.listen, "127.0.0.1:8080");
    CHECK(c.workers == 1 && c.crf == 28);
    CHECK_STR(c.preset, "medium");
    conf_free(&c);
}

static void test_good(const char *dir)
{
    char *path = write_conf(dir, "; a comment\n[paths]\nroot = /srv/tm\nruntime_dir = /run/tm\n"
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
    char *path = write_conf(dir, text);
    char err[512] = "";
    Conf c;

    CHECK(conf_load(path, &c, err, sizeof(err)) < 0);
    if (!strstr(err, want)) {
        fprintf(stderr, "error '%s' does not contain '%s'\n", err, want);
        check_failures++;
    }
    free(path);
}

/* The shipped conf/taskmill.conf must load and match the built-in defaults it documents. */
static void test_shipped(const char *path)
{
    char err[512] = "";
    Conf c, d;

    CHECK(conf_load(path, &c, err, sizeof(err)) == 0);
    if (*err)
        fprintf(stderr, "%s\n", err);
    CHECK(conf_load(NULL, &d, err, sizeof(err)) == 0);
    CHECK_STR(c.root, d.root);
    CHECK_STR(c.listen, d.listen);
    CHECK(c.workers == d.workers && c.crf == d.crf && c.max_upload_bytes == d.max_upload_bytes);
    CHECK(c.stall_timeout == d.stall_timeout && c.client_settle == d.client_settle);
    CHECK_STR(c.client_include, d.client_include);
    conf_free(&c);
    conf_free(&d);
}

static void test_client(const char *dir)
{
    char *path = write_conf(dir, "[client]\nfolder = /a\nfolder = /b c\noutput = mirror\n"
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
