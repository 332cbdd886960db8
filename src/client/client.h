/* client.h - what the taskmill client's commands (client.c) share with its HTTP helpers
 * (client_http.c).
 *
 * An Http handle wraps one libcurl easy handle, so the requests of one command (wait's polls,
 * list's pages, a later sync) reuse one connection. Every exchange returns 0 once the server
 * answered, whatever the HTTP status, and -errno when no answer came; the reason is then in
 * http_strerror(). Failure statuses stay answers because their JSON bodies say what went wrong. */
#ifndef TASKMILL_CLIENT_H
#define TASKMILL_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Exit codes of the taskmill command. */
enum {
    CLIENT_EXIT_OK = 0,
    CLIENT_EXIT_FAIL = 1,    /* the server refused, no answer, a failed task, a bad download */
    CLIENT_EXIT_USAGE = 2,   /* bad arguments */
    CLIENT_EXIT_TIMEOUT = 3, /* wait --timeout ran out */
};

#define SHA256_HEX_LEN 64

typedef struct Http Http;

/* The fields of POST /v1/tasks; NULL (or priority < 0) leaves a field out. */
typedef struct HttpTaskForm {
    const char *idempotency_key; /* sent first; a repeated key gets the existing task (200) */
    const char *task_type;
    const char *path;      /* the local file, streamed as file_data */
    const char *file_name; /* the name the server is told, also the file part's filename */
    const char *file_path; /* client metadata: the absolute directory the file came from */
    int priority;
    const char *callback_url;
    const char *params; /* JSON object text */
} HttpTaskForm;

int http_new(Http **ret);
void http_free(Http *h);
/* Shows upload and download progress on stderr (meant for a terminal). */
void http_set_progress(Http *h, bool on);
/* The file named after the progress bar (NULL for none); the string must outlive the transfers. */
void http_set_progress_name(Http *h, const char *name);
/* Draws one progress line "\rLABEL [####....] 42.0%  NAME" on stderr. */
void http_progress_draw(const char *label, const char *name, int permille);
/* Sends "Authorization: Bearer <token>" with every request (NULL: none). */
int http_set_token(Http *h, const char *token);
/* Caps every transfer at bytes_per_second (0: no cap); only tests slow themselves down. */
void http_set_throttle(Http *h, uint64_t bytes_per_second);
/* Why the last exchange got no answer, or why a fetched file was refused. */
const char *http_strerror(const Http *h);
/* URL-encodes s for a query string; free() the result. NULL when out of memory. */
char *http_escape(Http *h, const char *s);

/* *ret_json is the answer's JSON, or NULL when its body is empty or (for an error status) not
 * JSON. A 2xx answer whose body is not JSON is -EBADMSG. */
int http_get_json(Http *h, const char *url, long *ret_status, json_t **ret_json);
int http_delete(Http *h, const char *url, long *ret_status, json_t **ret_json);
/* Streams form->path from disk as multipart/form-data; the file is never loaded in memory. */
int http_post_task(Http *h, const char *url, const HttpTaskForm *form, long *ret_status,
                   json_t **ret_json);

/* GETs url into fd, an O_APPEND file already holding offset bytes, asking for "Range: bytes=
 * offset-" when offset > 0. On 206 the bytes are appended (the Content-Range must start at
 * offset); on 200 (the Range ignored) fd is truncated first. Any other status leaves fd alone and
 * its JSON body goes to *ret_json. A transport failure may leave fd longer: resume from there. */
int http_download(Http *h, const char *url, int fd, uint64_t offset, long *ret_status,
                  json_t **ret_json);

/* GETs url to path through path.partial: an existing partial file is resumed with a Range
 * request (restarted when the server cannot satisfy it), then its size and SHA-256 are checked
 * against size and sha256 (hex) and it is renamed to path. Returns 0 when the server answered:
 * with status 200 or 206 the file is in place; with any other status *ret_json may say why and
 * path is untouched. -EBADMSG: the file did not match and the partial was removed. Other -errno:
 * no answer or a local error; a non-empty partial is kept for the next try. */
int http_fetch_file(Http *h, const char *url, const char *path, uint64_t size, const char *sha256,
                    long *ret_status, json_t **ret_json);

#endif
