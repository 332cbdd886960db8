/* callback_guard.c - where callbacks may go, and how receivers can trust them.
 *
 * The address check runs in libcurl's open-socket callback, on the address curl is about to
 * connect to (after DNS), so a name that resolves to 127.0.0.1 or a redirect to a private host
 * cannot get through. IPv4-mapped IPv6 addresses are checked as the IPv4 they carry. The
 * signature is an HMAC-SHA256 over "<unix time>.<body>" with [callback] secret. */
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "callback.h"
#include "taskmill/net.h"

/* Ranges a callback may not reach unless allow-listed: this host, private and shared
 * networks, link-local (169.254.169.254 is the cloud metadata service), benchmarking,
 * documentation, multicast and reserved space, and the IPv6 forms that embed or stand for those
 * (IPv4-compatible ::a.b.c.d, local-use NAT64, site-local, 6to4). IPv4-mapped ::ffff:a.b.c.d and
 * well-known NAT64 64:ff9b::a.b.c.d are checked as the IPv4 address they carry. */
static const char *const blocked_text[] = {
    "0.0.0.0/8",       "10.0.0.0/8",     "100.64.0.0/10", "127.0.0.0/8",    "169.254.0.0/16",
    "172.16.0.0/12",   "192.0.0.0/24",   "192.0.2.0/24",  "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/3",   "::/96",          "::1/128",
    "64:ff9b:1::/48",  "100::/64",       "2001:db8::/32", "2002::/16",      "fc00::/7",
    "fe80::/10",       "fec0::/10",      "ff00::/8",
};
static Net blocked[sizeof(blocked_text) / sizeof(blocked_text[0])];
static Net *allowed;
static size_t n_allowed;

int guard_init(const Conf *c)
{
    char bad[64];

    for (size_t i = 0; i < sizeof(blocked_text) / sizeof(blocked_text[0]); i++)
        if (net_parse(blocked_text[i], &blocked[i]) < 0)
            return -EINVAL; /* a programmer's error in the table */
    free(allowed);
    allowed = NULL;
    return net_list_parse(c->callback_allow, &allowed, &n_allowed, bad, sizeof(bad));
}

void guard_free(void)
{
    free(allowed);
    allowed = NULL;
    n_allowed = 0;
}

static bool is_blocked(int family, const unsigned char *a)
{
    return net_list_contains(blocked, sizeof(blocked) / sizeof(blocked[0]), family, a);
}

bool guard_address_allowed(const Conf *c, const struct sockaddr *sa, char *why, size_t whylen)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
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
    if (family == AF_INET6 && (!memcmp(a, mapped, 12) || !memcmp(a, nat64, 12))) {
        family = AF_INET; /* ::ffff:127.0.0.1 and 64:ff9b::127.0.0.1 are 127.0.0.1 */
        a += 12;
    }
    (void)c;
    /* The allow list matters only for an address the blocked ranges would refuse. */
    if (!is_blocked(family, a) || net_list_contains(allowed, n_allowed, family, a))
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
