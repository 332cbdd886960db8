/* clock.h - wall-clock time as taskmill stores and shows it.
 *
 * Times are nanoseconds since the epoch (int64) in files and RFC 3339 UTC strings in the API. */
#ifndef TASKMILL_CLOCK_H
#define TASKMILL_CLOCK_H

#include <stddef.h>
#include <stdint.h>

int64_t now_ns(void);
/* "2026-12-01T15:14:20.123456Z" */
void format_time(int64_t ns, char *buf, size_t len);
/* Parses an RFC 3339 date-time ("2026-12-01T15:14:20Z", "...20.5+01:00"): 0 or -EINVAL. */
int parse_time(const char *s, int64_t *ret_ns);

#endif
