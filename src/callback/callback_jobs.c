/* callback_jobs.c - the table of callbacks owed, hashed by task id.
 *
 * A job lives here from the moment its callback is known to be owed until it is delivered or
 * given up; the callback.json of the job (or batch) folder is what survives a restart. Only
 * callback.c and callback_batch.c call in here; nothing here does I/O. */
#include <stdlib.h>
#include <string.h>

#include "callback.h"

static CallbackJob **bucket_of(Callback *cb, const char *id)
{
    /* Ids are random UUIDs: their first two hex digits spread them evenly. */
    unsigned h = (unsigned)strtoul((char[]){id[0], id[1], '\0'}, NULL, 16);

    return &cb->buckets[h % CALLBACK_BUCKETS];
}

CallbackJob *jobs_find(Callback *cb, const char *id)
{
    for (CallbackJob *j = *bucket_of(cb, id); j; j = j->next)
        if (!strcmp(j->id, id))
            return j;
    return NULL;
}

void jobs_free_one(CallbackJob *j)
{
    if (!j)
        return;
    free(j->url);
    free(j->method);
    json_decref(j->record);
    free(j);
}

void jobs_add(Callback *cb, CallbackJob *j)
{
    CallbackJob **b = bucket_of(cb, j->id);

    j->next = *b;
    *b = j;
    cb->n_jobs++;
}

void jobs_drop(Callback *cb, CallbackJob *j)
{
    for (CallbackJob **pp = bucket_of(cb, j->id); *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            cb->n_jobs--;
            jobs_free_one(j);
            return;
        }
}

CallbackJob *jobs_next(Callback *cb, const CallbackJob *j)
{
    size_t b = 0;

    if (j) {
        if (j->next)
            return j->next;
        b = (size_t)(bucket_of(cb, j->id) - cb->buckets) + 1;
    }
    for (; b < CALLBACK_BUCKETS; b++)
        if (cb->buckets[b])
            return cb->buckets[b];
    return NULL;
}
