/* rl_url.c - Redis URL parsing (see rl_url.h): schemes, user info, hosts and
 * paths.  Helpers are in rl_url_lex.c, query parameters in rl_url_query.c,
 * display and comparison in rl_url_show.c.  Pure C11, no Python. */
#include "rl_url_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* host[:port] in [hp, hend) into *host (malloc'd, lowercased) and *portp (default_port if none). */
static int parse_hostport(const pctx *c, const char *hp, const char *hend, int default_port,
                          char **host, int *portp)
{
    frag f;
    const char *hs, *he, *port = NULL;
    if (hp < hend && *hp == '[') {
        const char *rb = rl_find_char(hp, hend, ']');
        if (!rb)
            return rl_url_fail(c, "close the IPv6 address with ']', e.g. redis://[::1]:6379/0",
                        "unterminated '[' in the host");
        hs = hp + 1;
        he = rb;
        if (rb + 1 < hend) {
            if (rb[1] != ':')
                return rl_url_fail(c, "only ':port' may follow the ']' of an IPv6 address",
                            "unexpected %s after ']'", rl_url_fragment(c, &f, rb + 1, (size_t)(hend - rb - 1)));
            port = rb + 2;
        }
    } else {
        const char *colon = rl_find_char(hp, hend, ':');
        if (colon && rl_find_char(colon + 1, hend, ':'))
            return rl_url_fail(c, "put IPv6 addresses in brackets, e.g. redis://[::1]:6379/0",
                        "host %s has more than one ':'", rl_url_fragment(c, &f, hp, (size_t)(hend - hp)));
        hs = hp;
        he = colon ? colon : hend;
        if (colon) port = colon + 1;
        const char *br = rl_find_any(hs, he, "[]");
        if (br != he)
            return rl_url_fail(c, "brackets are only allowed around a whole IPv6 address, e.g. redis://[::1]:6379/0",
                        "unexpected '%c' in the host", *br);
    }
    if (hs == he)
        return rl_url_fail(c, "give a host name, e.g. redis://localhost:6379/0", "missing host");

    *portp = default_port;
    if (port) {
        size_t pn = (size_t)(hend - port);
        if (pn == 0)
            return rl_url_fail(c, default_port == RL_URL_DEFAULT_PORT ? "give a port after ':' or drop the ':' to use 6379" : "give a port after ':' or drop the ':' to use 26379", "empty port after ':'");
        long v = 0;
        for (size_t i = 0; i < pn; i++) {
            if (!rl_is_digit((unsigned char)port[i]))
                return rl_url_fail(c, "the port must be a number between 1 and 65535",
                            "port %s is not a number", rl_url_fragment(c, &f, port, pn));
            if (v <= 65535) v = v * 10 + (port[i] - '0');
        }
        if (v < 1 || v > 65535)
            return rl_url_fail(c, "use a port between 1 and 65535", "port %s out of range 1..65535",
                        rl_url_fragment(c, &f, port, pn));
        *portp = (int)v;
    }

    if (rl_url_decode(c, hs, (size_t)(he - hs), 0, "host", 0, host) < 0) return -1;
    if ((*host)[0] == '\0')
        return rl_url_fail(c, "give a host name, e.g. redis://localhost:6379/0", "missing host");
    for (char *q = *host; *q; q++) *q = (char)rl_to_lower((unsigned char)*q);
    return 0;
}

/* The sentinels: host[:port][,host[:port]...] in [hp, hend). */
static int parse_sentinels(const pctx *c, const char *hp, const char *hend, rl_url *out)
{
    int n = 1;
    for (const char *q = hp; q < hend; q++)
        if (*q == ',') n++;
    if (n > RL_URL_MAX_SENTINELS)
        return rl_url_fail(c, "list at most 64 sentinels", "%d sentinels listed", n);
    out->sentinels = calloc((size_t)n, sizeof *out->sentinels);
    if (!out->sentinels)
        return rl_url_fail(c, NULL, "out of memory while reading the sentinel list");
    for (const char *h = hp; out->nsentinels < n;) {
        const char *pend = rl_find_any(h, hend, ",");
        rl_url_hostport *e = &out->sentinels[out->nsentinels++];
        if (pend == h)
            return rl_url_fail(c, "separate sentinels with one ',', e.g. redis+sentinel://s1:26379,s2:26379/mymaster",
                               "missing host in the sentinel list");
        if (parse_hostport(c, h, pend, RL_URL_SENTINEL_PORT, &e->host, &e->port) < 0)
            return -1;
        h = pend + 1;
    }
    return 0;
}

/* The path of a sentinel URL: /service_name[/db]. */
static int parse_service(const pctx *c, const char *p, const char *end, rl_url *out)
{
    frag f;
    const char *fix = "name the master after the sentinels, e.g. redis+sentinel://s1:26379/mymaster/0";
    if (end - p < 2)
        return rl_url_fail(c, fix, "missing service name");
    const char *seg = p + 1;
    const char *slash = rl_find_char(seg, end, '/');
    const char *send = slash ? slash : end;
    if (send == seg)
        return rl_url_fail(c, fix, "missing service name");
    if (rl_url_decode(c, seg, (size_t)(send - seg), 0, "service name", 0, &out->service_name) < 0)
        return -1;
    if (out->service_name[0] == '\0')
        return rl_url_fail(c, fix, "missing service name");
    if (slash && end - slash > 1) {
        const char *db = slash + 1;
        const char *more = rl_find_char(db, end, '/');
        if (more)
            return rl_url_fail(c, "the path may only be /service_name/<db>, e.g. redis+sentinel://s1:26379/mymaster/0",
                               "unexpected %s after the db number", rl_url_fragment(c, &f, more, (size_t)(end - more)));
        if (rl_url_parse_db(c, db, (size_t)(end - db), 0, "path", &out->db) < 0)
            return -1;
    }
    return 0;
}

static int parse_inner(const pctx *c, rl_url *out)
{
    frag f;
    const char *s = c->s;
    const char *end = s + c->len;

    const char *nul = memchr(s, '\0', c->len);
    if (nul)
        return rl_url_fail(c, "remove the NUL byte", "NUL byte at offset %zu", (size_t)(nul - s));
    if (memchr(s, '#', c->len))
        return rl_url_fail(c, "percent-encode '#' as %23 (URL fragments are not supported)", "'#' found");

    /* scheme */
    const char *p = s;
    while (p < end && (rl_is_alnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.')) p++;
    if (p == s || p == end || *p != ':' || !rl_is_alpha((unsigned char)s[0]))
        return rl_url_fail(c, "start it with redis://, rediss://, unix:// or redis+sentinel://, e.g. redis://localhost:6379/0",
                    "missing scheme");
    size_t slen = (size_t)(p - s);
    int tls = 0, kind;
    if (rl_eq_ci(s, slen, "redis")) {
        kind = RL_URL_TCP;
    } else if (rl_eq_ci(s, slen, "rediss")) {
        kind = RL_URL_TCP;
        tls = 1;
    } else if (rl_eq_ci(s, slen, "redis+sentinel")) {
        kind = RL_URL_SENTINEL;
    } else if (rl_eq_ci(s, slen, "rediss+sentinel")) {
        kind = RL_URL_SENTINEL;
        tls = 1;
    } else if (rl_eq_ci(s, slen, "unix")) {
        kind = RL_URL_UNIX;
    } else {
        return rl_url_fail(c, SUPPORTED_SCHEMES, "unsupported scheme %s", rl_url_fragment(c, &f, s, slen));
    }
    p++; /* past ':' */

    int slashes = end - p >= 2 && p[0] == '/' && p[1] == '/';
    if (kind != RL_URL_UNIX && !slashes) {
        char scheme[24];
        snprintf(scheme, sizeof scheme, "%s%s", tls ? "rediss" : "redis", kind == RL_URL_SENTINEL ? "+sentinel" : "");
        return rl_url_fail(c, kind == RL_URL_SENTINEL ? "write it as redis+sentinel://host:port/service_name/db"
                                                      : "write it as redis://host:port/db",
                           "expected '//' after '%s:'", scheme);
    }

    /* authority, path, query */
    const char *auth = slashes ? p + 2 : p;
    const char *auth_end = slashes ? rl_find_any(auth, end, "/?") : auth;
    const char *path_end = rl_find_any(auth_end, end, "?");
    const char *query = path_end < end ? path_end + 1 : NULL;

    const char *at = rl_find_last(auth, auth_end, '@');
    const char *hostport = at ? at + 1 : auth;
    int user_in_auth = 0, pass_in_auth = 0;
    if (at) {
        const char *colon = rl_find_char(auth, at, ':');
        const char *uend = colon ? colon : at;
        if (rl_url_decode_opt(c, auth, (size_t)(uend - auth), 0, "user name", 0, &out->user) < 0) return -1;
        if (colon && rl_url_decode_opt(c, colon + 1, (size_t)(at - colon - 1), 0, "password", 1, &out->password) < 0)
            return -1;
        user_in_auth = out->user != NULL;
        pass_in_auth = out->password != NULL;
    }

    out->kind = kind;
    out->tls = tls;
    if (kind == RL_URL_TCP) {
        if (parse_hostport(c, hostport, auth_end, RL_URL_DEFAULT_PORT, &out->host, &out->port) < 0) return -1;
        /* path: "", "/" or "/<db>" */
        if (path_end - auth_end > 1) {
            const char *seg = auth_end + 1;
            const char *slash = rl_find_char(seg, path_end, '/');
            if (slash)
                return rl_url_fail(c, "the path may only be /<db>, e.g. redis://localhost:6379/0",
                            "unexpected %s after the db number", rl_url_fragment(c, &f, slash, (size_t)(path_end - slash)));
            if (rl_url_parse_db(c, seg, (size_t)(path_end - seg), 0, "path", &out->db) < 0) return -1;
        }
    } else if (kind == RL_URL_SENTINEL) {
        if (parse_sentinels(c, hostport, auth_end, out) < 0 || parse_service(c, auth_end, path_end, out) < 0)
            return -1;
    } else {
        if (hostport < auth_end)
            return rl_url_fail(c, "write the socket path after three slashes, e.g. unix:///tmp/redis.sock",
                        "unix URL names host %s", rl_url_fragment(c, &f, hostport, (size_t)(auth_end - hostport)));
        if (path_end == auth_end)
            return rl_url_fail(c, "give the socket path, e.g. unix:///tmp/redis.sock", "unix URL has no socket path");
        if (*auth_end != '/')
            return rl_url_fail(c, "give an absolute socket path, e.g. unix:///tmp/redis.sock",
                        "unix socket path %s is not absolute", rl_url_fragment(c, &f, auth_end, (size_t)(path_end - auth_end)));
        if (rl_url_decode(c, auth_end, (size_t)(path_end - auth_end), 0, "socket path", 0, &out->path) < 0) return -1;
    }

    if (query && rl_url_parse_query(c, query, end, out, user_in_auth, pass_in_auth) < 0) return -1;
    return 0;
}

int rl_url_parse(const char *s, size_t len, rl_url *out, char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    if (!out) {
        if (err && errlen) snprintf(err, errlen, "internal error: rl_url_parse called without an output struct");
        return -1;
    }
    memset(out, 0, sizeof *out);
    if (!s || len == 0) {
        if (err && errlen)
            snprintf(err, errlen, "empty Redis URL; give one such as redis://localhost:6379/0 or unix:///tmp/redis.sock");
        return -1;
    }
    out->tls_opts.cert_reqs = RL_TLS_REQ_REQUIRED;
    out->tls_opts.check_hostname = 1;
    out->socket_timeout = -1;
    out->socket_connect_timeout = -1;
    pctx c = {s, len, rl_url_mask(s, len), err, errlen};
    int rc = parse_inner(&c, out);
    free(c.mask);
    if (rc < 0) {
        rl_url_free(out);
        return -1;
    }
    return 0;
}

void rl_url_free(rl_url *u)
{
    if (!u) return;
    free(u->host);
    free(u->path);
    free(u->user);
    free(u->password);
    free(u->tls_opts.ca_certs);
    free(u->tls_opts.ca_path);
    free(u->tls_opts.certfile);
    free(u->tls_opts.keyfile);
    free(u->client_name);
    for (int i = 0; i < u->nsentinels && u->sentinels; i++)
        free(u->sentinels[i].host);
    free(u->sentinels);
    free(u->service_name);
    free(u->sentinel_user);
    free(u->sentinel_password);
    memset(u, 0, sizeof *u);
}

