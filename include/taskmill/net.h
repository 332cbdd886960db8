/* net.h - IP networks in CIDR notation: parsing, lists, and membership.
 *
 * Used by the callback guard (which addresses a callback may reach) and by the config loader,
 * which refuses a malformed network at start instead of ignoring it. */
#ifndef TASKMILL_NET_H
#define TASKMILL_NET_H

#include <stdbool.h>
#include <stddef.h>

typedef struct Net {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int bits;
} Net;

/* "10.0.0.0/8", "fd00::/8", "192.0.2.1" (a host). -EINVAL when malformed, or when bits are
 * set beyond the prefix ("10.0.0.1/8"), which is nearly always a typo. */
int net_parse(const char *s, Net *ret);
bool net_contains(const Net *n, int family, const unsigned char *addr);

/* A list of networks separated by spaces, tabs or commas. On a malformed entry returns -EINVAL
 * and copies the entry into bad. */
int net_list_parse(const char *list, Net **ret, size_t *ret_n, char *bad, size_t badlen);
bool net_list_contains(const Net *list, size_t n, int family, const unsigned char *addr);

#endif
