/* rl_tls.h - TLS streams with OpenSSL (rl_tls.c), for rediss:// URLs.
 *
 * One rl_tls_ctx holds the SSL_CTX with the CA and client certificate
 * loaded from the URL's ssl_* parameters.  It is made on the API thread
 * when a lease is created (so a bad file is a ValueError there), and is
 * reference counted: the endpoint that the lease attaches to takes a
 * reference (rl_tls_ctx_ref) and drops it with rl_tls_ctx_free, as does the
 * lease.  Each connection makes an rl_stream from it over a connected
 * non-blocking socket.  Works the same with hiredis 0.14 and 1.x: hiredis
 * only parses and formats RESP here.  No global state: the BIO method that
 * writes with MSG_NOSIGNAL belongs to the context.
 *
 * Stream notes for the connection layer:
 * - handshake: *permanent = 1 for every TLS protocol failure (verification,
 *   host name, protocol version, not a TLS server, a refused client
 *   certificate); 0 for I/O errors and an EOF in the middle (server
 *   restart).
 * - read/write: a -1 with *want == 0 may be permanent as well: with TLS 1.3
 *   the server refuses a missing or unknown client certificate only after
 *   the client finished its handshake, so the refusal arrives at the first
 *   read.  rl_tls_stream_refused(s) then returns 1 (err says "the server
 *   refused the client certificate ...").
 * - write: a write that returned -1 with *want != 0 must be repeated with
 *   at least the same bytes (the buffer may move: SSL_MODE_ACCEPT_MOVING_
 *   WRITE_BUFFER); writes may be partial (SSL_MODE_ENABLE_PARTIAL_WRITE).
 * - read returns 0 when the server closed (close_notify or a bare EOF).
 * - rl_tls_stream_no_answer: after a handshake timed out, says whether the
 *   server sent nothing at all (a plain Redis port waits for a newline that
 *   a ClientHello may never contain), with a message that says so. */
#ifndef RL_TLS_H
#define RL_TLS_H

#include <stddef.h>

#include "rl_stream.h"
#include "rl_url.h"

typedef struct rl_tls_ctx rl_tls_ctx;

/* NULL on failure: err names the parameter and file that could not be
 * used and how to fix it (e.g. "ssl_ca_certs: cannot read '/x.pem': No such
 * file or directory").  The new context holds one reference. */
rl_tls_ctx *rl_tls_ctx_new(const rl_tls_opts *o, char *err, size_t errlen);
/* Takes one more reference (any thread); returns ctx.  NULL-safe. */
rl_tls_ctx *rl_tls_ctx_ref(rl_tls_ctx *ctx);
/* Drops one reference; the last one frees the context.  NULL-safe. */
void rl_tls_ctx_free(rl_tls_ctx *ctx);

/* A client TLS stream on a connected socket.  host is the URL's host name:
 * sent as SNI unless it is an IP literal, and checked against the server's
 * certificate when the options ask for it.  NULL on failure (err filled).
 * The stream keeps its own reference to the SSL_CTX. */
rl_stream *rl_tls_stream_new(rl_tls_ctx *ctx, int fd, const char *host, char *err, size_t errlen);

/* 1 if s is a TLS stream whose last failed read or write was the server
 * refusing the client certificate (permanent, like a handshake with
 * *permanent = 1); 0 otherwise, also for plain streams. */
int rl_tls_stream_refused(const rl_stream *s);

/* 1 if s is a TLS stream that has not received one byte from the server;
 * then err says the port may not speak TLS.  0 otherwise (plain streams
 * too).  For a handshake that timed out. */
int rl_tls_stream_no_answer(const rl_stream *s, char *err, size_t errlen);

#endif
