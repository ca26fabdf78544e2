/* One connection to a Redis server on a socket the engine owns: resolve
 * (on every attempt), connect under poll, run the stream's handshake
 * (plain or TLS), then AUTH, CLIENT SETNAME, SELECT, SCRIPT LOAD; reconnect
 * with backoff; drop the connection when replies stall past the command
 * timeout so that every pending callback sees a NULL reply.  hiredis only
 * parses replies (redisReader) and formats commands here.
 *
 * The connection knows nothing of its owner: what it needs comes in an
 * rl_conn_cfg, what it has to say goes out through an rl_conn_cbs table. */
#ifndef RL_CONN_H
#define RL_CONN_H

#include "rl_reply.h"   /* rl_reply_errkind, for the layers above */
#include "rl_types.h"

void rl_conn_init(rl_conn *c, rl_engine *eng, const rl_conn_cfg *cfg,
                  const rl_conn_cbs *cbs, void *owner);
void rl_conn_connect(rl_conn *c);              /* start now (from DOWN) */
/* Queues one command; fn(reply, priv) runs once with its reply (or NULL).
 * fn may be NULL on a subscriber: the reply goes to cbs->message.
 * -1 if the connection cannot take it. */
int rl_conn_send(rl_conn *c, rl_reply_fn *fn, void *priv,
                 int argc, const char **argv, const size_t *lens);
/* Close now and plan a reconnect; pending callbacks get NULL. */
void rl_conn_drop(rl_conn *c, const char *why);
/* Owner teardown (or idle): close, no reconnect, no down callback.  The
 * connection may be connected again later with rl_conn_connect. */
void rl_conn_close(rl_conn *c);
void rl_conn_free(rl_conn *c);                 /* close and free its buffers */
void rl_conn_handle(rl_conn *c, short revents); /* poll said the fd is ready */
/* Before polling: write what is queued, read what the stream buffered. */
void rl_conn_flush(rl_conn *c);

#endif
