/* result.h - publishing a task's result in its job folder.
 *
 * A worker writes the result under a temporary name, then result_publish makes it the result:
 * the file is fsynced and hashed, renamed to its final name, and result.json is written (temp,
 * fsync, rename) naming it: {file_name, disk_name, size, sha256, finished_ns, ...extra}. A job
 * whose result.json exists has a complete result; anything else is a half-written output that
 * recovery removes. */
#ifndef TASKMILL_RESULT_H
#define TASKMILL_RESULT_H

#include <jansson.h>

/* partial and disk are names inside dir_fd (AT_FDCWD: the current directory); file_name is the
 * name the client gets; extra's members are added to result.json (may be NULL). */
int result_publish(int dir_fd, const char *partial, const char *disk, const char *file_name,
                   json_t *extra);
/* error.json: why the attempt failed, {code, message, finished_ns}. */
int result_error(int dir_fd, const char *code, const char *message);

/* The media type a result is served with, from its name ("application/octet-stream" when the
 * extension is not known), and the extension for a media type (".bin" when not known). */
const char *result_media_type(const char *file_name);
const char *result_extension(const char *media_type);

#endif
