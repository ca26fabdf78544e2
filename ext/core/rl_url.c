/* rl_url.c - Redis URL parsing (see rl_url.h). Pure C11, no Python. */
#include "rl_url.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RL_URL_DEFAULT_PORT 6379
#define RL_URL_DB_MAX 2147483647L
#define ECHO_MAX 160 /* input chars shown when quoting a URL in an error */
#define FRAG_MAX 40  /* input chars shown when quoting a piece of a URL */

#define SUPPORTED_SCHEMES "supported schemes are redis://, rediss:// and unix://"
#define SUPPORTED_PARAMS "supported query parameters are db, password and username"

#if defined(__GNUC__)
#define RL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define RL_PRINTF(f, a)
#endif

/* ------------------------------------------------------------------ */
/* Locale-independent character helpers                               */

static int is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_alnum(unsigned char c) { return is_alpha(c) || is_digit(c); }
static unsigned char to_lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c; }

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int eq_ci(const char *a, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    if (n != m) return 0;
    for (size_t i = 0; i < n; i++)
        if (to_lower((unsigned char)a[i]) != (unsigned char)lit[i]) return 0;
    return 1;
}

static int eq_lit(const char *a, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(a, lit, n) == 0;
}

static const char *find_char(const char *p, const char *end, char ch)
{
    return p < end ? memchr(p, ch, (size_t)(end - p)) : NULL;
}

static const char *find_last(const char *p, const char *end, char ch)
{
    for (const char *q = end; q > p; q--)
        if (q[-1] == ch) return q - 1;
    return NULL;
}

/* First position in [p, end) holding one of the chars in set, or end. */
static const char *find_any(const char *p, const char *end, const char *set)
{
    for (; p < end; p++)
        if (strchr(set, *p)) return p;
    return end;
}

/* ------------------------------------------------------------------ */
/* Secret masking for error messages                                  */

/* Marks every input byte that could be (part of) a password under any reading of the
   URL, so that error messages can quote the URL without revealing it:
   - from the first ':' after the scheme's "//" (or after the scheme when there is no
     "//") up to the LAST '@' in the whole string: covers userinfo passwords, also when
     the password holds unencoded '/', '?' or '@' that split the URL in odd places;
   - the value of every "name=value" that follows a '?' or '&', unless name is exactly
     "db" or "username".
   Returns a malloc'd flag array of len bytes, or NULL when out of memory (callers then
   treat everything as secret). */
static unsigned char *compute_mask(const char *s, size_t len)
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
    const char *at = find_last(start, end, '@');
    if (at) {
        const char *colon = find_char(start, at, ':');
        if (colon)
            for (const char *q = colon + 1; q < at; q++) m[q - s] = 1;
    } else if (dslash) {
        /* No '@' at all: "redis://:secret" (host forgotten) would read the password as a
           port; hide whatever follows the host's ':' unless it is a plain number. */
        const char *aend = find_any(start, end, "/?");
        const char *h = start;
        if (h < aend && *h == '[') {
            const char *rb = find_char(h, aend, ']');
            h = rb ? rb + 1 : aend;
        }
        const char *colon = find_char(h, aend, ':');
        int digits = 1;
        for (const char *q = colon ? colon + 1 : aend; q < aend; q++)
            if (!is_digit((unsigned char)*q)) digits = 0;
        if (colon && !digits)
            for (const char *q = colon + 1; q < aend; q++) m[q - s] = 1;
    }
    for (const char *q = s; q < end; q++) {
        if (*q != '?' && *q != '&') continue;
        const char *name = q + 1;
        const char *stop = find_any(name, end, "=&?");
        if (stop == end || *stop != '=') continue;
        size_t nlen = (size_t)(stop - name);
        if (eq_lit(name, nlen, "db") || eq_lit(name, nlen, "username")) continue;
        const char *vend = find_any(stop + 1, end, "&");
        for (const char *v = stop + 1; v < vend; v++) m[v - s] = 1;
    }
    return m;
}

/* Appends input bytes [p, p+n) to out with masked runs shown as "***" and control
   bytes escaped, stopping after max input chars. */
static void quote_into(char *out, size_t outlen, const char *s, const unsigned char *mask,
                       const char *p, size_t n, size_t max)
{
    size_t o = 0;
    if (outlen == 0) return;
#define PUT(ch)                                   \
    do {                                          \
        if (o + 1 < outlen) out[o++] = (char)(ch); \
    } while (0)
    if (!mask) {
        const char *h = "***";
        while (*h) PUT(*h++);
        out[o] = '\0';
        return;
    }
    size_t shown = 0;
    for (size_t i = 0; i < n; i++) {
        size_t idx = (size_t)(p - s) + i;
        if (mask[idx]) {
            if (i == 0 || !mask[idx - 1]) {
                PUT('*');
                PUT('*');
                PUT('*');
            }
            continue;
        }
        if (shown++ >= max) {
            PUT('.');
            PUT('.');
            PUT('.');
            break;
        }
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f) {
            static const char hx[] = "0123456789abcdef";
            PUT('\\');
            PUT('x');
            PUT(hx[c >> 4]);
            PUT(hx[c & 15]);
        } else {
            PUT(c);
        }
    }
#undef PUT
    out[o] = '\0';
}

/* ------------------------------------------------------------------ */
/* Parser context and error reporting                                  */

typedef struct pctx {
    const char *s;
    size_t len;
    unsigned char *mask; /* NULL = treat everything as secret */
    char *err;
    size_t errlen;
} pctx;

/* Writes "<problem> in URL '<safe url>'[; <fix>]" into the error buffer; returns -1. */
static int fail(const pctx *c, const char *fix, const char *fmt, ...) RL_PRINTF(3, 4);
static int fail(const pctx *c, const char *fix, const char *fmt, ...)
{
    if (!c->err || c->errlen == 0) return -1;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    if (n < 0) {
        c->err[0] = '\0';
        n = 0;
    }
    size_t used = (size_t)n < c->errlen ? (size_t)n : c->errlen - 1;
    char echo[ECHO_MAX * 4 + 16];
    quote_into(echo, sizeof echo, c->s, c->mask, c->s, c->len, ECHO_MAX);
    snprintf(c->err + used, c->errlen - used, " in URL '%s'%s%s", echo, fix ? "; " : "", fix ? fix : "");
    return -1;
}

/* A piece of the input, quoted for an error message, with secrets masked. */
typedef struct frag {
    char text[FRAG_MAX * 4 + 16];
} frag;

static const char *fragment(const pctx *c, frag *f, const char *p, size_t n)
{
    char inner[sizeof f->text - 2];
    quote_into(inner, sizeof inner, c->s, c->mask, p, n, FRAG_MAX);
    snprintf(f->text, sizeof f->text, "'%s'", inner);
    return f->text;
}

/* ------------------------------------------------------------------ */
/* Component decoding                                                  */

/* Percent-decodes [p, p+n) into a new string (*out). plus_space turns '+' into ' '
   (query values, as redis-py's parse_qs does). secret: never quote the text. */
static int decode(const pctx *c, const char *p, size_t n, int plus_space, const char *what,
                  int secret, char **out)
{
    *out = NULL;
    char *d = malloc(n + 1);
    if (!d) return fail(c, NULL, "out of memory while decoding the %s", what);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '%') {
            int hi = i + 1 < n ? hexval((unsigned char)p[i + 1]) : -1;
            int lo = i + 2 < n ? hexval((unsigned char)p[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(d);
                const char *fix = "write '%' itself as %25 and escapes as '%' plus two hex digits";
                if (secret) return fail(c, fix, "bad percent escape in the %s", what);
                frag f;
                size_t k = n - i < 3 ? n - i : 3;
                return fail(c, fix, "bad percent escape %s in the %s", fragment(c, &f, p + i, k), what);
            }
            ch = (unsigned char)(hi * 16 + lo);
            i += 2;
            if (ch == 0) {
                free(d);
                return fail(c, "remove the %00", "percent escape %%00 (NUL byte) in the %s is not allowed", what);
            }
        } else if (plus_space && ch == '+') {
            ch = ' ';
        }
        d[j++] = (char)ch;
    }
    d[j] = '\0';
    *out = d;
    return 0;
}

/* Decodes an optional string component: empty -> NULL. */
static int decode_opt(const pctx *c, const char *p, size_t n, int plus_space, const char *what,
                      int secret, char **out)
{
    *out = NULL;
    if (n == 0) return 0;
    if (decode(c, p, n, plus_space, what, secret, out) < 0) return -1;
    if ((*out)[0] == '\0') {
        free(*out);
        *out = NULL;
    }
    return 0;
}

/* Parses a db number from raw text [p, p+n) (percent-decoded first). */
static int parse_db(const pctx *c, const char *p, size_t n, int plus_space, const char *where, long *db)
{
    frag f;
    char *d;
    if (decode(c, p, n, plus_space, where, 0, &d) < 0) return -1;
    int ok = d[0] != '\0';
    long v = 0;
    int big = 0;
    for (const char *q = d; *q && ok; q++) {
        if (!is_digit((unsigned char)*q)) {
            ok = 0;
            break;
        }
        if (!big) {
            v = v * 10 + (*q - '0');
            if (v > RL_URL_DB_MAX) big = 1;
        }
    }
    free(d);
    if (!ok)
        return fail(c, "use a database number such as /0 or ?db=0",
                    "db %s (%s) is not a non-negative integer", fragment(c, &f, p, n), where);
    if (big)
        return fail(c, "use a database number between 0 and 2147483647",
                    "db %s (%s) out of range 0..2147483647", fragment(c, &f, p, n), where);
    *db = v;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The parser                                                          */

static int parse_tcp_hostport(const pctx *c, const char *hp, const char *hend, rl_url *out)
{
    frag f;
    const char *hs, *he, *port = NULL;
    if (hp < hend && *hp == '[') {
        const char *rb = find_char(hp, hend, ']');
        if (!rb)
            return fail(c, "close the IPv6 address with ']', e.g. redis://[::1]:6379/0",
                        "unterminated '[' in the host");
        hs = hp + 1;
        he = rb;
        if (rb + 1 < hend) {
            if (rb[1] != ':')
                return fail(c, "only ':port' may follow the ']' of an IPv6 address",
                            "unexpected %s after ']'", fragment(c, &f, rb + 1, (size_t)(hend - rb - 1)));
            port = rb + 2;
        }
    } else {
        const char *colon = find_char(hp, hend, ':');
        if (colon && find_char(colon + 1, hend, ':'))
            return fail(c, "put IPv6 addresses in brackets, e.g. redis://[::1]:6379/0",
                        "host %s has more than one ':'", fragment(c, &f, hp, (size_t)(hend - hp)));
        hs = hp;
        he = colon ? colon : hend;
        if (colon) port = colon + 1;
        const char *br = find_any(hs, he, "[]");
        if (br != he)
            return fail(c, "brackets are only allowed around a whole IPv6 address, e.g. redis://[::1]:6379/0",
                        "unexpected '%c' in the host", *br);
    }
    if (hs == he)
        return fail(c, "give a host name, e.g. redis://localhost:6379/0", "missing host");

    out->port = RL_URL_DEFAULT_PORT;
    if (port) {
        size_t pn = (size_t)(hend - port);
        if (pn == 0)
            return fail(c, "give a port after ':' or drop the ':' to use 6379", "empty port after ':'");
        long v = 0;
        for (size_t i = 0; i < pn; i++) {
            if (!is_digit((unsigned char)port[i]))
                return fail(c, "the port must be a number between 1 and 65535",
                            "port %s is not a number", fragment(c, &f, port, pn));
            if (v <= 65535) v = v * 10 + (port[i] - '0');
        }
        if (v < 1 || v > 65535)
            return fail(c, "use a port between 1 and 65535", "port %s out of range 1..65535",
                        fragment(c, &f, port, pn));
        out->port = (int)v;
    }

    if (decode(c, hs, (size_t)(he - hs), 0, "host", 0, &out->host) < 0) return -1;
    if (out->host[0] == '\0')
        return fail(c, "give a host name, e.g. redis://localhost:6379/0", "missing host");
    for (char *q = out->host; *q; q++) *q = (char)to_lower((unsigned char)*q);
    return 0;
}

static int parse_query(const pctx *c, const char *q, const char *end, rl_url *out,
                       int user_in_auth, int pass_in_auth)
{
    frag f;
    int seen_db = 0, seen_pw = 0, seen_user = 0;
    while (q < end) {
        const char *seg_end = find_any(q, end, "&");
        if (seg_end == q) {
            q++;
            continue;
        }
        const char *eq = find_char(q, seg_end, '=');
        if (!eq)
            return fail(c, "write name=value; " SUPPORTED_PARAMS, "query parameter %s has no value",
                        fragment(c, &f, q, (size_t)(seg_end - q)));
        size_t nlen = (size_t)(eq - q);
        const char *v = eq + 1;
        size_t vlen = (size_t)(seg_end - v);
        int *seen;
        if (eq_lit(q, nlen, "db"))
            seen = &seen_db;
        else if (eq_lit(q, nlen, "password"))
            seen = &seen_pw;
        else if (eq_lit(q, nlen, "username"))
            seen = &seen_user;
        else
            return fail(c, SUPPORTED_PARAMS, "unknown query parameter %s", fragment(c, &f, q, nlen));
        if (*seen)
            return fail(c, "give each query parameter once", "query parameter %s given more than once",
                        fragment(c, &f, q, nlen));
        *seen = 1;
        if (vlen > 0) { /* like redis-py (parse_qs), empty values are ignored */
            if (seen == &seen_db) {
                if (parse_db(c, v, vlen, 1, "query parameter 'db'", &out->db) < 0) return -1;
            } else if (seen == &seen_pw) {
                if (pass_in_auth)
                    return fail(c, "give the password only once",
                                "password given both before '@' and as ?password=");
                if (decode_opt(c, v, vlen, 1, "query parameter 'password'", 1, &out->password) < 0) return -1;
            } else {
                if (user_in_auth)
                    return fail(c, "give the user name only once",
                                "user name given both before '@' and as ?username=");
                if (decode_opt(c, v, vlen, 1, "query parameter 'username'", 0, &out->user) < 0) return -1;
            }
        }
        q = seg_end;
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
        return fail(c, "remove the NUL byte", "NUL byte at offset %zu", (size_t)(nul - s));
    if (memchr(s, '#', c->len))
        return fail(c, "percent-encode '#' as %23 (URL fragments are not supported)", "'#' found");

    /* scheme */
    const char *p = s;
    while (p < end && (is_alnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.')) p++;
    if (p == s || p == end || *p != ':' || !is_alpha((unsigned char)s[0]))
        return fail(c, "start it with redis://, rediss:// or unix://, e.g. redis://localhost:6379/0",
                    "missing scheme");
    size_t slen = (size_t)(p - s);
    int tls = 0, kind;
    if (eq_ci(s, slen, "redis")) {
        kind = RL_URL_TCP;
    } else if (eq_ci(s, slen, "rediss")) {
        kind = RL_URL_TCP;
        tls = 1;
    } else if (eq_ci(s, slen, "unix")) {
        kind = RL_URL_UNIX;
    } else {
        return fail(c, SUPPORTED_SCHEMES, "unsupported scheme %s", fragment(c, &f, s, slen));
    }
    p++; /* past ':' */

    int slashes = end - p >= 2 && p[0] == '/' && p[1] == '/';
    if (kind == RL_URL_TCP && !slashes)
        return fail(c, "write it as redis://host:port/db", "expected '//' after '%s:'", tls ? "rediss" : "redis");

    /* authority, path, query */
    const char *auth = slashes ? p + 2 : p;
    const char *auth_end = slashes ? find_any(auth, end, "/?") : auth;
    const char *path_end = find_any(auth_end, end, "?");
    const char *query = path_end < end ? path_end + 1 : NULL;

    const char *at = find_last(auth, auth_end, '@');
    const char *hostport = at ? at + 1 : auth;
    int user_in_auth = 0, pass_in_auth = 0;
    if (at) {
        const char *colon = find_char(auth, at, ':');
        const char *uend = colon ? colon : at;
        if (decode_opt(c, auth, (size_t)(uend - auth), 0, "user name", 0, &out->user) < 0) return -1;
        if (colon && decode_opt(c, colon + 1, (size_t)(at - colon - 1), 0, "password", 1, &out->password) < 0)
            return -1;
        user_in_auth = out->user != NULL;
        pass_in_auth = out->password != NULL;
    }

    out->kind = kind;
    out->tls = tls;
    if (kind == RL_URL_TCP) {
        if (parse_tcp_hostport(c, hostport, auth_end, out) < 0) return -1;
        /* path: "", "/" or "/<db>" */
        if (path_end - auth_end > 1) {
            const char *seg = auth_end + 1;
            const char *slash = find_char(seg, path_end, '/');
            if (slash)
                return fail(c, "the path may only be /<db>, e.g. redis://localhost:6379/0",
                            "unexpected %s after the db number", fragment(c, &f, slash, (size_t)(path_end - slash)));
            if (parse_db(c, seg, (size_t)(path_end - seg), 0, "path", &out->db) < 0) return -1;
        }
    } else {
        if (hostport < auth_end)
            return fail(c, "write the socket path after three slashes, e.g. unix:///tmp/redis.sock",
                        "unix URL names host %s", fragment(c, &f, hostport, (size_t)(auth_end - hostport)));
        if (path_end == auth_end)
            return fail(c, "give the socket path, e.g. unix:///tmp/redis.sock", "unix URL has no socket path");
        if (*auth_end != '/')
            return fail(c, "give an absolute socket path, e.g. unix:///tmp/redis.sock",
                        "unix socket path %s is not absolute", fragment(c, &f, auth_end, (size_t)(path_end - auth_end)));
        if (decode(c, auth_end, (size_t)(path_end - auth_end), 0, "socket path", 0, &out->path) < 0) return -1;
    }

    if (query && parse_query(c, query, end, out, user_in_auth, pass_in_auth) < 0) return -1;
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
    pctx c = {s, len, compute_mask(s, len), err, errlen};
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
    memset(u, 0, sizeof *u);
}

/* ------------------------------------------------------------------ */
/* Display form                                                        */

typedef struct sbuf {
    char *buf;
    size_t cap;
    size_t n;
} sbuf;

static void sb_putc(sbuf *b, char ch)
{
    if (b->n + 1 < b->cap) b->buf[b->n] = ch;
    b->n++;
}

static void sb_puts(sbuf *b, const char *str)
{
    while (*str) sb_putc(b, *str++);
}

/* Appends str, percent-encoding every byte that is not alphanumeric or in extra. */
static void sb_enc(sbuf *b, const char *str, const char *extra)
{
    static const char hx[] = "0123456789ABCDEF";
    for (const unsigned char *q = (const unsigned char *)str; *q; q++) {
        if (is_alnum(*q) || (*q < 0x80 && strchr(extra, *q))) {
            sb_putc(b, (char)*q);
        } else {
            sb_putc(b, '%');
            sb_putc(b, hx[*q >> 4]);
            sb_putc(b, hx[*q & 15]);
        }
    }
}

#define SAFE_SUBDELIMS "-._~!$&'()*+,;="

int rl_url_format_safe(const rl_url *u, char *buf, size_t buflen)
{
    sbuf b = {buf, buf ? buflen : 0, 0};
    char num[32];
    if (!u || (u->kind != RL_URL_TCP && u->kind != RL_URL_UNIX)) {
        sb_puts(&b, "(invalid URL)");
    } else {
        sb_puts(&b, u->kind == RL_URL_UNIX ? "unix://" : u->tls ? "rediss://" : "redis://");
        if (u->user || u->password) {
            if (u->user) sb_enc(&b, u->user, SAFE_SUBDELIMS);
            if (u->password) sb_puts(&b, ":***");
            sb_putc(&b, '@');
        }
        if (u->kind == RL_URL_TCP) {
            const char *h = u->host ? u->host : "";
            if (strchr(h, ':')) {
                sb_putc(&b, '[');
                sb_enc(&b, h, SAFE_SUBDELIMS ":");
                sb_putc(&b, ']');
            } else {
                sb_enc(&b, h, SAFE_SUBDELIMS);
            }
            snprintf(num, sizeof num, ":%d/%ld", u->port, u->db);
            sb_puts(&b, num);
        } else {
            sb_enc(&b, u->path ? u->path : "", SAFE_SUBDELIMS ":@/");
            snprintf(num, sizeof num, "?db=%ld", u->db);
            sb_puts(&b, num);
        }
    }
    if (b.cap) b.buf[b.n < b.cap ? b.n : b.cap - 1] = '\0';
    return b.n > (size_t)INT_MAX ? INT_MAX : (int)b.n;
}

/* ------------------------------------------------------------------ */
/* Endpoint comparison                                                 */

static int str_eq(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

static int str_eq_ci(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    for (; *a && *b; a++, b++)
        if (to_lower((unsigned char)*a) != to_lower((unsigned char)*b)) return 0;
    return *a == *b;
}

int rl_url_same_endpoint(const rl_url *a, const rl_url *b)
{
    if (!a || !b) return 0;
    if (a->kind != b->kind || a->tls != b->tls || a->db != b->db) return 0;
    if (a->kind == RL_URL_TCP) {
        if (a->port != b->port || !str_eq_ci(a->host, b->host)) return 0;
    } else {
        if (!str_eq(a->path, b->path)) return 0;
    }
    return str_eq(a->user, b->user) && str_eq(a->password, b->password);
}
