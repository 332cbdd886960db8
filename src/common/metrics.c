/* metrics.c - histograms and the Prometheus text format for GET /metrics (metrics.h). */
#include "taskmill/metrics.h"

#include <math.h>
#include <string.h>

const double metrics_request_le[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};
const double metrics_conversion_le[] = {1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600};
const double metrics_wait_le[] = {0.01, 0.1, 1, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400};
const size_t metrics_request_n = sizeof(metrics_request_le) / sizeof(metrics_request_le[0]);
const size_t metrics_conversion_n =
    sizeof(metrics_conversion_le) / sizeof(metrics_conversion_le[0]);
const size_t metrics_wait_n = sizeof(metrics_wait_le) / sizeof(metrics_wait_le[0]);

void hist_init(Histogram *h, const double *le, size_t n)
{
    *h = (Histogram){.le = le, .n = n < HIST_MAX_BUCKETS ? n : HIST_MAX_BUCKETS};
}

void hist_observe(Histogram *h, double v)
{
    size_t i = 0;

    if (!isfinite(v) || v < 0)
        v = 0;
    while (i < h->n && v > h->le[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

json_t *hist_json(const Histogram *h)
{
    json_t *le = json_array(), *counts = json_array();

    for (size_t i = 0; i < h->n; i++)
        json_array_append_new(le, json_real(h->le[i]));
    for (size_t i = 0; i <= h->n; i++)
        json_array_append_new(counts, json_integer((json_int_t)h->counts[i]));
    return json_pack("{s:o, s:o, s:f, s:I}", "le", le, "counts", counts, "sum", h->sum, "count",
                     (json_int_t)h->count);
}

void prom_head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void prom_sample(FILE *f, const char *name, const char *labels, double value)
{
    if (labels && *labels)
        fprintf(f, "%s{%s} %.17g\n", name, labels, value);
    else
        fprintf(f, "%s %.17g\n", name, value);
}

const char *prom_escape(const char *v, char *buf, size_t len)
{
    size_t o = 0;

    for (; *v && o + 3 < len; v++) {
        if (*v == '\\' || *v == '"')
            buf[o++] = '\\', buf[o++] = *v;
        else if (*v == '\n')
            buf[o++] = '\\', buf[o++] = 'n';
        else
            buf[o++] = *v;
    }
    buf[o] = '\0';
    return buf;
}

void prom_histogram(FILE *f, const char *name, json_t *hist)
{
    json_t *le = json_object_get(hist, "le"), *counts = json_object_get(hist, "counts");
    char series[160], labels[64];
    uint64_t cumulative = 0;
    size_t i;

    snprintf(series, sizeof(series), "%s_bucket", name);
    for (i = 0; i < json_array_size(le); i++) {
        cumulative += (uint64_t)json_integer_value(json_array_get(counts, i));
        snprintf(labels, sizeof(labels), "le=\"%g\"", json_number_value(json_array_get(le, i)));
        prom_sample(f, series, labels, (double)cumulative);
    }
    cumulative += (uint64_t)json_integer_value(json_array_get(counts, i));
    prom_sample(f, series, "le=\"+Inf\"", (double)cumulative);
    snprintf(series, sizeof(series), "%s_sum", name);
    prom_sample(f, series, "", json_number_value(json_object_get(hist, "sum")));
    snprintf(series, sizeof(series), "%s_count", name);
    prom_sample(f, series, "", (double)json_integer_value(json_object_get(hist, "count")));
}
