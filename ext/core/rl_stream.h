/* rl_stream.h - a byte stream over a connected non-blocking socket, plain or
 * TLS, behind one table of operations.  The connection layer (rl_conn.c)
 * owns the socket and the stream; it feeds what it reads to hiredis's reply
 * reader and writes what hiredis's command formatter produced.
 *
 * Every operation is non-blocking.  When one cannot make progress it
 * returns with *want set to the poll events (POLLIN and/or POLLOUT) to wait
 * for; a TLS read may want POLLOUT and a TLS write POLLIN.  Errors fill err
 * with one line that names what failed (for TLS, OpenSSL's reason). */
#ifndef RL_STREAM_H
#define RL_STREAM_H

#include <stddef.h>

typedef struct rl_stream rl_stream;

typedef struct rl_stream_ops {
    /* 1: ready for data.  0: in progress, poll for *want.  -1: failed;
     * *permanent = 1 when trying again cannot help (certificate refused,
     * wrong host name, not a TLS server), 0 for I/O errors. */
    int (*handshake)(rl_stream *s, short *want, int *permanent, char *err, size_t errlen);
    /* > 0: bytes read.  0: the peer closed.  -1: *want != 0 means "would
     * block, poll for *want"; *want == 0 means failed (err says why). */
    long (*read)(rl_stream *s, char *buf, size_t n, short *want, char *err, size_t errlen);
    /* > 0: bytes written.  -1: as for read. */
    long (*write)(rl_stream *s, const char *buf, size_t n, short *want, char *err, size_t errlen);
    /* 1 if bytes are buffered inside the stream (decrypted TLS records)
     * that poll will not report: call read again before polling. */
    int (*pending)(const rl_stream *s);
    /* Frees the stream; never closes the fd (its owner does). */
    void (*free)(rl_stream *s);
} rl_stream_ops;

struct rl_stream {
    const rl_stream_ops *ops;
    int fd;
};

/* A plain stream on fd (rl_stream_plain.c); NULL when out of memory. */
rl_stream *rl_stream_plain(int fd);

#endif
