/* test_conn.c - rest's connection limits: clients told apart by IPv4 address and IPv6 /64 (so
 * one /64 cannot take every connection with 2^64 addresses), IPv4-mapped IPv6 as IPv4, the
 * limit in all, and slots given back when connections close. */
#include <arpa/inet.h>
#include <string.h>

#include "../../src/rest/rest.h"
#include "check.h"

static struct sockaddr_storage addr(const char *text)
{
    struct sockaddr_storage ss = {0};

    if (strchr(text, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        CHECK(inet_pton(AF_INET6, text, &a->sin6_addr) == 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        CHECK(inet_pton(AF_INET, text, &a->sin_addr) == 1);
    }
    return ss;
}

static ConnRefusal open_from(const char *text, void **ret)
{
    struct sockaddr_storage ss = addr(text);

    *ret = conn_opened(-1, (struct sockaddr *)&ss);
    return conn_request_begins(*ret);
}

int main(void)
{
    void *h[16];

    CHECK(conn_init(6, 2, 10, 8) == 0);
    /* Two per /64: the third address of the same /64 is refused, another /64 is not. */
    CHECK(open_from("2001:db8:1:2::1", &h[0]) == CONN_OK);
    CHECK(open_from("2001:db8:1:2::ffff:1", &h[1]) == CONN_OK);
    CHECK(open_from("2001:db8:1:2:abcd::7", &h[2]) == CONN_TOO_MANY);
    CHECK(open_from("2001:db8:1:3::1", &h[3]) == CONN_OK);
    /* IPv4 per address; ::ffff:192.0.2.1 is 192.0.2.1. */
    CHECK(open_from("192.0.2.1", &h[4]) == CONN_OK);
    CHECK(open_from("::ffff:192.0.2.1", &h[5]) == CONN_OK);
    CHECK(open_from("192.0.2.1", &h[6]) == CONN_TOO_MANY);
    CHECK(open_from("192.0.2.2", &h[7]) == CONN_OK);
    /* Six served: the total is reached; the table (8 slots) is then full. */
    CHECK(conn_request_begins(NULL) == CONN_BUSY);
    conn_closed(h[2]);
    CHECK(open_from("192.0.2.3", &h[8]) == CONN_BUSY);
    /* A served connection closes: room for one more. */
    conn_closed(h[0]);
    conn_closed(h[8]);
    CHECK(open_from("2001:db8:1:2::9", &h[9]) == CONN_OK);
    conn_free();
    return check_done("test_conn");
}
