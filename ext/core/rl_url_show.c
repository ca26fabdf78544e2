/* rl_url_show.c - display form, comparison and copies of parsed URLs (see
 * rl_url.h).  Pure C11, no Python. */
#include "rl_url_int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        if (rl_is_alnum(*q) || (*q < 0x80 && strchr(extra, *q))) {
            sb_putc(b, (char)*q);
        } else {
            sb_putc(b, '%');
            sb_putc(b, hx[*q >> 4]);
            sb_putc(b, hx[*q & 15]);
        }
    }
}

#define SAFE_SUBDELIMS "-._~!$&'()*+,;="

static void sb_host(sbuf *b, const char *h, int port)
{
    char num[16];
    h = h ? h : "";
    if (strchr(h, ':')) {
        sb_putc(b, '[');
        sb_enc(b, h, SAFE_SUBDELIMS ":");
        sb_putc(b, ']');
    } else {
        sb_enc(b, h, SAFE_SUBDELIMS);
    }
    snprintf(num, sizeof num, ":%d", port);
    sb_puts(b, num);
}

int rl_url_format_safe(const rl_url *u, char *buf, size_t buflen)
{
    sbuf b = {buf, buf ? buflen : 0, 0};
    char num[32];
    if (!u || (u->kind != RL_URL_TCP && u->kind != RL_URL_UNIX && u->kind != RL_URL_SENTINEL)) {
        sb_puts(&b, "(invalid URL)");
    } else {
        sb_puts(&b, u->kind == RL_URL_UNIX ? "unix://" : u->tls ? "rediss" : "redis");
        if (u->kind == RL_URL_SENTINEL)
            sb_puts(&b, "+sentinel");
        if (u->kind != RL_URL_UNIX)
            sb_puts(&b, "://");
        if (u->user || u->password) {
            if (u->user) sb_enc(&b, u->user, SAFE_SUBDELIMS);
            if (u->password) sb_puts(&b, ":***");
            sb_putc(&b, '@');
        }
        if (u->kind == RL_URL_TCP) {
            sb_host(&b, u->host, u->port);
            snprintf(num, sizeof num, "/%ld", u->db);
            sb_puts(&b, num);
        } else if (u->kind == RL_URL_SENTINEL) {
            for (int i = 0; i < u->nsentinels && u->sentinels; i++) {
                if (i) sb_putc(&b, ',');
                sb_host(&b, u->sentinels[i].host, u->sentinels[i].port);
            }
            sb_putc(&b, '/');
            sb_enc(&b, u->service_name ? u->service_name : "", SAFE_SUBDELIMS);
            snprintf(num, sizeof num, "/%ld", u->db);
            sb_puts(&b, num);
            const char *sep = "?";
            if (u->sentinel_user) {
                sb_puts(&b, "?sentinel_username=");
                sb_enc(&b, u->sentinel_user, "-._~!$'()*,;");
                sep = "&";
            }
            if (u->sentinel_password) {
                sb_puts(&b, sep);
                sb_puts(&b, "sentinel_password=***");
            }
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
        if (rl_to_lower((unsigned char)*a) != rl_to_lower((unsigned char)*b)) return 0;
    return *a == *b;
}

static int tls_same(const rl_tls_opts *a, const rl_tls_opts *b)
{
    return a->cert_reqs == b->cert_reqs && a->check_hostname == b->check_hostname &&
           str_eq(a->ca_certs, b->ca_certs) && str_eq(a->ca_path, b->ca_path) &&
           str_eq(a->certfile, b->certfile) && str_eq(a->keyfile, b->keyfile);
}

int rl_url_same_endpoint(const rl_url *a, const rl_url *b)
{
    if (!a || !b) return 0;
    if (a->kind != b->kind || a->tls != b->tls || a->db != b->db) return 0;
    if (a->kind == RL_URL_TCP) {
        if (a->port != b->port || !str_eq_ci(a->host, b->host)) return 0;
    } else if (a->kind == RL_URL_SENTINEL) {
        if (a->nsentinels != b->nsentinels || !str_eq(a->service_name, b->service_name) ||
            !str_eq(a->sentinel_user, b->sentinel_user) || !str_eq(a->sentinel_password, b->sentinel_password))
            return 0;
        for (int i = 0; i < a->nsentinels; i++)
            if (a->sentinels[i].port != b->sentinels[i].port ||
                !str_eq_ci(a->sentinels[i].host, b->sentinels[i].host))
                return 0;
    } else {
        if (!str_eq(a->path, b->path)) return 0;
    }
    if (a->tls && !tls_same(&a->tls_opts, &b->tls_opts)) return 0;
    return str_eq(a->user, b->user) && str_eq(a->password, b->password) &&
           str_eq(a->client_name, b->client_name);
}

/* ------------------------------------------------------------------ */
/* Copy                                                                */

static int dup_into(char **dst, const char *src)
{
    *dst = NULL;
    if (!src) return 0;
    *dst = strdup(src);
    return *dst ? 0 : -1;
}

int rl_url_copy(rl_url *dst, const rl_url *src)
{
    memset(dst, 0, sizeof *dst);
    if (!src) return -1;
    rl_url tmp = *src;
    tmp.sentinels = NULL;
    tmp.nsentinels = 0;
    int bad = dup_into(&tmp.host, src->host) | dup_into(&tmp.path, src->path) |
              dup_into(&tmp.user, src->user) | dup_into(&tmp.password, src->password) |
              dup_into(&tmp.tls_opts.ca_certs, src->tls_opts.ca_certs) |
              dup_into(&tmp.tls_opts.ca_path, src->tls_opts.ca_path) |
              dup_into(&tmp.tls_opts.certfile, src->tls_opts.certfile) |
              dup_into(&tmp.tls_opts.keyfile, src->tls_opts.keyfile) |
              dup_into(&tmp.client_name, src->client_name) |
              dup_into(&tmp.service_name, src->service_name) |
              dup_into(&tmp.sentinel_user, src->sentinel_user) |
              dup_into(&tmp.sentinel_password, src->sentinel_password);
    if (!bad && src->nsentinels > 0 && src->sentinels) {
        tmp.sentinels = calloc((size_t)src->nsentinels, sizeof *tmp.sentinels);
        if (!tmp.sentinels) {
            bad = 1;
        } else {
            tmp.nsentinels = src->nsentinels;
            for (int i = 0; i < src->nsentinels; i++) {
                tmp.sentinels[i].port = src->sentinels[i].port;
                bad |= dup_into(&tmp.sentinels[i].host, src->sentinels[i].host);
            }
        }
    }
    if (bad) {
        rl_url_free(&tmp);
        return -1;
    }
    *dst = tmp;
    return 0;
}
