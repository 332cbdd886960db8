/* rest_metrics.c - GET /metrics, in the Prometheus text format (0.0.4), for a token of role
 * admin (or the open API).
 *
 * rest counts what passes through it (answers by status, request durations, the bytes of
 * uploads and downloads, submitted tasks by type) under one mutex, since libmicrohttpd serves
 * from several threads; the queue counts finished tasks, conversion and waiting times and
 * callback deliveries (metrics.get); the gauges come from its status.get. Counters start at zero
 * with the daemon that keeps them, which Prometheus reads as a counter reset. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rest.h"
#include "taskmill/ipc.h"
#include "taskmill/metrics.h"

#define CODES 600

static struct {
    pthread_mutex_t lock;
    uint64_t by_code[CODES];
    uint64_t upload_bytes, download_bytes;
    json_t *submitted; /* {type: N} */
    Histogram latency;
} m = {.lock = PTHREAD_MUTEX_INITIALIZER};

void metrics_init(void)
{
    hist_init(&m.latency, metrics_request_le, metrics_request_n);
    m.submitted = json_object();
}

void metrics_free(void)
{
    json_decref(m.submitted);
    m.submitted = NULL;
}

void metrics_answer(unsigned status)
{
    pthread_mutex_lock(&m.lock);
    m.by_code[status < CODES ? status : 0]++;
    pthread_mutex_unlock(&m.lock);
}

void metrics_request(double seconds)
{
    pthread_mutex_lock(&m.lock);
    hist_observe(&m.latency, seconds);
    pthread_mutex_unlock(&m.lock);
}

void metrics_bytes(uint64_t up, uint64_t down)
{
    pthread_mutex_lock(&m.lock);
    m.upload_bytes += up;
    m.download_bytes += down;
    pthread_mutex_unlock(&m.lock);
}

void metrics_submitted(const char *type)
{
    pthread_mutex_lock(&m.lock);
    if (m.submitted)
        json_object_set_new(
            m.submitted, type,
            json_integer(json_integer_value(json_object_get(m.submitted, type)) + 1));
    pthread_mutex_unlock(&m.lock);
}

/* --- the exposition ------------------------------------------------------------------------ */

static void rest_part(FILE *f)
{
    char labels[300], esc[256];
    const char *type;
    json_t *n;

    pthread_mutex_lock(&m.lock);
    prom_head(f, "taskmill_tasks_submitted_total", "counter",
              "Tasks accepted by the REST API since it started, by task type.");
    json_object_foreach(m.submitted, type, n)
    {
        snprintf(labels, sizeof(labels), "type=\"%s\"", prom_escape(type, esc, sizeof(esc)));
        prom_sample(f, "taskmill_tasks_submitted_total", labels, (double)json_integer_value(n));
    }
    prom_head(f, "taskmill_http_requests_total", "counter",
              "HTTP answers of the REST API since it started, by status code.");
    for (unsigned c = 1; c < CODES; c++)
        if (m.by_code[c]) {
            snprintf(labels, sizeof(labels), "code=\"%u\"", c);
            prom_sample(f, "taskmill_http_requests_total", labels, (double)m.by_code[c]);
        }
    prom_head(f, "taskmill_upload_bytes_total", "counter",
              "Bytes of request bodies stored: uploads and conversion nodes' results.");
    prom_sample(f, "taskmill_upload_bytes_total", "", (double)m.upload_bytes);
    prom_head(f, "taskmill_download_bytes_total", "counter",
              "Bytes of files served: results, and inputs to conversion nodes.");
    prom_sample(f, "taskmill_download_bytes_total", "", (double)m.download_bytes);
    json_t *lat = hist_json(&m.latency);
    pthread_mutex_unlock(&m.lock);
    prom_head(f, "taskmill_http_request_duration_seconds", "histogram",
              "Time from a request's headers to the end of its answer.");
    prom_histogram(f, "taskmill_http_request_duration_seconds", lat);
    json_decref(lat);
}

static void gauges(FILE *f, json_t *st)
{
    static const struct {
        const char *state, *field;
    } states[] = {{"pending", "waiting"},
                  {"scheduled", "scheduled"},
                  {"in_progress", "working"},
                  {"done", "done"},
                  {"failed", "failed"}};
    json_int_t max = json_integer_value(json_object_get(st, "max_workers"));
    json_int_t free_ = json_integer_value(json_object_get(st, "free_workers"));
    char labels[64];

    prom_head(f, "taskmill_tasks", "gauge", "Tasks in the queue by state.");
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        snprintf(labels, sizeof(labels), "state=\"%s\"", states[i].state);
        prom_sample(f, "taskmill_tasks", labels,
                    (double)json_integer_value(json_object_get(st, states[i].field)));
    }
    prom_head(f, "taskmill_workers", "gauge", "Worker slots of every pool and node, by state.");
    prom_sample(f, "taskmill_workers", "state=\"busy\"", (double)(max - free_));
    prom_sample(f, "taskmill_workers", "state=\"free\"", (double)free_);
    prom_head(f, "taskmill_draining", "gauge", "1 while the queue drains (no new work starts).");
    prom_sample(f, "taskmill_draining", "", json_is_true(json_object_get(st, "draining")) ? 1 : 0);
}

static void queue_part(FILE *f, json_t *qm)
{
    json_t *finished = json_object_get(qm, "finished"), *outcomes, *n;
    json_t *cb = json_object_get(qm, "callbacks");
    const char *type, *outcome;
    char labels[400], esc[256];

    prom_head(f, "taskmill_tasks_finished_total", "counter",
              "Tasks that reached done or failed since the queue started, by type and outcome.");
    json_object_foreach(finished, type, outcomes)
    {
        json_object_foreach(outcomes, outcome, n)
        {
            snprintf(labels, sizeof(labels), "type=\"%s\",outcome=\"%s\"",
                     prom_escape(type, esc, sizeof(esc)), outcome);
            prom_sample(f, "taskmill_tasks_finished_total", labels, (double)json_integer_value(n));
        }
    }
    prom_head(
        f, "taskmill_callback_deliveries_total", "counter",
        "Task callbacks settled since the queue started (batch callbacks are not): delivered, "
        "or given up after every attempt failed.");
    prom_sample(f, "taskmill_callback_deliveries_total", "result=\"delivered\"",
                (double)json_integer_value(json_object_get(cb, "delivered")));
    prom_sample(f, "taskmill_callback_deliveries_total", "result=\"gave_up\"",
                (double)json_integer_value(json_object_get(cb, "gave_up")));
    prom_head(f, "taskmill_conversion_seconds", "histogram",
              "Wall time of each finished attempt of a task (any kind).");
    prom_histogram(f, "taskmill_conversion_seconds", json_object_get(qm, "conversion"));
    prom_head(f, "taskmill_queue_wait_seconds", "histogram",
              "Time a task waited before a worker took it (from its creation or its run_at "
              "or back-off).");
    prom_histogram(f, "taskmill_queue_wait_seconds", json_object_get(qm, "wait"));
}

static json_t *queue_ask(Rest *rest, const char *type)
{
    json_t *reply = NULL;

    if (rest_queue_call(rest, type, NULL, 5000, &reply) < 0)
        return NULL;
    return queue_reply_body(reply); /* the reply itself, without its envelope */
}

enum MHD_Result metrics_get(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg)
{
    json_t *st = queue_ask(rest, "status.get"), *qm = st ? queue_ask(rest, "metrics.get") : NULL;
    struct MHD_Response *resp;
    enum MHD_Result ret;
    char *text = NULL;
    size_t len = 0;
    FILE *f;

    (void)a, (void)arg;
    if (!st || !qm) {
        json_decref(st);
        return http_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "queue_unavailable",
                          "the queue daemon does not answer");
    }
    if (!(f = open_memstream(&text, &len))) {
        json_decref(st);
        json_decref(qm);
        return MHD_NO;
    }
    rest_part(f);
    gauges(f, st);
    queue_part(f, qm);
    fclose(f);
    json_decref(st);
    json_decref(qm);
    resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    ret = http_queue(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}
