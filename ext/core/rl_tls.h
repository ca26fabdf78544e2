/* rl_tls.h - TLS streams with OpenSSL (rl_tls.c), for rediss:// URLs.
 *
 * One rl_tls_ctx per endpoint holds the SSL_CTX with the CA and client
 * certificate loaded from the URL's ssl_* parameters; each connection makes
 * an rl_stream from it over a connected non-blocking socket.  Works the same
 * with hiredis 0.14 and 1.x: hiredis only parses and formats RESP here. */
#ifndef RL_TLS_H
#define RL_TLS_H

#include <stddef.h>

#include "rl_stream.h"
#include "rl_url.h"

typedef struct rl_tls_ctx rl_tls_ctx;

/* NULL on failure: err names the parameter and file that could not be
 * used and how to fix it (e.g. "ssl_ca_certs: cannot read '/x.pem': No such
 * file or directory"). */
rl_tls_ctx *rl_tls_ctx_new(const rl_tls_opts *o, char *err, size_t errlen);
void rl_tls_ctx_free(rl_tls_ctx *ctx);

/* A client TLS stream on a connected socket.  host is the URL's host name:
 * sent as SNI unless it is an IP literal, and checked against the server's
 * certificate when the options ask for it.  NULL on failure (err filled). */
rl_stream *rl_tls_stream_new(rl_tls_ctx *ctx, int fd, const char *host, char *err, size_t errlen);

#endif
