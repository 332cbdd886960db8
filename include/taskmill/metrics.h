/* metrics.h - what GET /metrics exposes (the Prometheus text format, version 0.0.4): fixed-bucket
 * histograms, kept as JSON where they cross from the queue to rest (metrics.get), and the
 * writing of the format's lines. */
#ifndef TASKMILL_METRICS_H
#define TASKMILL_METRICS_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#define HIST_MAX_BUCKETS 16

typedef struct Histogram {
    const double *le; /* upper bounds, ascending; +Inf is implied */
    size_t n;
    uint64_t counts[HIST_MAX_BUCKETS + 1]; /* per bucket, not cumulative; [n] is above le[n-1] */
    double sum;
    uint64_t count;
} Histogram;

/* Bounds in seconds: an HTTP request, a conversion attempt, a task's wait in the queue. */
extern const double metrics_request_le[], metrics_conversion_le[], metrics_wait_le[];
extern const size_t metrics_request_n, metrics_conversion_n, metrics_wait_n;

void hist_init(Histogram *h, const double *le, size_t n);
void hist_observe(Histogram *h, double v);
/* {"le":[...], "counts":[...], "sum":S, "count":N} */
json_t *hist_json(const Histogram *h);

/* "# HELP" and "# TYPE" lines. */
void prom_head(FILE *f, const char *name, const char *type, const char *help);
/* One sample: name{labels} value; labels is "" or already formatted ('type="x",outcome="y"'). */
void prom_sample(FILE *f, const char *name, const char *labels, double value);
/* A label's value escaped as the format asks (backslash, double quote, newline), into buf. */
const char *prom_escape(const char *v, char *buf, size_t len);
/* A histogram from hist_json's form: its _bucket (cumulative, le="..."), _sum and _count. */
void prom_histogram(FILE *f, const char *name, json_t *hist);

#endif
