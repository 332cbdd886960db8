/* files.h - small, durable file operations every taskmill program uses.
 *
 * Nothing here knows about jobs or tasks: these are the building blocks of the folder protocol
 * (jobdir.h) and of every file a daemon writes. Errors come back as -errno. */
#ifndef TASKMILL_FILES_H
#define TASKMILL_FILES_H

#include <jansson.h>
#include <stddef.h>

/* write(2) until done, through EINTR and short writes. */
int fd_write_all(int fd, const void *buf, size_t len);

/* Writes name inside dir_fd atomically and durably: ".tmp.<name>", fsync, rename, fsync of the
 * folder. */
int file_write_atomic(int dir_fd, const char *name, const void *buf, size_t len);
/* Reads a whole (small) file of at most max bytes; caller frees *ret (NUL-terminated). */
int file_read_all(int dir_fd, const char *name, size_t max, char **ret, size_t *ret_len);
/* fsync of name (a file or a folder) under dir_fd. */
int fsync_at(int dir_fd, const char *name);
/* Deletes name (file or tree) under dir_fd; missing is not an error. */
int rm_rf_at(int dir_fd, const char *name);
/* mkdir -p with mode. */
int mkdir_p(const char *path, int mode);

/* A small JSON object in a file: read (1 MiB at most, must be an object), or written with
 * file_write_atomic. */
/* The SHA-256 of the whole file (read with pread from offset 0) as 64 lower-case hex digits. */
#define SHA256_HEX_LEN 64
int file_sha256(int fd, char ret_hex[SHA256_HEX_LEN + 1]);
int json_read_at(int dir_fd, const char *name, json_t **ret);
int json_write_at(int dir_fd, const char *name, json_t *j);

#endif
