/* Shared by the two halves of the connection layer: rl_conn.c (socket,
 * resolve, connect, I/O, reply dispatch) and rl_conn_hs.c (the Redis
 * handshake: AUTH, CLIENT SETNAME, SELECT, SCRIPT LOAD). */
#ifndef RL_CONN_INT_H
#define RL_CONN_INT_H

#include "rl_conn.h"

/* rl_conn.c */
void rl_conn_fail(rl_conn *c, const char *why, int fatal_kind);
void rl_conn_ready(rl_conn *c);
/* Queues a command without counting it as pending (counted = 0). */
int rl_conn_queue(rl_conn *c, rl_reply_fn *fn, void *priv, int counted,
                  int argc, const char **argv, const size_t *lens);

/* rl_conn_hs.c: queue the handshake commands (state is HANDSHAKE). */
void rl_conn_start_handshake(rl_conn *c);

#endif
