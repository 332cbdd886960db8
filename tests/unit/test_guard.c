/* test_guard.c - where callbacks may go: every blocked range refused (spelled as the address
 * curl would connect to), public addresses allowed, [callback] allow_networks honoured only for
 * what it lists, and a malformed network refused when the config loads. */
#include <arpa/inet.h>
#include <string.h>

#include "../../src/callback/callback.h"
#include "check.h"

static bool allowed(const Conf *c, const char *text)
{
    struct sockaddr_storage ss = {0};
    char why[256];

    if (strchr(text, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        CHECK_MSG(inet_pton(AF_INET6, text, &a->sin6_addr) == 1, "bad test address %s", text);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        CHECK_MSG(inet_pton(AF_INET, text, &a->sin_addr) == 1, "bad test address %s", text);
    }
    return guard_address_allowed(c, (struct sockaddr *)&ss, why, sizeof(why));
}

static const char *const refused[] = {
    /* this network, loopback, RFC 1918, CGNAT, link-local and the metadata service */
    "0.0.0.0",
    "0.1.2.3",
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.0.1",
    "192.168.255.255",
    "100.64.0.1",
    "100.127.255.255",
    "169.254.0.1",
    "169.254.169.254",
    /* IETF protocol assignments, documentation, benchmarking */
    "192.0.0.1",
    "192.0.2.1",
    "198.51.100.7",
    "203.0.113.9",
    "198.18.0.1",
    "198.19.255.255",
    /* multicast, reserved, broadcast */
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    /* IPv6: unspecified, loopback, IPv4-compatible, mapped and NAT64 forms of private IPv4 */
    "::",
    "::1",
    "::10.0.0.1",
    "::127.0.0.1",
    "::8.8.8.8",
    "::ffff:10.0.0.1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::10.0.0.1",
    "64:ff9b::127.0.0.1",
    "64:ff9b:1::1",
    "64:ff9b:1:ffff::8.8.8.8",
    /* ULA, link-local, site-local, multicast, documentation, discard, 6to4 */
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "febf::1",
    "fec0::1",
    "feff::1",
    "ff02::1",
    "2001:db8::1",
    "100::1",
    "2002:a00:1::1",
};

static const char *const public_addrs[] = {
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "11.0.0.1",
    "172.15.255.255",
    "172.32.0.0",
    "192.167.255.255",
    "100.63.255.255",
    "100.128.0.0",
    "169.253.255.255",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",
    "2606:4700::1111",
    "2a00:1450:4001::200e",
    "2001:4860:4860::8888",
};

int main(void)
{
    Conf c;
    char err[512];

    CHECK(conf_load(NULL, &c, err, sizeof(err)) == 0);
    CHECK(guard_init(&c) == 0);
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        CHECK_MSG(!allowed(&c, refused[i]), "%s is allowed", refused[i]);
    for (size_t i = 0; i < sizeof(public_addrs) / sizeof(public_addrs[0]); i++)
        CHECK_MSG(allowed(&c, public_addrs[i]), "%s is refused", public_addrs[i]);
    /* allow_networks opens exactly what it lists. */
    c.callback_allow = strdup("192.168.1.0/24, fd00:1::/32 127.0.0.1");
    CHECK(guard_init(&c) == 0);
    CHECK(allowed(&c, "192.168.1.20") && allowed(&c, "::ffff:192.168.1.20"));
    CHECK(!allowed(&c, "192.168.2.20"));
    CHECK(allowed(&c, "fd00:1:2::3") && !allowed(&c, "fd00:2::3"));
    CHECK(allowed(&c, "127.0.0.1") && !allowed(&c, "127.0.0.2"));
    CHECK(allowed(&c, "8.8.8.8"));
    conf_free(&c);
    guard_free();
    return check_done("test_guard");
}
