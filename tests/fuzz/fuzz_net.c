/* fuzz_net.c - libFuzzer target for CIDR networks (src/common/net.c) and the callback guard's
 * address check (src/callback/callback_guard.c).
 *
 * [callback] allow_networks is parsed by net_list_parse (at config load and in guard_init),
 * and every address a callback connects to, after DNS and redirects, is judged by
 * guard_address_allowed. The input is a fuzzed address, a network and an allow list (see
 * LLVMFuzzerTestOneInput). Checked:
 *   - a parsed Net has family AF_INET or AF_INET6, bits within 0..32 or 0..128, no bit set
 *     past the prefix, contains its own address and nothing of the other family; net_contains
 *     agrees with a bitwise prefix compare written here; printing the Net back and parsing it
 *     again gives the same Net;
 *   - net_list_parse splits at spaces, tabs and commas exactly as strtok would and gives each
 *     entry net_parse's answer; a refusal names the first bad entry in bad (cut to badlen);
 *   - guard_init accepts exactly the allow lists net_list_parse accepts, and then:
 *     - ::ffff:a.b.c.d and 64:ff9b::a.b.c.d get the answer a.b.c.d gets;
 *     - every address of 127.0.0.0/8, 10.0.0.0/8, 169.254.0.0/16 and ::1 is refused unless
 *       the allow list contains it, and allowed when it does; whatever the allow list contains
 *       is allowed;
 *     - a refusal says why in a NUL-terminated string that fits whylen; a socket that is not
 *       IP is refused.
 * A broken promise calls abort() so that libFuzzer reports the input. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "callback.h"
#include "taskmill/conf.h"
#include "taskmill/net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int max_bits(int family)
{
    return family == AF_INET ? 32 : family == AF_INET6 ? 128 : -1;
}

static bool bit(const unsigned char *a, int i)
{
    return a[i / 8] & (0x80 >> (i % 8));
}

/* Membership by the definition: the family and the first bits bits agree. */
static bool ref_contains(const Net *n, int family, const unsigned char *a)
{
    if (family != n->family)
        return false;
    for (int i = 0; i < n->bits; i++)
        if (bit(a, i) != bit(n->addr, i))
            return false;
    return true;
}

static bool ref_list_contains(const Net *v, size_t n, int family, const unsigned char *a)
{
    for (size_t i = 0; i < n; i++)
        if (ref_contains(&v[i], family, a))
            return true;
    return false;
}

static bool same_net(const Net *a, const Net *b)
{
    int max = max_bits(a->family);

    return a->family == b->family && a->bits == b->bits && max > 0 &&
           !memcmp(a->addr, b->addr, (size_t)max / 8);
}

static void check_net(const Net *n, const unsigned char fuzzed[16])
{
    int max = max_bits(n->family), other = n->family == AF_INET ? AF_INET6 : AF_INET;
    char text[INET6_ADDRSTRLEN + 8];
    Net back;

    if (max < 0 || n->bits < 0 || n->bits > max)
        abort();
    for (int i = n->bits; i < max; i++)
        if (bit(n->addr, i))
            abort(); /* a host bit set */
    if (!net_contains(n, n->family, n->addr) || net_contains(n, other, n->addr))
        abort();
    if (net_contains(n, AF_INET, fuzzed) != ref_contains(n, AF_INET, fuzzed) ||
        net_contains(n, AF_INET6, fuzzed) != ref_contains(n, AF_INET6, fuzzed))
        abort();
    if (!inet_ntop(n->family, n->addr, text, INET6_ADDRSTRLEN))
        abort();
    snprintf(text + strlen(text), 8, "/%d", n->bits);
    if (net_parse(text, &back) != 0 || !same_net(n, &back))
        abort(); /* printed and parsed again: the same network */
}

static void check_parse(const char *s, const unsigned char fuzzed[16])
{
    Net n;
    int r = net_parse(s, &n);

    if (r != 0 && r != -EINVAL)
        abort();
    if (r != 0)
        return;
    check_net(&n, fuzzed);
    if (!strchr(s, '/') && n.bits != max_bits(n.family))
        abort(); /* a bare address is a host */
}

/* The list as strtok sees it, each entry through net_parse: the answer net_list_parse must
 * give. */
static void check_list(const char *list, size_t badlen, const unsigned char fuzzed[16])
{
    char *copy = strdup(list), *save = NULL, *t, *bad = malloc(badlen);
    Net *v = NULL, want;
    size_t n = 0, i = 0;
    int r;

    if (!copy || !bad)
        abort();
    memset(bad, 'Z', badlen);
    r = net_list_parse(list, &v, &n, bad, badlen);
    if (r != 0 && r != -EINVAL)
        abort();
    for (t = strtok_r(copy, " \t,", &save); t; t = strtok_r(NULL, " \t,", &save), i++) {
        if (net_parse(t, &want) < 0) {
            if (r != -EINVAL || !memchr(bad, '\0', badlen) || strncmp(bad, t, badlen - 1))
                abort(); /* the first bad entry, named */
            break;
        }
        if (r == 0 && (i >= n || !same_net(&v[i], &want)))
            abort();
        if (r == 0)
            check_net(&v[i], fuzzed);
    }
    if (!t && (r != 0 || i != n))
        abort(); /* every entry good: all of them in the list */
    if (r == 0)
        free(v);
    free(copy);
    free(bad);
}

/* --- the guard ----------------------------------------------------------------------------- */

static const unsigned char mapped_prefix[12] = {[10] = 0xff, [11] = 0xff};
static const unsigned char nat64_prefix[12] = {0, 0x64, 0xff, 0x9b};

typedef struct Guard {
    Conf conf;
    Net *list; /* the allow list, parsed */
    size_t n;
    size_t whylen;
} Guard;

static bool ask(Guard *g, int family, const unsigned char *a)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    const struct sockaddr *sa;
    char *why = malloc(g->whylen);
    bool ok;

    if (!why)
        abort();
    memset(why, 'Z', g->whylen);
    if (family == AF_INET) {
        memcpy(&sin.sin_addr, a, 4);
        sa = (const struct sockaddr *)&sin;
    } else {
        memcpy(sin6.sin6_addr.s6_addr, a, 16);
        sa = (const struct sockaddr *)&sin6;
    }
    ok = guard_address_allowed(&g->conf, sa, why, g->whylen);
    if (!ok && (!memchr(why, '\0', g->whylen) || (g->whylen > 1 && !why[0])))
        abort(); /* a refusal says why, within whylen */
    free(why);
    /* Whatever the allow list holds may be reached (an IPv6 form of an IPv4 address is that
     * IPv4 address: an IPv6 entry does not cover it). */
    if (family == AF_INET6 && (!memcmp(a, mapped_prefix, 12) || !memcmp(a, nat64_prefix, 12))) {
        family = AF_INET;
        a += 12;
    }
    if (!ok && ref_list_contains(g->list, g->n, family, a))
        abort();
    return ok;
}

/* An IPv4 address, as itself and inside the IPv6 forms that stand for it. */
static bool ask4(Guard *g, const unsigned char v4[4])
{
    unsigned char mapped[16] = {[10] = 0xff, [11] = 0xff}, nat64[16] = {0, 0x64, 0xff, 0x9b};
    bool ok = ask(g, AF_INET, v4);

    memcpy(mapped + 12, v4, 4);
    memcpy(nat64 + 12, v4, 4);
    if (ask(g, AF_INET6, mapped) != ok || ask(g, AF_INET6, nat64) != ok)
        abort(); /* ::ffff:a.b.c.d is a.b.c.d */
    return ok;
}

/* An address of a range that must be refused unless allow-listed. */
static void ask_blocked4(Guard *g, const unsigned char v4[4])
{
    if (ask4(g, v4) != ref_list_contains(g->list, g->n, AF_INET, v4))
        abort();
}

static void check_guard(const char *allow, const unsigned char a[16], size_t whylen)
{
    static const unsigned char loopback6[16] = {[15] = 1};
    Guard g = {.whylen = whylen};
    char bad[64];
    int r, r_list;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    char why[128];

    r_list = net_list_parse(allow, &g.list, &g.n, bad, sizeof(bad));
    g.conf.callback_allow = (char *)allow;
    r = guard_init(&g.conf);
    if (r != r_list)
        abort(); /* the guard takes the lists the config loader takes */
    if (r < 0)
        return;

    ask4(&g, a);
    ask_blocked4(&g, (const unsigned char[4]){127, a[1], a[2], a[3]});
    ask_blocked4(&g, (const unsigned char[4]){10, a[1], a[2], a[3]});
    ask_blocked4(&g, (const unsigned char[4]){169, 254, a[2], a[3]});
    if (a[0] == 127 || a[0] == 10 || (a[0] == 169 && a[1] == 254))
        ask_blocked4(&g, a);
    if (ask(&g, AF_INET6, loopback6) != ref_list_contains(g.list, g.n, AF_INET6, loopback6))
        abort(); /* ::1 */
    if (!memcmp(a, mapped_prefix, 12)) {
        if (ask(&g, AF_INET6, a) != ask4(&g, a + 12))
            abort();
    } else {
        (void)ask(&g, AF_INET6, a);
    }
    if (guard_address_allowed(&g.conf, (const struct sockaddr *)&sun, why, sizeof(why)))
        abort(); /* not an IP address */
    guard_free();
    free(g.list);
}

/* Input: 16 address bytes (the first 4 are also an IPv4 address), a byte for badlen and whylen
 * (1 + byte % 64 and 1 + byte), then text: the network for net_parse, a newline, and the allow
 * list (for net_list_parse and the guard). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char a[16];
    char *text, *nl, *allow;
    size_t len;

    if (size < 17)
        return 0;
    memcpy(a, data, 16);
    len = data[16];
    if (!(text = strndup((const char *)data + 17, size - 17)))
        abort();
    nl = strchr(text, '\n');
    allow = nl ? nl + 1 : text;
    if (nl)
        *nl = '\0';
    check_parse(text, a);
    check_list(allow, 1 + len % 64, a);
    check_guard(allow, a, 1 + len);
    free(text);
    return 0;
}
