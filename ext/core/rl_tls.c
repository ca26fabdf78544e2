/* rl_tls.c - OpenSSL client contexts (see rl_tls.h); the streams are in
 * rl_tls_stream.c.  Pure C11, OpenSSL 3 (initialises itself). */
#include "rl_tls_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/x509.h>

/* ---- the BIO: send/recv with MSG_NOSIGNAL on the stream's fd ---- */

static int bio_write(BIO *b, const char *buf, int n)
{
    rl_tls_stream *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (!t || n < 0)
        return -1;
    for (;;) {
        ssize_t w = send(t->base.fd, buf, (size_t)n, MSG_NOSIGNAL);
        if (w >= 0)
            return (int)w;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            BIO_set_retry_write(b);
        else
            t->sys_errno = errno;
        return -1;
    }
}

static int bio_read(BIO *b, char *buf, int n)
{
    rl_tls_stream *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (!t || n < 0)
        return -1;
    for (;;) {
        ssize_t r = recv(t->base.fd, buf, (size_t)n, 0);
        if (r > 0) {
            t->received = 1;
            return (int)r;
        }
        if (r == 0) {
            t->eof = 1;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            BIO_set_retry_read(b);
        else
            t->sys_errno = errno;
        return -1;
    }
}

static int bio_puts(BIO *b, const char *s)
{
    size_t n = strlen(s);
    return bio_write(b, s, n > 0x7fffffff ? 0x7fffffff : (int)n);
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF: {
        rl_tls_stream *t = BIO_get_data(b);
        return t ? t->eof : 1;
    }
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_data(b, NULL);
    BIO_set_init(b, 1);
    return 1;
}

static int bio_destroy(BIO *b)
{
    if (!b)
        return 0;
    BIO_set_data(b, NULL);     /* the fd is the connection's to close */
    BIO_set_init(b, 0);
    return 1;
}

static BIO_METHOD *bio_method_new(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "redlease socket");
    if (!m)
        return NULL;
    if (!BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read) ||
        !BIO_meth_set_puts(m, bio_puts) || !BIO_meth_set_ctrl(m, bio_ctrl) ||
        !BIO_meth_set_create(m, bio_create) || !BIO_meth_set_destroy(m, bio_destroy)) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

/* ---- OpenSSL's reason, for messages ---- */

void rl_tls_reason(char *buf, size_t n)
{
    unsigned long e = ERR_peek_last_error();
    if (n == 0)
        return;
    if (e == 0) {
        snprintf(buf, n, "no reason given");
        return;
    }
    const char *r = ERR_reason_error_string(e);
    if (r)
        snprintf(buf, n, "%s", r);
    else
        ERR_error_string_n(e, buf, n);
}

/* ---- contexts ---- */

/* Never prompt on the terminal for a key's pass phrase. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf; (void)size; (void)rwflag; (void)u;
    return 0;
}

static int check_file(const char *param, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot read '%s': %s; give the path of a readable PEM file",
                 param, path, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

static int check_dir(const char *param, const char *path, char *err, size_t errlen)
{
    DIR *d = opendir(path);
    if (!d) {
        snprintf(err, errlen, "%s: cannot read the directory '%s': %s; give a directory of "
                 "hashed CA certificates (c_rehash) or use ssl_ca_certs for a PEM file",
                 param, path, strerror(errno));
        return -1;
    }
    closedir(d);
    return 0;
}

static int load_ca(rl_tls_ctx *c, const rl_tls_opts *o, char *err, size_t errlen)
{
    char why[200];
    if (!o->ca_certs && !o->ca_path) {
        if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
            rl_tls_reason(why, sizeof why);
            snprintf(err, errlen, "cannot load the system's default CA certificates (%s); "
                     "give ssl_ca_certs", why);
            return -1;
        }
        return 0;
    }
    if (o->ca_certs && check_file("ssl_ca_certs", o->ca_certs, err, errlen) < 0)
        return -1;
    if (o->ca_path && check_dir("ssl_ca_path", o->ca_path, err, errlen) < 0)
        return -1;
    if (o->ca_certs && SSL_CTX_load_verify_locations(c->ctx, o->ca_certs, NULL) != 1) {
        rl_tls_reason(why, sizeof why);
        snprintf(err, errlen, "ssl_ca_certs: '%s' holds no usable PEM certificate (%s); "
                 "give the CA certificate(s) in PEM form", o->ca_certs, why);
        return -1;
    }
    if (o->ca_path && SSL_CTX_load_verify_locations(c->ctx, NULL, o->ca_path) != 1) {
        rl_tls_reason(why, sizeof why);
        snprintf(err, errlen, "ssl_ca_path: cannot use '%s' (%s)", o->ca_path, why);
        return -1;
    }
    return 0;
}

static int load_client_cert(rl_tls_ctx *c, const rl_tls_opts *o, char *err, size_t errlen)
{
    char why[200];
    if (!o->certfile) {
        if (o->keyfile) {
            snprintf(err, errlen, "ssl_keyfile is given without ssl_certfile; give the client "
                     "certificate as ssl_certfile too");
            return -1;
        }
        return 0;
    }
    const char *key = o->keyfile ? o->keyfile : o->certfile;
    const char *keyparam = o->keyfile ? "ssl_keyfile" : "ssl_certfile (holding the key too)";
    if (check_file("ssl_certfile", o->certfile, err, errlen) < 0 ||
        (o->keyfile && check_file("ssl_keyfile", o->keyfile, err, errlen) < 0))
        return -1;
    if (SSL_CTX_use_certificate_chain_file(c->ctx, o->certfile) != 1) {
        rl_tls_reason(why, sizeof why);
        snprintf(err, errlen, "ssl_certfile: cannot load a certificate from '%s' (%s); give the "
                 "client certificate in PEM form", o->certfile, why);
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = ERR_peek_last_error();
        rl_tls_reason(why, sizeof why);
        if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
            snprintf(err, errlen, "%s: the key in '%s' does not match the certificate in '%s' (%s); "
                     "give the key of that certificate", keyparam, key, o->certfile, why);
            return -1;
        }
        snprintf(err, errlen, "%s: cannot load a private key from '%s' (%s); give an unencrypted "
                 "PEM key (pass-phrase protected keys are not supported)", keyparam, key, why);
        return -1;
    }
    if (SSL_CTX_check_private_key(c->ctx) != 1) {
        rl_tls_reason(why, sizeof why);
        snprintf(err, errlen, "%s: the key in '%s' does not match the certificate in '%s' (%s); "
                 "give the key of that certificate", keyparam, key, o->certfile, why);
        return -1;
    }
    return 0;
}

rl_tls_ctx *rl_tls_ctx_new(const rl_tls_opts *o, char *err, size_t errlen)
{
    char why[200];
    if (err && errlen)
        err[0] = 0;
    if (!o || !err || errlen == 0) {
        if (err && errlen)
            snprintf(err, errlen, "internal error: rl_tls_ctx_new without options");
        return NULL;
    }
    ERR_clear_error();
    rl_tls_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&c->refs, 1);
    c->cert_reqs = o->cert_reqs;
    c->check_hostname = o->check_hostname && o->cert_reqs != RL_TLS_REQ_NONE;
    if (o->ca_certs)
        snprintf(c->ca_hint, sizeof c->ca_hint, "check ssl_ca_certs ('%s'): it must hold the CA "
                 "that signed the server's certificate", o->ca_certs);
    else if (o->ca_path)
        snprintf(c->ca_hint, sizeof c->ca_hint, "check ssl_ca_path ('%s'): it must hold the CA "
                 "that signed the server's certificate", o->ca_path);
    else
        snprintf(c->ca_hint, sizeof c->ca_hint, "the system's CA certificates were used: give "
                 "the server's CA with ssl_ca_certs");
    c->ctx = SSL_CTX_new(TLS_client_method());
    c->bio = bio_method_new();
    if (!c->ctx || !c->bio) {
        rl_tls_reason(why, sizeof why);
        snprintf(err, errlen, "cannot make a TLS context (%s)", why);
        goto fail;
    }
    if (SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION) != 1) {
        rl_tls_reason(why, sizeof why);
        snprintf(err, errlen, "cannot set the TLS version (%s)", why);
        goto fail;
    }
    SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_default_passwd_cb(c->ctx, no_passphrase);
    /* ssl's CERT_OPTIONAL on a client verifies whatever the server sends
     * (and a server always sends a chain): the same as CERT_REQUIRED. */
    SSL_CTX_set_verify(c->ctx, c->cert_reqs == RL_TLS_REQ_NONE ? SSL_VERIFY_NONE : SSL_VERIFY_PEER,
                       rl_tls_verify_cb);
    if (c->cert_reqs != RL_TLS_REQ_NONE && load_ca(c, o, err, errlen) < 0)
        goto fail;
    if (c->cert_reqs == RL_TLS_REQ_NONE && (o->ca_certs || o->ca_path)) {
        /* Not used for verification, but a bad path is still a mistake to report. */
        if ((o->ca_certs && check_file("ssl_ca_certs", o->ca_certs, err, errlen) < 0) ||
            (o->ca_path && check_dir("ssl_ca_path", o->ca_path, err, errlen) < 0))
            goto fail;
    }
    if (load_client_cert(c, o, err, errlen) < 0)
        goto fail;
    ERR_clear_error();
    return c;
fail:
    ERR_clear_error();
    SSL_CTX_free(c->ctx);
    if (c->bio)
        BIO_meth_free(c->bio);
    free(c);
    return NULL;
}

rl_tls_ctx *rl_tls_ctx_ref(rl_tls_ctx *ctx)
{
    if (ctx)
        atomic_fetch_add(&ctx->refs, 1);
    return ctx;
}

void rl_tls_ctx_free(rl_tls_ctx *ctx)
{
    if (!ctx || atomic_fetch_sub(&ctx->refs, 1) != 1)
        return;
    SSL_CTX_free(ctx->ctx);
    BIO_meth_free(ctx->bio);
    free(ctx);
}
