/* rl_wire.h - what a connection has in flight (rl_wire.c): the output
 * buffer of formatted commands (redisFormatCommandArgv), the FIFO of reply
 * callbacks in send order, and the poll events that follow from both.
 * Knows nothing of connecting or of what replies mean. */
#ifndef RL_WIRE_H
#define RL_WIRE_H

#include "rl_types.h"

int rl_fifo_push(rl_fifo *f, rl_reply_fn *fn, void *priv, int counted);   /* -1: no memory */
rl_pend rl_fifo_pop(rl_fifo *f);                                          /* f->n > 0 */
void rl_fifo_free(rl_fifo *f);

/* Formats a command into c's output buffer and, when fn != NULL, queues
 * fn(reply, priv) for its reply.  -1 when out of memory (nothing queued). */
int rl_wire_queue(rl_conn *c, rl_reply_fn *fn, void *priv, int counted,
                  int argc, const char **argv, const size_t *lens);
/* Writes the buffer to c->stream until done or it would block.  0 (all
 * written, or blocked: c->wr_want set), -1 failed (err filled). */
int rl_wire_write(rl_conn *c, char *err, size_t errlen);
/* Recomputes c->events from the stream's wants and the buffer. */
void rl_wire_events(rl_conn *c);
void rl_wire_reset(rl_conn *c);    /* forget unsent output */
void rl_wire_free(rl_conn *c);     /* free the buffer and the FIFOs */

#endif
