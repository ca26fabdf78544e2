/* rl_tls_stream.c - non-blocking OpenSSL client streams (see rl_tls.h). */
#include "rl_tls_int.h"

#include <arpa/inet.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define NOT_TLS_FIX "this port does not speak TLS: use redis:// or the server's tls-port"
#define CERT_FIX "give ssl_certfile (and ssl_keyfile) with a client certificate signed by a CA " \
                 "the server trusts (its tls-ca-cert-file)"

static const rl_stream_ops tls_ops;

/* ---- host names ---- */

/* Copies host without an IPv6 zone ("fe80::1%eth0" -> "fe80::1") and
 * says whether it is an IP literal. */
static int ip_literal(const char *host, char *plain, size_t n)
{
    unsigned char addr[16];
    snprintf(plain, n, "%s", host);
    char *pct = strchr(plain, '%');
    if (pct && strchr(plain, ':'))
        *pct = 0;
    return inet_pton(AF_INET, plain, addr) == 1 || inet_pton(AF_INET6, plain, addr) == 1;
}

/* The names a certificate is for: its DNS and IP subjectAltNames, else its
 * common name. */
static void cert_names(X509 *cert, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = 0;
    if (!cert) {
        snprintf(buf, n, "(no certificate)");
        return;
    }
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    int count = names ? sk_GENERAL_NAME_num(names) : 0;
    for (int i = 0; i < count && used + 1 < n; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        char one[INET6_ADDRSTRLEN + 8];
        one[0] = 0;
        if (g->type == GEN_DNS) {
            const unsigned char *d = ASN1_STRING_get0_data(g->d.dNSName);
            int len = ASN1_STRING_length(g->d.dNSName);
            snprintf(one, sizeof one, "%.*s", len > 40 ? 40 : len, (const char *)d);
        } else if (g->type == GEN_IPADD) {
            const unsigned char *d = ASN1_STRING_get0_data(g->d.iPAddress);
            int len = ASN1_STRING_length(g->d.iPAddress);
            if (len == 4 || len == 16)
                inet_ntop(len == 4 ? AF_INET : AF_INET6, d, one, sizeof one);
        }
        if (one[0]) {
            int w = snprintf(buf + used, n - used, "%s'%s'", used ? ", " : "", one);
            if (w > 0)
                used += (size_t)w < n - used ? (size_t)w : n - used - 1;
        }
    }
    GENERAL_NAMES_free(names);
    if (used == 0) {
        char cn[128];
        X509_NAME *subj = X509_get_subject_name(cert);
        if (subj && X509_NAME_get_text_by_NID(subj, NID_commonName, cn, sizeof cn) > 0)
            snprintf(buf, n, "'%s'", cn);
        else
            snprintf(buf, n, "(no name)");
    }
}

int rl_tls_verify_cb(int ok, X509_STORE_CTX *store)
{
    if (X509_STORE_CTX_get_error_depth(store) != 0)
        return ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    rl_tls_stream *t = ssl ? SSL_get_app_data(ssl) : NULL;
    if (t)
        cert_names(X509_STORE_CTX_get_current_cert(store), t->peer_names, sizeof t->peer_names);
    return ok;
}

/* ---- classifying OpenSSL's errors ---- */

static int reason_not_tls(int r)
{
    return r == SSL_R_WRONG_VERSION_NUMBER || r == SSL_R_PACKET_LENGTH_TOO_LONG ||
           r == SSL_R_HTTP_REQUEST || r == SSL_R_RECORD_LENGTH_MISMATCH ||
           r == SSL_R_UNEXPECTED_RECORD || r == SSL_R_UNEXPECTED_MESSAGE;
}

/* Alerts by which a server says it did not accept our certificate. */
static int reason_cert_refused(int r)
{
    return r == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED || r == SSL_R_SSLV3_ALERT_BAD_CERTIFICATE ||
           r == SSL_R_TLSV1_ALERT_UNKNOWN_CA || r == SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN ||
           r == SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED || r == SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED ||
           r == SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE || r == SSL_R_TLSV1_ALERT_ACCESS_DENIED;
}

static int reason_version(int r)
{
    return r == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION || r == SSL_R_UNSUPPORTED_PROTOCOL ||
           r == SSL_R_NO_PROTOCOLS_AVAILABLE;
}

static int last_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    return e ? ERR_GET_REASON(e) : 0;
}

static void io_message(const rl_tls_stream *t, const char *during, char *err, size_t errlen)
{
    int hs = strcmp(during, "handshake") == 0;   /* the connection layer names the host */
    if (t->sys_errno && hs)
        snprintf(err, errlen, "%s", strerror(t->sys_errno));
    else if (t->sys_errno)
        snprintf(err, errlen, "TLS %s with %s failed: %s", during, t->host, strerror(t->sys_errno));
    else if (hs)
        snprintf(err, errlen, "the server closed the connection during the TLS handshake");
    else
        snprintf(err, errlen, "the server %s closed the connection during a TLS %s", t->host, during);
}

/* A failed SSL_connect (SSL_ERROR_SSL): fills err; 1 if permanent. */
static int handshake_failure(rl_tls_stream *t, char *err, size_t errlen)
{
    char why[200];
    int reason = last_reason();
    rl_tls_reason(why, sizeof why);
    long vr = SSL_get_verify_result(t->ssl);
    if (t->ctx->cert_reqs != RL_TLS_REQ_NONE && vr != X509_V_OK) {
        if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH) {
            snprintf(err, errlen, "certificate verify failed: the server's certificate is for %s, "
                     "not '%s'; connect with a name the certificate holds, or give "
                     "ssl_check_hostname=false to skip the name check",
                     t->peer_names[0] ? t->peer_names : "other names", t->host);
        } else {
            snprintf(err, errlen, "certificate verify failed: %s; %s (or ssl_cert_reqs=none to "
                     "skip verification)", X509_verify_cert_error_string(vr), t->ctx->ca_hint);
        }
        return 1;
    }
    if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        t->sys_errno = 0;
        io_message(t, "handshake", err, errlen);
        return 0;
    }
    if (reason_not_tls(reason)) {
        snprintf(err, errlen, "%s: " NOT_TLS_FIX, why);
        return 1;
    }
    if (reason_cert_refused(reason)) {
        t->refused = 1;
        snprintf(err, errlen, "the server refused the client certificate (%s); " CERT_FIX, why);
        return 1;
    }
    if (reason_version(reason)) {
        snprintf(err, errlen, "%s: the server and redlease share no TLS version (redlease "
                 "needs TLS 1.2 or later)", why);
        return 1;
    }
    snprintf(err, errlen, "%s", why);
    return 1;
}


/* A failed SSL_read_ex/SSL_write_ex: 0 = would block (*want set),
 * 1 = the peer closed (reads), -1 = failed (err filled). */
static int io_failure(rl_tls_stream *t, int e, const char *what, short *want, char *err, size_t errlen)
{
    char why[200];
    switch (e) {
    case SSL_ERROR_WANT_READ:
        *want = POLLIN;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        *want = POLLOUT;
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        return 1;
    case SSL_ERROR_SSL: {
        int reason = last_reason();
        if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)
            return 1;
        rl_tls_reason(why, sizeof why);
        char where[300] = "";    /* a handshake's messages get the host from the connection layer */
        if (strcmp(what, "handshake") != 0)
            snprintf(where, sizeof where, "TLS %s from %s failed: ", what, t->host);
        if (reason_cert_refused(reason)) {
            t->refused = 1;
            snprintf(err, errlen, "%sthe server refused the client certificate (%s); " CERT_FIX, where, why);
        } else {
            snprintf(err, errlen, "%s%s", where, why);
        }
        return -1;
    }
    default:
        if (!t->sys_errno && t->eof)
            return 1;
        io_message(t, what, err, errlen);
        return -1;
    }
}

/* A write failed (reset, closed) before any reply came: with TLS 1.3 a
 * server that refuses our certificate sends its alert right after our
 * Finished and closes, and the write may hit the reset first.  The alert is
 * still in the socket's receive queue (Linux returns queued data before the
 * error): read it to report the refusal rather than a bare reset. */
static void refusal_probe(rl_tls_stream *t, const char *what, char *err, size_t errlen)
{
    char scratch[512];
    size_t got = 0;
    short want = 0;
    ERR_clear_error();
    int rc = SSL_read_ex(t->ssl, scratch, sizeof scratch, &got);
    if (rc != 1) {
        char probe[400];
        io_failure(t, SSL_get_error(t->ssl, rc), what, &want, probe, sizeof probe);
        if (t->refused)
            snprintf(err, errlen, "%s", probe);
    }
}

/* ---- TLS 1.3 with a client certificate: the server's verdict ----
 *
 * With TLS 1.3 the client finishes its handshake before the server has
 * checked the client certificate; a server that refuses it says so in an
 * alert after that.  So when the server asked for a certificate, the
 * handshake goes on with one PING: any reply line ("+PONG", "-NOAUTH ...")
 * means the server took the certificate; an alert is a refusal (permanent),
 * and the refusal is reported by the handshake, as for TLS 1.2.  The reply
 * is consumed here; the connection layer never sees it. */

#define CONFIRM_PING "*1\r\n$4\r\nPING\r\n"

static void on_message(int write_p, int version, int content_type, const void *buf, size_t len,
                       SSL *ssl, void *arg)
{
    (void)version;
    (void)arg;
    rl_tls_stream *t = SSL_get_app_data(ssl);
    if (t && !write_p && content_type == SSL3_RT_HANDSHAKE && len > 0 &&
        ((const unsigned char *)buf)[0] == SSL3_MT_CERTIFICATE_REQUEST)
        t->cert_requested = 1;
}

static int confirm_step(rl_tls_stream *t, short *want, int *permanent, char *err, size_t errlen)
{
    const size_t plen = sizeof CONFIRM_PING - 1;
    int result = 0;
    ERR_clear_error();
    while (t->confirm_sent < plen) {
        size_t put = 0;
        int rc = SSL_write_ex(t->ssl, CONFIRM_PING + t->confirm_sent, plen - t->confirm_sent, &put);
        if (rc == 1) {
            t->confirm_sent += put;
            continue;
        }
        int f = io_failure(t, SSL_get_error(t->ssl, rc), "handshake", want, err, errlen);
        if (f == 0)
            goto out;
        if (f == 1)
            io_message(t, "handshake", err, errlen);
        if (!t->refused)
            refusal_probe(t, "handshake", err, errlen);
        *permanent = t->refused;
        result = -1;
        goto out;
    }
    for (;;) {
        char ch;
        size_t got = 0;
        int rc = SSL_read_ex(t->ssl, &ch, 1, &got);
        if (rc == 1 && got == 1) {
            if (ch == '\n') {
                t->confirm = 0;
                result = 1;
                goto out;
            }
            if (++t->confirm_got > 4096) {
                snprintf(err, errlen, "TLS handshake with %s: no Redis reply to PING", t->host);
                result = -1;
                goto out;
            }
            continue;
        }
        int f = io_failure(t, SSL_get_error(t->ssl, rc), "handshake", want, err, errlen);
        if (f == 0)
            goto out;
        if (f == 1) {
            t->sys_errno = 0;
            io_message(t, "handshake", err, errlen);
        }
        *permanent = t->refused;
        result = -1;
        goto out;
    }
out:
    ERR_clear_error();
    return result;
}

static int tls_handshake(rl_stream *s, short *want, int *permanent, char *err, size_t errlen)
{
    rl_tls_stream *t = (rl_tls_stream *)s;
    *want = 0;
    *permanent = 0;
    t->sys_errno = 0;
    if (t->confirm)
        return confirm_step(t, want, permanent, err, errlen);
    ERR_clear_error();
    int rc = SSL_connect(t->ssl);
    if (rc == 1) {
        ERR_clear_error();
        if (t->cert_requested && SSL_version(t->ssl) >= TLS1_3_VERSION) {
            t->confirm = 1;
            return confirm_step(t, want, permanent, err, errlen);
        }
        return 1;
    }
    int e = SSL_get_error(t->ssl, rc);
    int result = -1;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        *want = POLLIN;
        result = 0;
        break;
    case SSL_ERROR_WANT_WRITE:
        *want = POLLOUT;
        result = 0;
        break;
    case SSL_ERROR_SSL:
        *permanent = handshake_failure(t, err, errlen);
        break;
    case SSL_ERROR_ZERO_RETURN:
        t->sys_errno = 0;
        io_message(t, "handshake", err, errlen);
        break;
    default:   /* SSL_ERROR_SYSCALL and anything unexpected */
        io_message(t, "handshake", err, errlen);
        break;
    }
    ERR_clear_error();
    return result;
}

/* ---- the operations ---- */

static long tls_read(rl_stream *s, char *buf, size_t n, short *want, char *err, size_t errlen)
{
    rl_tls_stream *t = (rl_tls_stream *)s;
    size_t got = 0;
    *want = 0;
    t->sys_errno = 0;
    t->refused = 0;
    if (n > LONG_MAX)
        n = LONG_MAX;
    ERR_clear_error();
    int rc = SSL_read_ex(t->ssl, buf, n, &got);
    long result = (long)got;
    if (rc == 1 && got > 0)
        t->app_read = 1;
    if (rc != 1) {
        int f = io_failure(t, SSL_get_error(t->ssl, rc), "read", want, err, errlen);
        result = f == 1 ? 0 : -1;
    }
    ERR_clear_error();
    return result;
}

static long tls_write(rl_stream *s, const char *buf, size_t n, short *want, char *err, size_t errlen)
{
    rl_tls_stream *t = (rl_tls_stream *)s;
    size_t put = 0;
    *want = 0;
    t->sys_errno = 0;
    t->refused = 0;
    if (n > LONG_MAX)
        n = LONG_MAX;
    if (n == 0)
        return 0;
    ERR_clear_error();
    int rc = SSL_write_ex(t->ssl, buf, n, &put);
    long result = (long)put;
    if (rc != 1) {
        int e = SSL_get_error(t->ssl, rc);
        int f = io_failure(t, e, "write", want, err, errlen);
        if (f == 1) {
            t->sys_errno = 0;
            io_message(t, "write", err, errlen);
        }
        if (f != 0 && !t->refused && !t->app_read)
            refusal_probe(t, "read", err, errlen);
        result = -1;
    }
    ERR_clear_error();
    return result;
}

static int tls_pending(const rl_stream *s)
{
    const rl_tls_stream *t = (const rl_tls_stream *)s;
    return SSL_pending(t->ssl) > 0;
}

static void tls_free(rl_stream *s)
{
    rl_tls_stream *t = (rl_tls_stream *)s;
    if (!t)
        return;
    SSL_free(t->ssl);          /* frees the BIO too, never closes the fd */
    rl_tls_ctx_free(t->ctx);
    free(t);
}

static const rl_stream_ops tls_ops = {
    .handshake = tls_handshake,
    .read = tls_read,
    .write = tls_write,
    .pending = tls_pending,
    .free = tls_free,
};

rl_stream *rl_tls_stream_new(rl_tls_ctx *ctx, int fd, const char *host, char *err, size_t errlen)
{
    char why[200], plain[256];
    if (!ctx || fd < 0 || !host) {
        snprintf(err, errlen, "internal error: rl_tls_stream_new without a context, socket or host");
        return NULL;
    }
    if (strlen(host) >= sizeof plain) {
        snprintf(err, errlen, "TLS: host name too long (%zu bytes)", strlen(host));
        return NULL;
    }
    ERR_clear_error();
    rl_tls_stream *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->base.ops = &tls_ops;
    t->base.fd = fd;
    t->ctx = rl_tls_ctx_ref(ctx);
    snprintf(t->host, sizeof t->host, "%s", host);
    t->is_ip = ip_literal(host, plain, sizeof plain);
    t->ssl = SSL_new(ctx->ctx);
    if (t->ssl) {
        SSL_set_app_data(t->ssl, t);
        SSL_set_msg_callback(t->ssl, on_message);
    }
    BIO *bio = t->ssl ? BIO_new(ctx->bio) : NULL;
    if (!bio)
        goto fail;
    BIO_set_data(bio, t);
    SSL_set_bio(t->ssl, bio, bio);        /* the SSL owns the BIO now */
    SSL_set_connect_state(t->ssl);
    if (!t->is_ip && SSL_set_tlsext_host_name(t->ssl, host) != 1)
        goto fail;
    if (ctx->check_hostname) {
        if (t->is_ip) {
            if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), plain) != 1)
                goto fail;
        } else {
            SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if (SSL_set1_host(t->ssl, host) != 1)
                goto fail;
        }
    }
    ERR_clear_error();
    return &t->base;
fail:
    rl_tls_reason(why, sizeof why);
    snprintf(err, errlen, "cannot start TLS with %s (%s)", host, why);
    ERR_clear_error();
    SSL_free(t->ssl);
    rl_tls_ctx_free(t->ctx);
    free(t);
    return NULL;
}

int rl_tls_stream_refused(const rl_stream *s)
{
    return s && s->ops == &tls_ops && ((const rl_tls_stream *)s)->refused;
}

int rl_tls_stream_no_answer(const rl_stream *s, char *err, size_t errlen)
{
    if (!s || s->ops != &tls_ops)
        return 0;
    const rl_tls_stream *t = (const rl_tls_stream *)s;
    if (t->received)
        return 0;
    snprintf(err, errlen, "no TLS answer from %s within the connect timeout: %s", t->host,
             NOT_TLS_FIX " (or the server is overloaded)");
    return 1;
}
