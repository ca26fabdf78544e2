/* rl_url_query.c - the query parameters of a Redis URL (redis-py's names;
 * see rl_url.h).  Pure C11, no Python. */
#include "rl_url_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SCOPE_ANY, SCOPE_TLS, SCOPE_SENTINEL };

enum {
    P_DB, P_PASSWORD, P_USERNAME, P_SOCKET_TIMEOUT, P_CONNECT_TIMEOUT, P_CLIENT_NAME, P_PROTOCOL,
    P_CERT_REQS, P_CA_CERTS, P_CA_PATH, P_CERTFILE, P_KEYFILE, P_CHECK_HOSTNAME,
    P_SENTINEL_USER, P_SENTINEL_PASSWORD, P_COUNT
};

static const struct {
    const char *name;
    int secret;
    int scope;
} params[P_COUNT] = {
    [P_DB] = {"db", 0, SCOPE_ANY},
    [P_PASSWORD] = {"password", 1, SCOPE_ANY},
    [P_USERNAME] = {"username", 0, SCOPE_ANY},
    [P_SOCKET_TIMEOUT] = {"socket_timeout", 0, SCOPE_ANY},
    [P_CONNECT_TIMEOUT] = {"socket_connect_timeout", 0, SCOPE_ANY},
    [P_CLIENT_NAME] = {"client_name", 0, SCOPE_ANY},
    [P_PROTOCOL] = {"protocol", 0, SCOPE_ANY},
    [P_CERT_REQS] = {"ssl_cert_reqs", 0, SCOPE_TLS},
    [P_CA_CERTS] = {"ssl_ca_certs", 0, SCOPE_TLS},
    [P_CA_PATH] = {"ssl_ca_path", 0, SCOPE_TLS},
    [P_CERTFILE] = {"ssl_certfile", 0, SCOPE_TLS},
    [P_KEYFILE] = {"ssl_keyfile", 0, SCOPE_TLS},
    [P_CHECK_HOSTNAME] = {"ssl_check_hostname", 0, SCOPE_TLS},
    [P_SENTINEL_USER] = {"sentinel_username", 0, SCOPE_SENTINEL},
    [P_SENTINEL_PASSWORD] = {"sentinel_password", 1, SCOPE_SENTINEL},
};

#define KNOWN_PARAMS                                                                        \
    "known query parameters are db, password, username, socket_timeout, "                  \
    "socket_connect_timeout, client_name, protocol; with rediss:// also ssl_cert_reqs, "  \
    "ssl_ca_certs, ssl_ca_path, ssl_certfile, ssl_keyfile, ssl_check_hostname; with "     \
    "redis+sentinel:// also sentinel_username, sentinel_password"

static int lookup(const char *name, size_t n)
{
    for (int i = 0; i < P_COUNT; i++)
        if (rl_eq_lit(name, n, params[i].name))
            return i;
    return -1;
}

int rl_url_param_public(const char *name, size_t n)
{
    int i = lookup(name, n);
    return i >= 0 && !params[i].secret;
}

/* Marks every input byte that could be (part of) a password under any reading of the
   URL, so that error messages can quote the URL without revealing it:
   - from the first ':' after the scheme's "//" (or after the scheme when there is no
     "//") up to the LAST '@' in the whole string: covers userinfo passwords, also when
     the password holds unencoded '/', '?' or '@' that split the URL in odd places;
   - the value of every "name=value" that follows a '?' or '&', unless name is a
     known parameter that holds no secret (rl_url_param_public: not password,
     sentinel_password, nor an unknown name, which may be a misspelt password).
   Returns a malloc'd flag array of len bytes, or NULL when out of memory (callers then
   treat everything as secret). */
unsigned char *rl_url_mask(const char *s, size_t len)
{
    unsigned char *m = calloc(len ? len : 1, 1);
    if (!m) return NULL;
    const char *end = s + len;
    const char *start = s;
    const char *dslash = NULL;
    for (const char *q = s; end - q >= 3; q++) {
        if (q[0] == ':' && q[1] == '/' && q[2] == '/') { dslash = q; break; }
    }
    if (dslash) start = dslash + 3;
    const char *at = rl_find_last(start, end, '@');
    if (at) {
        const char *colon = rl_find_char(start, at, ':');
        if (colon)
            for (const char *q = colon + 1; q < at; q++) m[q - s] = 1;
    } else if (dslash) {
        /* No '@' at all: "redis://:secret" (host forgotten) would read the password as a
           port; hide whatever follows a host's ':' unless it is a plain number (each
           host of a sentinel list "h1:26379,h2:26380" separately). */
        const char *aend = rl_find_any(start, end, "/?");
        for (const char *h = start; h < aend;) {
            const char *pend = rl_find_any(h, aend, ",");
            const char *hp = h;
            if (hp < pend && *hp == '[') {
                const char *rb = rl_find_char(hp, pend, ']');
                hp = rb ? rb + 1 : pend;
            }
            const char *colon = rl_find_char(hp, pend, ':');
            int digits = 1;
            for (const char *q = colon ? colon + 1 : pend; q < pend; q++)
                if (!rl_is_digit((unsigned char)*q)) digits = 0;
            if (colon && !digits)
                for (const char *q = colon + 1; q < pend; q++) m[q - s] = 1;
            h = pend < aend ? pend + 1 : aend;
        }
    }
    for (const char *q = s; q < end; q++) {
        if (*q != '?' && *q != '&') continue;
        const char *name = q + 1;
        const char *stop = rl_find_any(name, end, "=&?");
        if (stop == end || *stop != '=') continue;
        size_t nlen = (size_t)(stop - name);
        if (rl_url_param_public(name, nlen)) continue;
        const char *vend = rl_find_any(stop + 1, end, "&");
        for (const char *v = stop + 1; v < vend; v++) m[v - s] = 1;
    }
    return m;
}

/* "1", "0.5", ".5", "2.", "1e-3": a plain decimal number, parsed without the
   locale (strtod would read the decimal point of LC_NUMERIC). -1 if not one. */
static double plain_number(const char *s)
{
    double v = 0, scale = 1;
    int digits = 0;
    const char *p = s;
    for (; rl_is_digit((unsigned char)*p); p++, digits++)
        v = v * 10 + (*p - '0');
    if (*p == '.') {
        for (p++; rl_is_digit((unsigned char)*p); p++, digits++) {
            scale /= 10;
            v += (*p - '0') * scale;
        }
    }
    if (!digits)
        return -1;
    if (*p == 'e' || *p == 'E') {
        int neg = 0, e = 0, edigits = 0;
        p++;
        if (*p == '+' || *p == '-')
            neg = *p++ == '-';
        for (; rl_is_digit((unsigned char)*p); p++, edigits++)
            if (e < 400)
                e = e * 10 + (*p - '0');
        if (!edigits)
            return -1;
        for (int i = 0; i < e && v != 0 && v < 1e300; i++)
            v = neg ? v / 10 : v * 10;
    }
    return *p ? -1 : v;
}

static int parse_bool(const char *s, int *out)
{
    static const char *yes[] = {"true", "1", "yes"}, *no[] = {"false", "0", "no"};
    for (int i = 0; i < 3; i++) {
        if (rl_eq_ci(s, strlen(s), yes[i])) {
            *out = 1;
            return 0;
        }
        if (rl_eq_ci(s, strlen(s), no[i])) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* One parameter's decoded, non-empty value. */
static int apply(const pctx *c, int id, const char *raw, size_t rawlen, char *v, rl_url *out,
                 int *check_hostname)
{
    frag f;
    const char *name = params[id].name;
    switch (id) {
    case P_SOCKET_TIMEOUT:
    case P_CONNECT_TIMEOUT: {
        double s = plain_number(v);
        if (!(s > 0))
            return rl_url_fail(c, "give a number of seconds greater than 0, e.g. 0.5",
                               "%s %s is not a positive number of seconds", name,
                               rl_url_fragment(c, &f, raw, rawlen));
        *(id == P_SOCKET_TIMEOUT ? &out->socket_timeout : &out->socket_connect_timeout) = s;
        return 0;
    }
    case P_CLIENT_NAME:
        for (const unsigned char *q = (const unsigned char *)v; *q; q++)
            if (*q <= 0x20 || *q >= 0x7f)
                return rl_url_fail(c, "Redis allows no spaces, newlines or non-ASCII bytes in a "
                                   "client name (CLIENT SETNAME)",
                                   "client_name %s holds a character Redis refuses",
                                   rl_url_fragment(c, &f, raw, rawlen));
        free(out->client_name);
        out->client_name = v;
        return 1;   /* kept */
    case P_PROTOCOL:
        if (strcmp(v, "2") && strcmp(v, "3"))
            return rl_url_fail(c, "give protocol=2 or protocol=3 (redlease speaks RESP2 either way)",
                               "protocol %s is not 2 or 3", rl_url_fragment(c, &f, raw, rawlen));
        out->protocol = v[0] - '0';
        return 0;
    case P_CERT_REQS:
        if (rl_eq_ci(v, strlen(v), "none"))
            out->tls_opts.cert_reqs = RL_TLS_REQ_NONE;
        else if (rl_eq_ci(v, strlen(v), "optional"))
            out->tls_opts.cert_reqs = RL_TLS_REQ_OPTIONAL;
        else if (rl_eq_ci(v, strlen(v), "required"))
            out->tls_opts.cert_reqs = RL_TLS_REQ_REQUIRED;
        else
            return rl_url_fail(c, "give ssl_cert_reqs=none, optional or required",
                               "ssl_cert_reqs %s is not none, optional or required",
                               rl_url_fragment(c, &f, raw, rawlen));
        return 0;
    case P_CHECK_HOSTNAME:
        if (parse_bool(v, check_hostname) < 0)
            return rl_url_fail(c, "give ssl_check_hostname=true or false (also 1/0, yes/no)",
                               "ssl_check_hostname %s is not a boolean",
                               rl_url_fragment(c, &f, raw, rawlen));
        return 0;
    default: {
        char **slot = id == P_CA_CERTS ? &out->tls_opts.ca_certs
                    : id == P_CA_PATH ? &out->tls_opts.ca_path
                    : id == P_CERTFILE ? &out->tls_opts.certfile
                    : id == P_KEYFILE ? &out->tls_opts.keyfile
                    : id == P_SENTINEL_USER ? &out->sentinel_user
                    : &out->sentinel_password;
        free(*slot);
        *slot = v;
        return 1;
    }
    }
}

int rl_url_parse_query(const pctx *c, const char *q, const char *end, rl_url *out,
                       int user_in_auth, int pass_in_auth)
{
    frag f;
    int seen[P_COUNT] = {0};
    int check_hostname = -1;
    while (q < end) {
        const char *seg_end = rl_find_any(q, end, "&");
        if (seg_end == q) {
            q++;
            continue;
        }
        const char *eq = rl_find_char(q, seg_end, '=');
        if (!eq)
            return rl_url_fail(c, "write name=value; " KNOWN_PARAMS, "query parameter %s has no value",
                               rl_url_fragment(c, &f, q, (size_t)(seg_end - q)));
        size_t nlen = (size_t)(eq - q);
        const char *v = eq + 1;
        size_t vlen = (size_t)(seg_end - v);
        int id = lookup(q, nlen);
        if (id < 0)
            return rl_url_fail(c, KNOWN_PARAMS, "unknown query parameter %s", rl_url_fragment(c, &f, q, nlen));
        if (seen[id])
            return rl_url_fail(c, "give each query parameter once", "query parameter %s given more than once",
                               rl_url_fragment(c, &f, q, nlen));
        seen[id] = 1;
        if (params[id].scope == SCOPE_TLS && !out->tls)
            return rl_url_fail(c, "use rediss:// (or rediss+sentinel://) for TLS",
                               "%s is only meaningful with TLS", params[id].name);
        if (params[id].scope == SCOPE_SENTINEL && out->kind != RL_URL_SENTINEL)
            return rl_url_fail(c, "use a redis+sentinel:// URL (for the server itself: password, username)",
                               "%s is only meaningful in redis+sentinel:// URLs", params[id].name);
        q = seg_end;
        if (vlen == 0)   /* like redis-py (parse_qs), empty values are ignored */
            continue;
        char what[64];
        snprintf(what, sizeof what, "query parameter '%s'", params[id].name);
        if (id == P_DB) {
            if (rl_url_parse_db(c, v, vlen, 1, "query parameter 'db'", &out->db) < 0) return -1;
            continue;
        }
        if (id == P_PASSWORD && pass_in_auth)
            return rl_url_fail(c, "give the password only once", "password given both before '@' and as ?password=");
        if (id == P_USERNAME && user_in_auth)
            return rl_url_fail(c, "give the user name only once",
                               "user name given both before '@' and as ?username=");
        char *val;
        if (rl_url_decode_opt(c, v, vlen, 1, what, params[id].secret, &val) < 0) return -1;
        if (!val)
            continue;
        if (id == P_PASSWORD || id == P_USERNAME) {
            char **slot = id == P_PASSWORD ? &out->password : &out->user;
            free(*slot);
            *slot = val;
            continue;
        }
        int kept = apply(c, id, v, vlen, val, out, &check_hostname);
        if (kept <= 0)
            free(val);
        if (kept < 0)
            return -1;
    }
    if (check_hostname == 1 && out->tls_opts.cert_reqs == RL_TLS_REQ_NONE)
        return rl_url_fail(c, "drop ssl_cert_reqs=none, or ssl_check_hostname=true",
                           "ssl_check_hostname=true needs certificate verification, but ssl_cert_reqs is none");
    out->tls_opts.check_hostname = check_hostname >= 0 ? check_hostname
                                                       : out->tls_opts.cert_reqs == RL_TLS_REQ_REQUIRED;
    return 0;
}
