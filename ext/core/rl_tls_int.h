/* rl_tls_int.h - private to rl_tls.c and rl_tls_stream.c. */
#ifndef RL_TLS_INT_H
#define RL_TLS_INT_H

#include <stdatomic.h>
#include <stddef.h>

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include "rl_tls.h"

struct rl_tls_ctx {
    atomic_int refs;
    SSL_CTX *ctx;
    BIO_METHOD *bio;       /* send/recv with MSG_NOSIGNAL; outlives every stream (they hold a ref) */
    int cert_reqs;         /* RL_TLS_REQ_* */
    int check_hostname;
    char ca_hint[360];     /* what to check when verification fails */
};

typedef struct rl_tls_stream {
    rl_stream base;        /* first: an rl_stream * is an rl_tls_stream * */
    rl_tls_ctx *ctx;       /* one reference */
    SSL *ssl;
    int is_ip;
    int received;          /* some byte came from the server */
    int eof;               /* recv returned 0 */
    int sys_errno;         /* last errno of a failed send/recv */
    int app_read;          /* some application data was read */
    int cert_requested;    /* the server sent a CertificateRequest */
    int confirm;           /* TLS 1.3 + client certificate: the PING round trip is under way */
    size_t confirm_sent, confirm_got;
    int refused;           /* last read/write failure: the client certificate was refused */
    char host[256];
    char peer_names[200];  /* what the server's certificate is for (seen while verifying) */
} rl_tls_stream;

/* The verify callback: keeps the verdict, notes the server certificate's names. */
int rl_tls_verify_cb(int ok, X509_STORE_CTX *store);

/* OpenSSL's reason for the last error on this thread's queue. */
void rl_tls_reason(char *buf, size_t n);

#endif
