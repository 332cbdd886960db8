/* rest_multipart.h - a streaming multipart/form-data parser (RFC 7578) for uploads.
 *
 * The body is fed in pieces of any size; the parser calls back at the start of each part (its
 * name, filename and content type), with each piece of the part's content, and at its end. It
 * never holds more than one part's headers and a boundary's length of content in memory. It
 * is strict: a body that does not follow the format is an error, never a guess. */
#ifndef TASKMILL_REST_MULTIPART_H
#define TASKMILL_REST_MULTIPART_H

#include <stddef.h>

typedef struct MultipartCallbacks {
    /* A part begins. filename and content_type are NULL when the part has none. */
    int (*part_begin)(void *ud, const char *name, const char *filename, const char *content_type);
    int (*part_data)(void *ud, const char *data, size_t len);
    int (*part_end)(void *ud);
} MultipartCallbacks;

typedef struct Multipart Multipart;

/* A parser for a body with this Content-Type; -EINVAL unless it is multipart/form-data with a
 * valid boundary. */
int multipart_new(const char *content_type, const MultipartCallbacks *cb, void *ud,
                  Multipart **ret);
/* Parses the next piece. A callback's negative return stops the parser and is returned;
 * -EBADMSG when the body is malformed. After an error every later call returns it again. */
int multipart_feed(Multipart *m, const char *data, size_t len);
/* The body ended: 0 when it ended with the closing boundary, -EBADMSG otherwise. */
int multipart_finish(Multipart *m);
void multipart_free(Multipart *m);

#endif
