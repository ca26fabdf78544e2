/* rl_url_lex.c - lexing, secret masking, error messages and decoding for the
 * URL parser (see rl_url_int.h).  Pure C11, no Python. */
#include "rl_url_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Character and search helpers                                        */

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int rl_eq_ci(const char *a, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    if (n != m) return 0;
    for (size_t i = 0; i < n; i++)
        if (rl_to_lower((unsigned char)a[i]) != (unsigned char)lit[i]) return 0;
    return 1;
}

int rl_eq_lit(const char *a, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(a, lit, n) == 0;
}

const char *rl_find_char(const char *p, const char *end, char ch)
{
    return p < end ? memchr(p, ch, (size_t)(end - p)) : NULL;
}

const char *rl_find_last(const char *p, const char *end, char ch)
{
    for (const char *q = end; q > p; q--)
        if (q[-1] == ch) return q - 1;
    return NULL;
}

const char *rl_find_any(const char *p, const char *end, const char *set)
{
    for (; p < end; p++)
        if (strchr(set, *p)) return p;
    return end;
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
/* Error reporting                                                     */

/* Writes "<problem> in URL '<safe url>'[; <fix>]" into the error buffer; returns -1. */
int rl_url_fail(const pctx *c, const char *fix, const char *fmt, ...)
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

const char *rl_url_fragment(const pctx *c, frag *f, const char *p, size_t n)
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
int rl_url_decode(const pctx *c, const char *p, size_t n, int plus_space, const char *what,
                  int secret, char **out)
{
    *out = NULL;
    char *d = malloc(n + 1);
    if (!d) return rl_url_fail(c, NULL, "out of memory while decoding the %s", what);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '%') {
            int hi = i + 1 < n ? hexval((unsigned char)p[i + 1]) : -1;
            int lo = i + 2 < n ? hexval((unsigned char)p[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(d);
                const char *fix = "write '%' itself as %25 and escapes as '%' plus two hex digits";
                if (secret) return rl_url_fail(c, fix, "bad percent escape in the %s", what);
                frag f;
                size_t k = n - i < 3 ? n - i : 3;
                return rl_url_fail(c, fix, "bad percent escape %s in the %s", rl_url_fragment(c, &f, p + i, k), what);
            }
            ch = (unsigned char)(hi * 16 + lo);
            i += 2;
            if (ch == 0) {
                free(d);
                return rl_url_fail(c, "remove the %00", "percent escape %%00 (NUL byte) in the %s is not allowed", what);
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
int rl_url_decode_opt(const pctx *c, const char *p, size_t n, int plus_space, const char *what,
                      int secret, char **out)
{
    *out = NULL;
    if (n == 0) return 0;
    if (rl_url_decode(c, p, n, plus_space, what, secret, out) < 0) return -1;
    if ((*out)[0] == '\0') {
        free(*out);
        *out = NULL;
    }
    return 0;
}

/* Parses a db number from raw text [p, p+n) (percent-decoded first). */
int rl_url_parse_db(const pctx *c, const char *p, size_t n, int plus_space, const char *where, long *db)
{
    frag f;
    char *d;
    if (rl_url_decode(c, p, n, plus_space, where, 0, &d) < 0) return -1;
    int ok = d[0] != '\0';
    long v = 0;
    int big = 0;
    for (const char *q = d; *q && ok; q++) {
        if (!rl_is_digit((unsigned char)*q)) {
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
        return rl_url_fail(c, "use a database number such as /0 or ?db=0",
                    "db %s (%s) is not a non-negative integer", rl_url_fragment(c, &f, p, n), where);
    if (big)
        return rl_url_fail(c, "use a database number between 0 and 2147483647",
                    "db %s (%s) out of range 0..2147483647", rl_url_fragment(c, &f, p, n), where);
    *db = v;
    return 0;
}

