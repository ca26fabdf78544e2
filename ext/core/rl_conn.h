/* One hiredis async connection driven by the engine's poll loop: connect
 * with a timeout, handshake (AUTH, SELECT, SCRIPT LOAD), reconnect with
 * backoff, and drop the connection when replies stall past the command
 * timeout so that every pending callback sees a NULL reply. */
#ifndef RL_CONN_H
#define RL_CONN_H

#include <hiredis/async.h>

#include "rl_types.h"

void rl_conn_init(rl_conn *c, rl_endpoint *ep, int is_sub);
void rl_conn_connect(rl_conn *c);              /* start now (from DOWN) */
/* Sends one command; -1 if the connection cannot take it. */
int rl_conn_send(rl_conn *c, redisCallbackFn *fn, void *priv,
                 int argc, const char **argv, const size_t *lens);
void rl_conn_got_reply(rl_conn *c);            /* a real (non-NULL) reply came */
/* Close now, outside hiredis callbacks only; pending callbacks get NULL. */
void rl_conn_drop(rl_conn *c, const char *why);
void rl_conn_close(rl_conn *c);                /* endpoint teardown: no reconnect */
void rl_conn_handle(rl_conn *c, short revents); /* poll said the fd is ready */

/* Classify an error reply: 0 transient, else an rl_errkind. */
int rl_reply_errkind(const char *s, size_t len);
int rl_reply_is_noscript(const char *s, size_t len);

#endif
