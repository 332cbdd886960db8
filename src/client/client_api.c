/* client_api.c - the taskmill client's HTTP exchanges on libcurl, and verified downloads.
 *
 * Library-style code for client.c and any later client command: nothing here prints except the
 * optional progress line. Every request sets a connect timeout and CURLOPT_NOSIGNAL, and keeps
 * CURLOPT_FAILONERROR off so that error statuses come back with their JSON bodies. Uploads stream
 * from the file (curl_mime_filedata) and downloads stream to it; only JSON answers, capped at
 * HTTP_BODY_MAX, are held in memory. A fetched file is published by rename only after its size
 * and SHA-256 (OpenSSL's libcrypto, which libcurl already loads) match what the server said. */
#define _GNU_SOURCE
#include "client.h"
#include "taskmill/jobdir.h"
#include "taskmill/files.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define HTTP_CONNECT_TIMEOUT 10L  /* seconds to set up a connection */
#define HTTP_JSON_TIMEOUT    120L /* seconds for a whole JSON exchange */
#define HTTP_STALL_TIME      60L  /* a transfer below 1 byte/s this long is abandoned */
#define HTTP_BODY_MAX        ((size_t)32 << 20)
#define HTTP_BAR_WIDTH       30

struct Api {
    CURL *curl;
    struct curl_slist *headers; /* Authorization, when a token is set */
    curl_off_t throttle;        /* bytes/s for transfers, 0 = unlimited (tests) */
    bool progress;              /* draw a progress line on stderr */
    const char *progress_label;
    const char *progress_name; /* the file shown after the bar, or NULL */
    uint64_t progress_base;    /* bytes a resumed download already had */
    int progress_shown;        /* the per-mille last drawn, -1 for none */
    char error[CURL_ERROR_SIZE];
};

typedef struct Buf {
    char *data;
    size_t len, cap;
} Buf;

typedef enum DownloadMode { DL_UNDECIDED, DL_FILE, DL_BODY } DownloadMode;

typedef struct Download {
    Api *h;
    int fd;
    uint64_t offset;
    int64_t range_first; /* first byte of the answer's Content-Range, -1 without one */
    DownloadMode mode;
    Buf body; /* the answer when it is not the file */
    int err;  /* -errno that made a callback stop the transfer */
    char why[160];
} Download;

int api_new(Api **ret)
{
    Api *h;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -EIO;
    h = calloc(1, sizeof(*h));
    if (h)
        h->curl = curl_easy_init();
    if (!h || !h->curl) {
        free(h);
        curl_global_cleanup();
        return -ENOMEM;
    }
    h->progress_shown = -1;
    *ret = h;
    return 0;
}

void api_free(Api *h)
{
    if (!h)
        return;
    curl_easy_cleanup(h->curl);
    curl_slist_free_all(h->headers);
    free(h);
    curl_global_cleanup();
}

void api_set_progress(Api *h, bool on)
{
    h->progress = on;
}

void api_set_progress_name(Api *h, const char *name)
{
    h->progress_name = name;
}

int api_set_token(Api *h, const char *token)
{
    char *line = NULL;
    struct curl_slist *l;

    curl_slist_free_all(h->headers);
    h->headers = NULL;
    if (!token)
        return 0;
    if (asprintf(&line, "Authorization: Bearer %s", token) < 0)
        return -ENOMEM;
    l = curl_slist_append(NULL, line);
    free(line);
    if (!l)
        return -ENOMEM;
    h->headers = l;
    return 0;
}

void api_set_throttle(Api *h, uint64_t bytes_per_second)
{
    h->throttle = (curl_off_t)bytes_per_second;
}

const char *api_strerror(const Api *h)
{
    return h->error[0] ? h->error : "unknown error";
}

char *api_escape(Api *h, const char *s)
{
    char *e = curl_easy_escape(h->curl, s, 0), *copy;

    if (!e)
        return NULL;
    copy = strdup(e);
    curl_free(e);
    return copy;
}

static int curl_errno(CURLcode c)
{
    switch (c) {
    case CURLE_COULDNT_RESOLVE_HOST:
        return -EHOSTUNREACH;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return -EINVAL;
    default:
        return -EIO;
    }
}

void api_progress_draw(const char *label, const char *name, int permille)
{
    char bar[HTTP_BAR_WIDTH + 1];
    int fill = permille * HTTP_BAR_WIDTH / 1000;

    for (int i = 0; i < HTTP_BAR_WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[HTTP_BAR_WIDTH] = '\0';
    fprintf(stderr, "\r%-11s [%s] %5.1f%%%s%.60s\033[K", label, bar, permille / 10.0,
            name ? "  " : "", name ? name : "");
}

static int http_xferinfo(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                         curl_off_t ulnow)
{
    Api *h = userdata;
    bool up = ultotal > 0;
    uint64_t total = (uint64_t)(up ? ultotal : dltotal), now = (uint64_t)(up ? ulnow : dlnow);
    int permille;

    if (total == 0)
        return 0;
    total += up ? 0 : h->progress_base;
    now += up ? 0 : h->progress_base;
    permille = (int)(now * 1000 / total);
    if (permille != h->progress_shown) {
        api_progress_draw(h->progress_label, h->progress_name, permille);
        h->progress_shown = permille;
    }
    return 0;
}

static void progress_start(Api *h, const char *label, uint64_t base)
{
    if (!h->progress)
        return;
    h->progress_label = label;
    h->progress_base = base;
    h->progress_shown = -1;
    curl_easy_setopt(h->curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h->curl, CURLOPT_XFERINFOFUNCTION, http_xferinfo);
    curl_easy_setopt(h->curl, CURLOPT_XFERINFODATA, h);
}

static void progress_end(Api *h)
{
    if (h->progress_shown >= 0)
        fputs("\r\033[K", stderr);
    h->progress_shown = -1;
}

/* Every request starts from a clean handle; curl_easy_reset keeps the open connections. */
static void http_prepare(Api *h, const char *url)
{
    CURL *c = h->curl;

    curl_easy_reset(c);
    h->error[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 0L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, HTTP_CONNECT_TIMEOUT);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, HTTP_STALL_TIME);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->error);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "taskmill/" TASKMILL_VERSION);
    if (h->headers)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h->headers);
    if (h->throttle > 0) { /* downloads are slowed in dl_write: curl lets small ones through */
        curl_easy_setopt(c, CURLOPT_MAX_SEND_SPEED_LARGE, h->throttle);
        curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 4096L);
    }
}

static int http_perform(Api *h, long *ret_status)
{
    CURLcode c = curl_easy_perform(h->curl);
    long status = 0;

    progress_end(h);
    if (c != CURLE_OK) {
        if (!h->error[0])
            snprintf(h->error, sizeof(h->error), "%s", curl_easy_strerror(c));
        return curl_errno(c);
    }
    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
    *ret_status = status;
    return 0;
}

static size_t buf_write(char *p, size_t size, size_t n, void *userdata)
{
    Buf *b = userdata;
    size_t len = size * n;

    if (len >= HTTP_BODY_MAX - b->len)
        return 0; /* curl stops with CURLE_WRITE_ERROR */
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *d;

        while (cap < b->len + len + 1)
            cap *= 2;
        d = realloc(b->data, cap);
        if (!d)
            return 0;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, len);
    b->len += len;
    b->data[b->len] = '\0';
    return len;
}

static int reply_json(Api *h, long status, const Buf *b, json_t **ret_json)
{
    json_error_t e;
    json_t *j = b->len ? json_loadb(b->data, b->len, 0, &e) : NULL;

    if (!j && b->len && status >= 200 && status < 300) {
        snprintf(h->error, sizeof(h->error), "the server's answer is not JSON: %s", e.text);
        return -EBADMSG;
    }
    *ret_json = j;
    return 0;
}

/* Performs the prepared request, collecting the answer's body as JSON. */
static int http_exchange(Api *h, long *ret_status, json_t **ret_json)
{
    Buf b = {0};
    long status = 0;
    json_t *j = NULL;
    int r;

    curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, &b);
    r = http_perform(h, &status);
    if (r == 0)
        r = reply_json(h, status, &b, &j);
    free(b.data);
    if (r < 0)
        return r;
    *ret_status = status;
    *ret_json = j;
    return 0;
}

int api_get_json(Api *h, const char *url, long *ret_status, json_t **ret_json)
{
    http_prepare(h, url);
    curl_easy_setopt(h->curl, CURLOPT_TIMEOUT, HTTP_JSON_TIMEOUT);
    return http_exchange(h, ret_status, ret_json);
}

int api_delete(Api *h, const char *url, long *ret_status, json_t **ret_json)
{
    http_prepare(h, url);
    curl_easy_setopt(h->curl, CURLOPT_CUSTOMREQUEST, "DELETE");
    curl_easy_setopt(h->curl, CURLOPT_TIMEOUT, HTTP_JSON_TIMEOUT);
    return http_exchange(h, ret_status, ret_json);
}

int api_post_json(Api *h, const char *url, const char *body, long *ret_status, json_t **ret_json)
{
    struct curl_slist *l = NULL, *t;
    int r;

    for (struct curl_slist *i = h->headers; i; i = i->next)
        if (!(t = curl_slist_append(l, i->data))) {
            curl_slist_free_all(l);
            return -ENOMEM;
        } else {
            l = t;
        }
    if (!(t = curl_slist_append(l, "Content-Type: application/json"))) {
        curl_slist_free_all(l);
        return -ENOMEM;
    }
    l = t;
    http_prepare(h, url);
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, l);
    curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, body ? body : "");
    curl_easy_setopt(h->curl, CURLOPT_TIMEOUT, HTTP_JSON_TIMEOUT);
    r = http_exchange(h, ret_status, ret_json);
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, h->headers);
    curl_slist_free_all(l);
    return r;
}

static int mime_field(curl_mime *m, const char *name, const char *value)
{
    curl_mimepart *p;

    if (!value)
        return 0;
    p = curl_mime_addpart(m);
    if (!p || curl_mime_name(p, name) != CURLE_OK ||
        curl_mime_data(p, value, CURL_ZERO_TERMINATED) != CURLE_OK)
        return -ENOMEM;
    return 0;
}

static int mime_file(Api *h, curl_mime *m, const ApiTaskForm *f)
{
    curl_mimepart *p = curl_mime_addpart(m);

    if (!p || curl_mime_name(p, "file_data") != CURLE_OK)
        return -ENOMEM;
    if (curl_mime_filedata(p, f->path) != CURLE_OK) {
        snprintf(h->error, sizeof(h->error), "cannot read '%s'", f->path);
        return -EIO;
    }
    if (curl_mime_filename(p, f->file_name) != CURLE_OK ||
        curl_mime_type(p, "application/octet-stream") != CURLE_OK)
        return -ENOMEM;
    return 0;
}

/* The metadata fields go first, so the server knows the task before the big part arrives. */
static int mime_build(Api *h, const ApiTaskForm *f, curl_mime **ret)
{
    char prio[16];
    const char *fields[][2] = {
        {"idempotency_key", f->idempotency_key}, /* first: the server checks it early */
        {"task_type", f->task_type},
        {"file_name", f->file_name},
        {"file_path", f->file_path},
        {"priority", f->priority >= 0 ? prio : NULL},
        {"callback_url", f->callback_url},
        {"params", f->params},
        {"batch", f->batch},
        {"context", f->context},
        {"run_at", f->run_at},
        {"delay_seconds", f->delay_seconds},
    };
    curl_mime *m = curl_mime_init(h->curl);
    int r = m ? 0 : -ENOMEM;

    snprintf(prio, sizeof(prio), "%d", f->priority);
    for (size_t i = 0; i < ARRAY_SIZE(fields) && r == 0; i++)
        r = mime_field(m, fields[i][0], fields[i][1]);
    if (r == 0)
        r = mime_file(h, m, f);
    if (r < 0) {
        if (!h->error[0])
            snprintf(h->error, sizeof(h->error), "cannot build the upload: %s", strerror(-r));
        curl_mime_free(m);
        return r;
    }
    *ret = m;
    return 0;
}

/* The client's headers plus Idempotency-Key and Expect: 100-continue (so the server can
 * answer before the body). */
static int post_headers(Api *h, const char *key, struct curl_slist **ret)
{
    char line[300];
    struct curl_slist *l = NULL, *t;

    for (struct curl_slist *i = h->headers; i; i = i->next)
        if (!(t = curl_slist_append(l, i->data)))
            goto fail;
        else
            l = t;
    snprintf(line, sizeof(line), "Idempotency-Key: %s", key);
    if (!(t = curl_slist_append(l, line)))
        goto fail;
    l = t;
    if (!(t = curl_slist_append(l, "Expect: 100-continue")))
        goto fail;
    *ret = t;
    return 0;
fail:
    curl_slist_free_all(l);
    return -ENOMEM;
}

int api_post_task(Api *h, const char *url, const ApiTaskForm *form, long *ret_status,
                  json_t **ret_json)
{
    struct curl_slist *extra = NULL;
    curl_mime *m;
    int r;

    http_prepare(h, url);
    r = mime_build(h, form, &m);
    if (r < 0)
        return r;
    /* The key as a header too: a repeated POST is answered before its file is sent again. */
    if (form->idempotency_key && (r = post_headers(h, form->idempotency_key, &extra)) < 0) {
        curl_mime_free(m);
        return r;
    }
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, extra ? extra : h->headers);
    curl_easy_setopt(h->curl, CURLOPT_MIMEPOST, m);
    progress_start(h, "uploading", 0);
    r = http_exchange(h, ret_status, ret_json);
    curl_easy_setopt(h->curl, CURLOPT_MIMEPOST, NULL);
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, h->headers);
    curl_slist_free_all(extra);
    curl_mime_free(m);
    return r;
}

int api_put_file(Api *h, const char *url, const char *path, const char *sha256, long *ret_status,
                 json_t **ret_json)
{
    struct curl_slist *l = NULL, *t;
    char line[128];
    struct stat st;
    FILE *f = fopen(path, "rbe");
    int r = 0;

    if (!f || fstat(fileno(f), &st) < 0) {
        r = -errno;
        snprintf(h->error, sizeof(h->error), "cannot open %s: %s", path, strerror(errno));
        if (f)
            fclose(f);
        return r;
    }
    for (struct curl_slist *i = h->headers; i && r == 0; i = i->next)
        if ((t = curl_slist_append(l, i->data)))
            l = t;
        else
            r = -ENOMEM;
    snprintf(line, sizeof(line), "X-Taskmill-Sha256: %s", sha256);
    if (r == 0 && (t = curl_slist_append(l, line)))
        l = t;
    else
        r = -ENOMEM;
    if (r == 0) {
        http_prepare(h, url);
        curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, l);
        curl_easy_setopt(h->curl, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h->curl, CURLOPT_READDATA, f);
        curl_easy_setopt(h->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size);
        r = http_exchange(h, ret_status, ret_json);
        curl_easy_setopt(h->curl, CURLOPT_UPLOAD, 0L);
        curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, h->headers);
    }
    curl_slist_free_all(l);
    fclose(f);
    return r;
}

/* Header lines arrive unterminated; the status line of each answer resets what we saw. */
static size_t dl_header(char *p, size_t size, size_t n, void *userdata)
{
    Download *d = userdata;
    size_t len = size * n;
    char line[256];
    unsigned long long first;

    snprintf(line, sizeof(line), "%.*s", (int)(len < sizeof(line) ? len : sizeof(line) - 1), p);
    if (!strncmp(line, "HTTP/", 5))
        d->range_first = -1;
    else if (!strncasecmp(line, "Content-Range:", 14) &&
             sscanf(line + 14, " bytes %llu-", &first) == 1)
        d->range_first = (int64_t)first;
    return len;
}

/* Called before the first byte of the body: is it the file, and from where? */
static int dl_decide(Download *d)
{
    long status = 0;

    curl_easy_getinfo(d->h->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status == 206) {
        if (d->range_first != (int64_t)d->offset) {
            snprintf(d->why, sizeof(d->why), "asked for bytes from %llu, got a range from %lld",
                     (unsigned long long)d->offset, (long long)d->range_first);
            return -EPROTO;
        }
        d->mode = DL_FILE;
    } else if (status == 200) {
        if (d->offset > 0 && (ftruncate(d->fd, 0) < 0 || lseek(d->fd, 0, SEEK_SET) < 0))
            return -errno;
        d->offset = 0;
        d->h->progress_base = 0;
        d->mode = DL_FILE;
    } else {
        d->mode = DL_BODY;
    }
    return 0;
}

static size_t dl_write(char *p, size_t size, size_t n, void *userdata)
{
    Download *d = userdata;
    size_t len = size * n;

    if (d->mode == DL_UNDECIDED && (d->err = dl_decide(d)) < 0)
        return 0;
    if (d->mode == DL_BODY)
        return buf_write(p, size, n, &d->body);
    if (d->h->throttle > 0)
        usleep((useconds_t)((uint64_t)len * 1000000 / (uint64_t)d->h->throttle));
    d->err = fd_write_all(d->fd, p, len);
    if (d->err < 0)
        snprintf(d->why, sizeof(d->why), "cannot write the download: %s", strerror(-d->err));
    return d->err < 0 ? 0 : len;
}

static void dl_setup(Download *d, const char *url, char *range, size_t rangelen)
{
    CURL *c = d->h->curl;

    http_prepare(d->h, url);
    if (d->offset > 0) {
        snprintf(range, rangelen, "%llu-", (unsigned long long)d->offset);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    }
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, dl_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, d);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, dl_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, d);
    progress_start(d->h, d->offset > 0 ? "resuming" : "downloading", d->offset);
}

int api_download(Api *h, const char *url, int fd, uint64_t offset, long *ret_status,
                 json_t **ret_json)
{
    Download d = {.h = h, .fd = fd, .offset = offset, .range_first = -1};
    char range[32];
    long status = 0;
    json_t *j = NULL;
    int r;

    dl_setup(&d, url, range, sizeof(range));
    r = http_perform(h, &status);
    if (d.err < 0) {
        snprintf(h->error, sizeof(h->error), "%s", d.why[0] ? d.why : strerror(-d.err));
        r = d.err;
    }
    if (r == 0 && d.mode == DL_UNDECIDED) /* an empty body */
        r = dl_decide(&d);
    if (r == 0 && d.mode == DL_BODY)
        r = reply_json(h, status, &d.body, &j);
    free(d.body.data);
    if (r < 0)
        return r;
    *ret_status = status;
    *ret_json = j;
    return 0;
}

/* Opens (creating) the partial file for appending; a partial longer than the result cannot be
 * a prefix of it and starts over. A symbolic link planted at the partial's name is refused: the
 * sync client may run as root in folders that others can write. */
static int partial_open(Api *h, const char *partial, uint64_t size, int *ret_fd, uint64_t *ret_have)
{
    int fd = open(partial, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);
    struct stat st;

    if (fd < 0 || fstat(fd, &st) < 0 || ((uint64_t)st.st_size > size && ftruncate(fd, 0) < 0)) {
        int r = -errno;

        snprintf(h->error, sizeof(h->error), "%s: %s", partial, strerror(errno));
        if (fd >= 0)
            close(fd);
        return r;
    }
    *ret_fd = fd;
    *ret_have = (uint64_t)st.st_size > size ? 0 : (uint64_t)st.st_size;
    return 0;
}

/* One download; a 416 means the partial is not a prefix we can resume, so start again once. */
static int fetch_transfer(Api *h, const char *url, int fd, uint64_t have, long *ret_status,
                          json_t **ret_json)
{
    int r = api_download(h, url, fd, have, ret_status, ret_json);

    if (r < 0 || *ret_status != 416 || have == 0)
        return r;
    json_decref(*ret_json);
    *ret_json = NULL;
    if (ftruncate(fd, 0) < 0) {
        snprintf(h->error, sizeof(h->error), "cannot truncate: %s", strerror(errno));
        return -errno;
    }
    return api_download(h, url, fd, 0, ret_status, ret_json);
}

/* Closes the partial; an empty one left by a failure is not worth keeping. */
static int partial_close(Api *h, int fd, const char *partial, bool complete)
{
    struct stat st;
    int r = 0;

    if (complete && fsync(fd) < 0) {
        r = -errno;
        snprintf(h->error, sizeof(h->error), "%s: %s", partial, strerror(errno));
    }
    if (!complete && fstat(fd, &st) == 0 && st.st_size == 0)
        unlink(partial);
    close(fd);
    return r;
}

static int partial_check(Api *h, const char *partial, uint64_t size, const char *sha256)
{
    char hex[SHA256_HEX_LEN + 1];
    int fd = open(partial, O_RDONLY | O_CLOEXEC), r;
    struct stat st;

    if (fd < 0 || fstat(fd, &st) < 0) {
        r = -errno;
        snprintf(h->error, sizeof(h->error), "%s: %s", partial, strerror(errno));
        if (fd >= 0)
            close(fd);
        return r;
    }
    if ((uint64_t)st.st_size != size) {
        snprintf(h->error, sizeof(h->error), "%s has %llu bytes, the result has %llu", partial,
                 (unsigned long long)st.st_size, (unsigned long long)size);
        r = -EBADMSG;
    } else if ((r = file_sha256(fd, hex)) < 0) {
        snprintf(h->error, sizeof(h->error), "%s: cannot hash: %s", partial, strerror(-r));
    } else if (strcasecmp(hex, sha256)) {
        snprintf(h->error, sizeof(h->error), "sha256 mismatch: %s is %s, the server says %.64s",
                 partial, hex, sha256);
        r = -EBADMSG;
    }
    close(fd);
    if (r == -EBADMSG)
        unlink(partial);
    return r;
}

static int fetch_partial(Api *h, const char *url, const char *partial, uint64_t size,
                         long *ret_status, json_t **ret_json)
{
    uint64_t have = 0;
    int fd = -1, rc, r = partial_open(h, partial, size, &fd, &have);
    bool complete;

    if (r < 0)
        return r;
    *ret_status = 200; /* nothing left to fetch counts as a whole answer */
    *ret_json = NULL;
    if (have < size)
        r = fetch_transfer(h, url, fd, have, ret_status, ret_json);
    complete = r == 0 && (*ret_status == 200 || *ret_status == 206);
    rc = partial_close(h, fd, partial, complete);
    return r < 0 ? r : rc;
}

int api_fetch_file(Api *h, const char *url, const char *path, uint64_t size, const char *sha256,
                   long *ret_status, json_t **ret_json)
{
    char *partial = NULL;
    long status = 0;
    json_t *j = NULL;
    int r;

    if (asprintf(&partial, "%s.partial", path) < 0)
        return -ENOMEM;
    r = fetch_partial(h, url, partial, size, &status, &j);
    if (r == 0 && (status == 200 || status == 206))
        r = partial_check(h, partial, size, sha256);
    if (r == 0 && (status == 200 || status == 206) && rename(partial, path) < 0) {
        r = -errno;
        snprintf(h->error, sizeof(h->error), "cannot rename %s: %s", partial, strerror(errno));
    }
    free(partial);
    if (r < 0) {
        json_decref(j);
        return r;
    }
    *ret_status = status;
    *ret_json = j;
    return 0;
}
