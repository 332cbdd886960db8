/* client_scan.c - the sync client's walk through its folders, and the HEVC probe.
 *
 * The walk goes down with openat(O_NOFOLLOW) from each configured folder and never follows a
 * symbolic link, so it cannot leave the folder; it does not enter the state or output folders.
 * It only reads: directories, lstat, and (in the probe) the first megabyte of a file through
 * libavformat. What to do with a file is the caller's business (a ScanVisitor); a folder that
 * cannot be read is reported and the walk goes on. Called by client_sync.c; nothing here prints. */
#define _GNU_SOURCE
#include "client_sync.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <libavformat/avformat.h>
#include <libavutil/log.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCAN_MAX_DEPTH  64
#define PROBE_SIZE      "1048576" /* bytes libavformat may read to find the streams */
#define PROBE_DURATION  "2000000" /* microseconds of media it may analyse */
#define PARTIAL_SUFFIX  ".partial"
#define PATTERN_MAX_LEN 256

typedef struct Walk {
    const ScanRules *rules;
    const ScanVisitor *v;
    const char *folder;
    char path[PATH_MAX];
    int depth;
} Walk;

static int walk_dir(Walk *w, int dfd, size_t len);

bool scan_patterns_match(const char *patterns, const char *name)
{
    char pat[PATTERN_MAX_LEN];
    const char *p = patterns;
    size_t n;

    while (p && *p) {
        p += strspn(p, " \t");
        n = strcspn(p, " \t");
        if (n > 0 && n < sizeof(pat)) {
            memcpy(pat, p, n);
            pat[n] = '\0';
            if (fnmatch(pat, name, FNM_CASEFOLD) == 0)
                return true;
        }
        p += n;
    }
    return false;
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return m > 0 && n >= m && !strcmp(s + n - m, suffix);
}

/* movie.hevc.mkv with suffix ".hevc": a result of ours, never a source. */
static bool is_our_result(const char *name, const char *suffix)
{
    const char *dot = strrchr(name, '.');
    size_t stem = dot ? (size_t)(dot - name) : strlen(name), m = suffix ? strlen(suffix) : 0;

    return m > 0 && stem > m && !strncmp(name + stem - m, suffix, m);
}

static bool name_wanted(const ScanRules *r, const char *name)
{
    return scan_patterns_match(r->include, name) && !scan_patterns_match(r->exclude, name) &&
           !has_suffix(name, PARTIAL_SUFFIX) && !is_our_result(name, r->suffix);
}

static bool dir_skipped(const ScanRules *r, const char *name, const struct stat *st)
{
    for (size_t i = 0; i < r->n_skip; i++)
        if (st->st_dev == r->skip_dev[i] && st->st_ino == r->skip_ino[i])
            return true;
    return scan_patterns_match(r->exclude, name);
}

static int walk_subdir(Walk *w, int parent, const char *name, const struct stat *st, size_t len)
{
    int fd, r;

    if (dir_skipped(w->rules, name, st))
        return 0;
    if (w->depth >= SCAN_MAX_DEPTH) {
        w->v->error(w->v->userdata, w->path, ELOOP);
        return 0;
    }
    fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        w->v->error(w->v->userdata, w->path, errno);
        return 0;
    }
    w->depth++;
    r = walk_dir(w, fd, len);
    w->depth--;
    return r;
}

/* One directory entry; w->path holds its path, len long. */
static int walk_entry(Walk *w, int dfd, const char *name, size_t len)
{
    struct stat st;

    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        w->v->error(w->v->userdata, w->path, errno);
        return 0;
    }
    if (S_ISDIR(st.st_mode))
        return walk_subdir(w, dfd, name, &st, len);
    if (!S_ISREG(st.st_mode) || !name_wanted(w->rules, name))
        return 0; /* symbolic links, devices, sockets, and names we do not want */
    return w->v->file(w->v->userdata, w->folder, w->path, &st);
}

/* Reads the directory open on dfd (taken), whose path is w->path[0..len). */
static int walk_dir(Walk *w, int dfd, size_t len)
{
    DIR *d = fdopendir(dfd);
    struct dirent *de;
    int r = 0;

    if (!d) {
        w->v->error(w->v->userdata, w->path, errno);
        close(dfd);
        return 0;
    }
    while (r == 0 && (de = readdir(d))) {
        size_t n = strlen(de->d_name);

        if (de->d_name[0] == '.')
            continue; /* hidden names, "." and ".." */
        if (len + 1 + n >= sizeof(w->path)) {
            w->v->error(w->v->userdata, w->path, ENAMETOOLONG);
            continue;
        }
        snprintf(w->path + len, sizeof(w->path) - len, "/%s", de->d_name);
        r = walk_entry(w, dirfd(d), de->d_name, len + 1 + n);
        w->path[len] = '\0';
    }
    closedir(d);
    return r;
}

int scan_folder(const char *folder, const ScanRules *rules, const ScanVisitor *v)
{
    Walk w = {.rules = rules, .v = v, .folder = folder};
    size_t len = strlen(folder);
    int fd;

    if (len >= sizeof(w.path))
        return -ENAMETOOLONG;
    memcpy(w.path, folder, len + 1);
    if (len == 1) /* "/": children are "/name", not "//name" */
        w.path[--len] = '\0';
    fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    return walk_dir(&w, fd, len);
}

/* ---- probing ---- */

static const AVStream *first_video(const AVFormatContext *ic)
{
    for (unsigned i = 0; i < ic->nb_streams; i++) {
        const AVStream *st = ic->streams[i];

        if (st->codecpar->codec_type == AVMEDIA_TYPE_VIDEO &&
            !(st->disposition & AV_DISPOSITION_ATTACHED_PIC))
            return st;
    }
    return NULL;
}

static int averror_errno(int averr)
{
    return averr > -4096 ? averr : -EBADMSG; /* AVERROR(errno), or one of FFmpeg's own tags */
}

int scan_probe_hevc(const char *path, bool *ret_hevc)
{
    AVFormatContext *ic = NULL;
    AVDictionary *opts = NULL;
    const AVStream *video;
    int r;

    av_log_set_level(AV_LOG_QUIET);
    av_dict_set(&opts, "probesize", PROBE_SIZE, 0);
    av_dict_set(&opts, "analyzeduration", PROBE_DURATION, 0);
    r = avformat_open_input(&ic, path, NULL, &opts);
    av_dict_free(&opts);
    if (r < 0)
        return averror_errno(r);
    r = avformat_find_stream_info(ic, NULL);
    video = first_video(ic);
    *ret_hevc = r >= 0 && video && video->codecpar->codec_id == AV_CODEC_ID_HEVC;
    avformat_close_input(&ic);
    return r < 0 ? averror_errno(r) : 0;
}
