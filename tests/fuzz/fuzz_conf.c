/* fuzz_conf.c - libFuzzer target for the configuration loader (src/common/conf.c, inih).
 *
 * The input is written to one memfd per process, reached as /proc/self/fd/N, and loaded with
 * conf_load; the Conf is then freed (leaks are reported by LeakSanitizer). Checked: a refused
 * file says why in err, naming the file, and leaves ret untouched; an accepted Conf keeps the
 * promises conf.c makes (absolute paths, host:port, values in range, a known preset, a
 * NULL-terminated folder list), and conf_listen_split gives a port in 1..65535 and a host that
 * fits. A broken promise calls abort() so that libFuzzer reports the input. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "taskmill/conf.h"
#include "taskmill/tasktype.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The one piece of state kept between runs: the file the inputs are written to. */
static int conf_fd = -1;
static char conf_path[64];

static int write_input(const uint8_t *data, size_t size)
{
    size_t off = 0;

    if (conf_fd < 0) {
        conf_fd = memfd_create("fuzz_conf", MFD_CLOEXEC);
        if (conf_fd < 0)
            return -1;
        snprintf(conf_path, sizeof(conf_path), "/proc/self/fd/%d", conf_fd);
    }
    if (ftruncate(conf_fd, 0) < 0)
        return -1;
    while (off < size) {
        ssize_t n = pwrite(conf_fd, data + off, size - off, (off_t)off);
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    return 0;
}

static int in_range(int v, int lo, int hi)
{
    return v >= lo && v <= hi;
}

static void check_conf(const Conf *c)
{
    char host[256];
    int port;

    if (!c->path || strcmp(c->path, conf_path) || c->root[0] != '/' || c->runtime_dir[0] != '/' ||
        !strchr(c->listen, ':') || !in_range(c->crf, 0, 51) || !tasktype_preset_known(c->preset) ||
        (c->client_preset && !tasktype_preset_known(c->client_preset)) ||
        !in_range(c->client_crf, -1, 51) || !in_range(c->workers, 1, 64) ||
        !in_range(c->rest_threads, 1, 64) || c->max_upload_bytes < 1 ||
        !in_range(c->log_level, 0, 7))
        abort();
    if (strcmp(c->client_output, "beside") && strcmp(c->client_output, "mirror") &&
        strcmp(c->client_output, "replace"))
        abort();
    if (!strcmp(c->client_output, "mirror") && !c->client_output_dir)
        abort();
    for (size_t i = 0; i < c->n_client_folders; i++)
        if (!c->client_folders[i])
            abort();
    if (c->n_client_folders && c->client_folders[c->n_client_folders])
        abort();
    if (conf_listen_split(c, host, sizeof(host), &port) == 0 &&
        (!host[0] || strlen(host) >= sizeof(host) || !in_range(port, 1, 65535)))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512] = "";
    Conf c, untouched;

    if (write_input(data, size) < 0)
        abort();
    memset(&c, 0xa5, sizeof(c));
    memcpy(&untouched, &c, sizeof(c));
    if (conf_load(conf_path, &c, err, sizeof(err)) < 0) {
        if (memcmp(&c, &untouched, sizeof(c)) || strncmp(err, conf_path, strlen(conf_path)))
            abort();
        return 0;
    }
    check_conf(&c);
    conf_free(&c);
    return 0;
}
