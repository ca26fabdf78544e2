/* rl_reply.h - what an error reply from Redis means (rl_reply.c). */
#ifndef RL_REPLY_H
#define RL_REPLY_H

#include <stddef.h>

/* Classify an error reply: 0 transient, else an rl_errkind. */
int rl_reply_errkind(const char *s, size_t len);
int rl_reply_is_noscript(const char *s, size_t len);

#endif
