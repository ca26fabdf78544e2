/* Placeholder until the OpenSSL streams land: every call fails clearly. */
#include "rl_tls.h"

#include <stdio.h>

rl_tls_ctx *rl_tls_ctx_new(const rl_tls_opts *o, char *err, size_t errlen)
{
    (void)o;
    snprintf(err, errlen, "rediss:// (TLS) is not supported by this build yet");
    return NULL;
}

void rl_tls_ctx_free(rl_tls_ctx *ctx)
{
    (void)ctx;
}

rl_stream *rl_tls_stream_new(rl_tls_ctx *ctx, int fd, const char *host, char *err, size_t errlen)
{
    (void)ctx; (void)fd; (void)host;
    snprintf(err, errlen, "rediss:// (TLS) is not supported by this build yet");
    return NULL;
}
