/* net.c - CIDR networks (see net.h). */
#include "taskmill/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int net_parse(const char *s, Net *ret)
{
    char buf[64], *end;
    const char *slash = strchr(s, '/');
    size_t len = slash ? (size_t)(slash - s) : strlen(s);
    Net n = {0};
    long bits;

    if (len == 0 || len >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, len);
    buf[len] = '\0';
    n.family = strchr(buf, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(n.family, buf, n.addr) != 1)
        return -EINVAL;
    bits = n.family == AF_INET ? 32 : 128;
    if (slash) {
        bits = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end || bits < 0 || bits > (n.family == AF_INET ? 32 : 128))
            return -EINVAL;
    }
    n.bits = (int)bits;
    for (int i = n.bits; i < (n.family == AF_INET ? 32 : 128); i++)
        if (n.addr[i / 8] & (0x80 >> (i % 8)))
            return -EINVAL; /* host bits set: "10.0.0.1/8" is a typo for something */
    *ret = n;
    return 0;
}

bool net_contains(const Net *n, int family, const unsigned char *a)
{
    int full = n->bits / 8, rest = n->bits % 8;

    if (family != n->family || memcmp(a, n->addr, (size_t)full))
        return false;
    return rest == 0 || ((a[full] ^ n->addr[full]) & (0xff << (8 - rest))) == 0;
}

int net_list_parse(const char *list, Net **ret, size_t *ret_n, char *bad, size_t badlen)
{
    char *copy = strdup(list ? list : ""), *save = NULL;
    Net *v = NULL, *grown;
    size_t n = 0;
    int r = copy ? 0 : -ENOMEM;

    for (char *t = copy ? strtok_r(copy, " \t,", &save) : NULL; t && r == 0;
         t = strtok_r(NULL, " \t,", &save)) {
        grown = realloc(v, (n + 1) * sizeof(*v));
        if (!grown) {
            r = -ENOMEM;
            break;
        }
        v = grown;
        if ((r = net_parse(t, &v[n])) < 0)
            snprintf(bad, badlen, "%s", t);
        else
            n++;
    }
    free(copy);
    if (r < 0) {
        free(v);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

bool net_list_contains(const Net *list, size_t n, int family, const unsigned char *addr)
{
    for (size_t i = 0; i < n; i++)
        if (net_contains(&list[i], family, addr))
            return true;
    return false;
}
