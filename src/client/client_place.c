/* client_place.c - where the sync client puts a result, and the last steps of putting it there.
 *
 * beside:  <dir>/<stem><suffix><ext>                    movie.mp4 -> movie.hevc.mp4
 * mirror:  <output_dir>/<dir under its folder>/<stem><suffix><ext>
 * replace: <dir>/<stem><ext>                            movie.avi -> movie.mkv, movie.mp4 -> itself
 * The result is downloaded to <dest>.partial and renamed to dest by api_fetch_file; only then,
 * and only for replace with a new extension, place_commit removes the source. These are the only
 * paths the client writes outside its state folder. Called by client_sync*.c; prints nothing. */
#define _GNU_SOURCE
#include "client_sync.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "taskmill/files.h"

int place_init(Place *p, const Conf *c)
{
    const char *mode = c->client_output ? c->client_output : "beside";

    *p = (Place){.output_dir = c->client_output_dir, .suffix = c->client_suffix};
    if (!p->suffix)
        p->suffix = "";
    if (!strcmp(mode, "mirror"))
        p->mode = PLACE_MIRROR;
    else if (!strcmp(mode, "replace"))
        p->mode = PLACE_REPLACE;
    else
        p->mode = PLACE_BESIDE;
    if (p->mode == PLACE_MIRROR && (!p->output_dir || p->output_dir[0] != '/'))
        return -EINVAL;
    if ((p->mode == PLACE_BESIDE && !*p->suffix) || strchr(p->suffix, '/'))
        return -EINVAL; /* the result would replace the source, or go elsewhere */
    return 0;
}

const char *place_result_ext(const char *source)
{
    static const char *const mp4_like[] = {".mp4", ".mov", ".m4v"};
    const char *slash = strrchr(source, '/'), *dot = strrchr(slash ? slash : source, '.');

    for (size_t i = 0; dot && i < sizeof(mp4_like) / sizeof(mp4_like[0]); i++)
        if (!strcasecmp(dot, mp4_like[i]))
            return ".mp4";
    return ".mkv";
}

/* The folder part of source below folder: "" or "/sub/dir". */
static const char *relative_dir(const char *folder, const char *source, size_t dirlen)
{
    size_t flen = strlen(folder);

    if (flen == 1 && folder[0] == '/')
        flen = 0;
    if (dirlen < flen || strncmp(source, folder, flen))
        return NULL;
    return source + flen;
}

int place_dest(const Place *p, const char *folder, const char *source, const char *ext, char **ret)
{
    const char *name = strrchr(source, '/') + 1, *dot = strrchr(name, '.'), *rel;
    int dirlen = (int)(name - 1 - source),
        stemlen = dot && dot > name ? (int)(dot - name) : (int)strlen(name);
    const char *suffix = p->mode == PLACE_REPLACE ? "" : p->suffix;
    int n;

    if (p->mode != PLACE_MIRROR) {
        n = asprintf(ret, "%.*s/%.*s%s%s", dirlen, source, stemlen, name, suffix, ext);
        return n < 0 ? -ENOMEM : 0;
    }
    rel = relative_dir(folder, source, (size_t)dirlen);
    if (!rel)
        return -EINVAL;
    n = asprintf(ret, "%s%.*s/%.*s%s%s", p->output_dir, (int)(name - 1 - rel), rel, stemlen, name,
                 suffix, ext);
    return n < 0 ? -ENOMEM : 0;
}

/* The folder part of path ("/" for "/x", "." for "x"), for mkdir_p and fsync_at. */
static char *parent_of(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (!slash)
        return strdup(".");
    return strndup(path, slash == path ? 1 : (size_t)(slash - path));
}

int place_prepare(const char *dest)
{
    char *dir = parent_of(dest);
    int r = dir ? mkdir_p(dir, 0755) : -ENOMEM;

    free(dir);
    return r;
}

static int fsync_parent(const char *path)
{
    char *dir = parent_of(path);
    int r = dir ? fsync_at(AT_FDCWD, dir) : -ENOMEM;

    free(dir);
    return r;
}

int place_commit(const Place *p, const char *source, const char *dest)
{
    int r = fsync_parent(dest);

    if (r < 0 || p->mode != PLACE_REPLACE || !strcmp(source, dest))
        return r;
    if (unlink(source) < 0 && errno != ENOENT)
        return -errno;
    return fsync_parent(source);
}
