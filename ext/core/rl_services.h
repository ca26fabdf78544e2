/* Engine services, below every other layer of the core (rl_services.c):
 * randomness, the fd table, wake-ups, condition waits, active leases. */
#ifndef RL_SERVICES_H
#define RL_SERVICES_H

#include <stdint.h>

#include "rl_types.h"

/* Engine thread only. */
uint64_t rl_engine_rand(rl_engine *eng);
int64_t rl_engine_jitter(rl_engine *eng, int64_t d);   /* d .. d*1.25 */
/* A lease the engine runs (holds a reference) / no longer runs (drops it
 * through l->ops->decref). */
void rl_engine_activate(rl_engine *eng, rl_lease *l);
void rl_engine_deactivate(rl_engine *eng, rl_lease *l);

/* Any thread. */
int rl_engine_track_fd(rl_engine *eng, int fd);   /* -1: out of memory */
void rl_engine_forget_fd(rl_engine *eng, int fd);
void rl_engine_wake(rl_engine *eng);              /* the engine thread */
/* Something published changed: wake waiting threads and event loops.
 * eng->mu held. */
void rl_engine_notify(rl_engine *eng);
/* Condition waits for API threads: wait on eng->cv for at most max_us (in
 * fact at most a short slice: callers loop until their own deadline).
 * eng->mu held. */
void rl_engine_timedwait(rl_engine *eng, int64_t max_us);

/* A growable fd list; the caller holds the lock that guards it. */
int rl_fdvec_add(rl_fdvec *v, int fd);            /* -1: out of memory */
void rl_fdvec_remove(rl_fdvec *v, int fd);

#endif
