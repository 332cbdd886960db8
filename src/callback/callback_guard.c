/* callback_guard.c - where callbacks may go, and how receivers can trust them.
 *
 * The address check runs in libcurl's open-socket callback, on the address curl is about to
 * connect to (after DNS), so a name that resolves to 127.0.0.1 or a redirect to a private host
 * cannot get through. IPv4-mapped IPv6 addresses are checked as the IPv4 they carry. The
 * signature is an HMAC-SHA256 over "<unix time>.<body>" with [callback] secret. */
#include <arpa/inet.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "callback.h"

typedef struct Net {
    int family;
    unsigned char addr[16];
    int bits;
} Net;

/* Ranges a callback may not reach unless allow-listed. */
static const char *const blocked[] = {
    "0.0.0.0/8",     "10.0.0.0/8",   "100.64.0.0/10",  "127.0.0.0/8",   "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/3",
    "::/128",        "::1/128",      "fc00::/7",       "fe80::/10",     "ff00::/8",
};

static int net_parse(const char *s, Net *n)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t len = slash ? (size_t)(slash - s) : strlen(s);

    if (len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    n->family = strchr(buf, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(n->family, buf, n->addr) != 1)
        return -1;
    n->bits = slash ? atoi(slash + 1) : (n->family == AF_INET ? 32 : 128);
    return n->bits < 0 || n->bits > (n->family == AF_INET ? 32 : 128) ? -1 : 0;
}

static bool net_contains(const Net *n, int family, const unsigned char *a)
{
    int full = n->bits / 8, rest = n->bits % 8;

    if (family != n->family || memcmp(a, n->addr, (size_t)full))
        return false;
    return rest == 0 || ((a[full] ^ n->addr[full]) & (0xff << (8 - rest))) == 0;
}

static bool in_list(const char *list, int family, const unsigned char *a)
{
    char *copy = strdup(list ? list : ""), *save = NULL;
    bool hit = false;
    Net n;

    for (char *t = strtok_r(copy, " \t,", &save); t && !hit; t = strtok_r(NULL, " \t,", &save))
        hit = net_parse(t, &n) == 0 && net_contains(&n, family, a);
    free(copy);
    return hit;
}

static bool is_blocked(int family, const unsigned char *a)
{
    Net n;

    for (size_t i = 0; i < sizeof(blocked) / sizeof(blocked[0]); i++)
        if (net_parse(blocked[i], &n) == 0 && net_contains(&n, family, a))
            return true;
    return false;
}

bool guard_address_allowed(const Conf *c, const struct sockaddr *sa, char *why, size_t whylen)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char text[INET6_ADDRSTRLEN] = "?";
    const unsigned char *a;
    int family = sa->sa_family;

    if (family == AF_INET)
        a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
    else if (family == AF_INET6)
        a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    else
        return snprintf(why, whylen, "not an IP address"), false;
    inet_ntop(family, a, text, sizeof(text));
    if (family == AF_INET6 && !memcmp(a, mapped, sizeof(mapped))) {
        family = AF_INET; /* ::ffff:127.0.0.1 is 127.0.0.1 */
        a += 12;
    }
    /* The allow list matters only for an address the blocked ranges would refuse. */
    if (!is_blocked(family, a) || in_list(c->callback_allow, family, a))
        return true;
    snprintf(why, whylen,
             "refused to connect to %s: a loopback, private or reserved address "
             "not in [callback] allow_networks",
             text);
    return false;
}

int guard_sign(const Conf *c, const char *body, char *header, size_t len)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    char msg_head[32], hex[2 * EVP_MAX_MD_SIZE + 1];
    long now = (long)time(NULL);
    size_t blen = strlen(body), hlen;
    char *msg;

    if (!c->callback_secret)
        return 0;
    hlen = (size_t)snprintf(msg_head, sizeof(msg_head), "%ld.", now);
    msg = malloc(hlen + blen);
    if (!msg)
        return -1;
    memcpy(msg, msg_head, hlen);
    memcpy(msg + hlen, body, blen);
    HMAC(EVP_sha256(), c->callback_secret, (int)strlen(c->callback_secret), (unsigned char *)msg,
         hlen + blen, mac, &maclen);
    free(msg);
    for (unsigned i = 0; i < maclen; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    snprintf(header, len, "X-Taskmill-Signature: t=%ld,v1=%s", now, hex);
    return 1;
}
