/* result.c - a task's result made durable and visible, or its error recorded (see result.h).
 *
 * The sha256 goes into result.json and the download's ETag, so a client can check what it got.
 * It is computed with OpenSSL's EVP interface while the file is read once after its fsync. */
#define _GNU_SOURCE
#include "taskmill/result.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "taskmill/clock.h"
#include "taskmill/files.h"
#include "taskmill/text.h"

/* fsyncs the file, then hashes it. */
static int sync_and_hash(int dir_fd, const char *name, char hex[65], uint64_t *ret_size)
{
    unsigned char buf[1 << 16], digest[EVP_MAX_MD_SIZE];
    int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), r = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned dlen = 0;
    uint64_t size = 0;
    ssize_t n;

    if (fd < 0 || !ctx || fsync(fd) < 0 || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
        r = fd < 0 || !ctx ? -EIO : -errno;
    while (r == 0 && (n = read(fd, buf, sizeof(buf))) != 0) {
        if (n < 0 || !EVP_DigestUpdate(ctx, buf, (size_t)n))
            r = -EIO;
        else
            size += (uint64_t)n;
    }
    if (r == 0 && (!EVP_DigestFinal_ex(ctx, digest, &dlen) || dlen != 32))
        r = -EIO;
    EVP_MD_CTX_free(ctx);
    if (fd >= 0)
        close(fd);
    if (r == 0) {
        hex_encode(digest, 32, hex);
        *ret_size = size;
    }
    return r;
}

int result_publish(int dir_fd, const char *partial, const char *disk, const char *file_name,
                   json_t *extra)
{
    char hex[65];
    uint64_t size;
    json_t *j;
    int r = sync_and_hash(dir_fd, partial, hex, &size);

    if (r < 0)
        return r;
    if (renameat(dir_fd, partial, dir_fd, disk) < 0)
        return -errno;
    j = json_pack("{s:s, s:s, s:I, s:s, s:I}", "file_name", file_name, "disk_name", disk, "size",
                  (json_int_t)size, "sha256", hex, "finished_ns", (json_int_t)now_ns());
    if (j && extra)
        json_object_update(j, extra);
    r = j ? json_write_at(dir_fd, "result.json", j) : -ENOMEM; /* fsyncs the folder too */
    json_decref(j);
    return r;
}

int result_error(int dir_fd, const char *code, const char *message)
{
    char msg[1024];
    json_t *j;
    int r;

    snprintf(msg, sizeof(msg), "%s", message);
    utf8_clip(msg);
    j = json_pack("{s:s, s:s, s:I}", "code", code, "message", msg, "finished_ns",
                  (json_int_t)now_ns());
    r = j ? json_write_at(dir_fd, "error.json", j) : -ENOMEM;
    json_decref(j);
    return r;
}

/* File name extensions and media types, both ways. */
static const char *const media[][2] = {
    {".mp4", "video/mp4"},
    {".mkv", "video/x-matroska"},
    {".webm", "video/webm"},
    {".mov", "video/quicktime"},
    {".json", "application/json"},
    {".txt", "text/plain; charset=utf-8"},
    {".csv", "text/csv; charset=utf-8"},
};

const char *result_media_type(const char *file_name)
{
    const char *dot = file_name ? strrchr(file_name, '.') : NULL;

    for (size_t i = 0; dot && i < sizeof(media) / sizeof(media[0]); i++)
        if (!strcasecmp(dot, media[i][0]))
            return media[i][1];
    return "application/octet-stream";
}

const char *result_extension(const char *media_type)
{
    for (size_t i = 0; media_type && i < sizeof(media) / sizeof(media[0]); i++) {
        size_t n = strcspn(media[i][1], ";");
        if (!strncasecmp(media_type, media[i][1], n) &&
            (media_type[n] == '\0' || media_type[n] == ';' || media_type[n] == ' '))
            return media[i][0];
    }
    return ".bin";
}
