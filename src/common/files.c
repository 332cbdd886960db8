/* files.c - durable file operations (see files.h).
 *
 * A file is published by writing a temporary name, fsync, rename, fsync of the folder: after a
 * crash the name holds either the old or the new content, never a mix. Functions return 0 or
 * -errno and never log. */
#define _GNU_SOURCE
#include "taskmill/files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

int mkdir_p(const char *path, int mode)
{
    char buf[4096];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int fsync_at(int dir_fd, const char *name)
{
    int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
    int r = 0;

    if (fd < 0)
        return -errno;
    if (fsync(fd) < 0)
        r = -errno;
    close(fd);
    return r;
}

int fd_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int file_write_atomic(int dir_fd, const char *name, const void *buf, size_t len)
{
    char tmp[300];
    int fd, r;

    if (snprintf(tmp, sizeof(tmp), ".tmp.%s", name) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0)
        return -errno;
    r = fd_write_all(fd, buf, len);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && renameat(dir_fd, tmp, dir_fd, name) < 0)
        r = -errno;
    if (r < 0) {
        unlinkat(dir_fd, tmp, 0);
        return r;
    }
    if (dir_fd == AT_FDCWD)
        return fsync_at(AT_FDCWD, ".");
    return fsync(dir_fd) < 0 ? -errno : 0;
}

int file_read_all(int dir_fd, const char *name, size_t max, char **ret, size_t *ret_len)
{
    int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    char *buf;
    size_t len = 0;
    ssize_t n;

    if (fd < 0)
        return -errno;
    buf = malloc(max + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    while (len < max && (n = read(fd, buf + len, max - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int r = -errno;
            close(fd);
            free(buf);
            return r;
        }
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    *ret = buf;
    if (ret_len)
        *ret_len = len;
    return 0;
}

static int rm_children(int fd)
{
    DIR *d = fdopendir(fd);
    struct dirent *de;
    int r = 0;

    if (!d) {
        close(fd);
        return -errno;
    }
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        int q = rm_rf_at(dirfd(d), de->d_name);
        if (q < 0 && r == 0)
            r = q;
    }
    closedir(d);
    return r;
}

int rm_rf_at(int dir_fd, const char *name)
{
    int fd, r;

    if (unlinkat(dir_fd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    r = rm_children(fd);
    /* A process that still held the folder open (a callback record written while the job
     * was deleted) may have added a file meanwhile: empty it again, a bounded number of
     * times. */
    for (int i = 0; r == 0 && unlinkat(dir_fd, name, AT_REMOVEDIR) < 0; i++) {
        if (errno == ENOENT)
            break;
        if (errno != ENOTEMPTY || i == 3)
            return -errno;
        fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        r = fd < 0 ? -errno : rm_children(fd);
    }
    return r;
}

int json_read_at(int dir_fd, const char *name, json_t **ret)
{
    char *buf;
    size_t len;
    json_t *j;
    int r = file_read_all(dir_fd, name, 1 << 20, &buf, &len);

    if (r < 0)
        return r;
    j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    free(buf);
    if (!json_is_object(j)) {
        json_decref(j);
        return -EBADMSG;
    }
    *ret = j;
    return 0;
}

int json_write_at(int dir_fd, const char *name, json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    int r;

    if (!s)
        return -ENOMEM;
    r = file_write_atomic(dir_fd, name, s, strlen(s));
    free(s);
    return r;
}

int file_sha256(int fd, char ret_hex[SHA256_HEX_LEN + 1])
{
    unsigned char buf[1 << 16], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    off_t pos = 0;
    ssize_t n;
    int r = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ? 0 : -ENOMEM;

    while (r == 0 && (n = pread(fd, buf, sizeof(buf), pos)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            r = -errno;
        else if (!EVP_DigestUpdate(ctx, buf, (size_t)n))
            r = -EIO;
        pos += n > 0 ? n : 0;
    }
    if (r == 0 && (!EVP_DigestFinal_ex(ctx, md, &mdlen) || mdlen * 2 != SHA256_HEX_LEN))
        r = -EIO;
    EVP_MD_CTX_free(ctx);
    if (r < 0)
        return r;
    for (unsigned int i = 0; i < mdlen; i++)
        snprintf(ret_hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}
