/* rest_auth.c - who may do what: bearer tokens from a root-only token file.
 *
 * The file holds one token per line: "NAME ROLE SHA256-HEX" (ROLE is user, admin or node: a
 * conversion node, which may only fetch inputs and upload results, docs/cluster.md); only the
 * hash of a token is stored. A presented token is hashed and compared with every entry in
 * constant time. A user token sees and touches only the tasks it created (others are 404);
 * an admin token sees all. With no token file on a loopback listener the API is open. */
#define _GNU_SOURCE
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "rest.h"

typedef struct Token {
    char name[64];
    bool admin, node;
    unsigned char hash[32];
} Token;

static Token *tokens;
static size_t n_tokens;

static int hex_decode(const char *hex, unsigned char out[32])
{
    if (strlen(hex) != 64)
        return -EINVAL;
    for (int i = 0; i < 32; i++)
        if (sscanf(hex + 2 * i, "%2hhx", &out[i]) != 1)
            return -EINVAL;
    return 0;
}

static int parse_line(const char *line, Token *t, char *err, size_t errlen)
{
    char name[64], role[16], hex[80];

    if (sscanf(line, "%63s %15s %79s", name, role, hex) != 3 ||
        (strcmp(role, "user") && strcmp(role, "admin") && strcmp(role, "node")) ||
        hex_decode(hex, t->hash) < 0) {
        snprintf(err, errlen, "expected 'NAME user|admin|node SHA256-HEX'");
        return -EINVAL;
    }
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->admin = !strcmp(role, "admin");
    t->node = !strcmp(role, "node");
    return 0;
}

/* A token file must not be readable by everyone: it is the list of who may get in. */
static int check_mode(FILE *f, const char *path, char *err, size_t errlen)
{
    struct stat st;

    if (fstat(fileno(f), &st) < 0 || (st.st_mode & 0007)) {
        snprintf(err, errlen, "%s: must not be accessible to others (chmod 600 or 640)", path);
        return -EPERM;
    }
    return 0;
}

int auth_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    char line[512];
    int lineno = 0, r = 0;

    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    }
    if ((r = check_mode(f, path, err, errlen)) < 0) {
        fclose(f);
        return r;
    }
    while (r == 0 && fgets(line, sizeof(line), f)) {
        char why[128];
        lineno++;
        if (line[strspn(line, " \t")] == '#' || line[strspn(line, " \t\r\n")] == '\0')
            continue;
        tokens = realloc(tokens, (n_tokens + 1) * sizeof(*tokens));
        if ((r = parse_line(line, &tokens[n_tokens], why, sizeof(why))) == 0)
            n_tokens++;
        else
            snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
    }
    fclose(f);
    return r;
}

size_t auth_count(void)
{
    return n_tokens;
}

void auth_free(void)
{
    free(tokens);
    tokens = NULL;
    n_tokens = 0;
}

static void auth_hash(const char *token, unsigned char out[32])
{
    unsigned len = 32;

    EVP_Digest(token, strlen(token), out, &len, EVP_sha256(), NULL);
}

/* 0 and *ret filled, or -EACCES. Every entry is compared, so the time does not depend on
 * which one (if any) matches. */
int auth_check(const char *header, Auth *ret)
{
    unsigned char h[32];
    const Token *match = NULL;

    if (n_tokens == 0) {
        *ret = (Auth){.open = true, .admin = true};
        return 0;
    }
    if (!header || strncasecmp(header, "Bearer ", 7) || !header[7])
        return -EACCES;
    auth_hash(header + 7, h);
    for (size_t i = 0; i < n_tokens; i++)
        if (CRYPTO_memcmp(h, tokens[i].hash, sizeof(h)) == 0)
            match = &tokens[i];
    if (!match)
        return -EACCES;
    *ret = (Auth){.admin = match->admin, .node = match->node};
    snprintf(ret->name, sizeof(ret->name), "%s", match->name);
    return 0;
}

bool auth_sees(const Auth *a, const char *owner)
{
    if (a->admin)
        return true;
    return owner && !strcmp(owner, a->name);
}
