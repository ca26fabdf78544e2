/* The engine: one thread per process that runs every lease.  API threads
 * talk to it through a command queue (woken by an eventfd); it talks back
 * through published lease fields, a condition variable and an event queue. */
#ifndef RL_ENGINE_H
#define RL_ENGINE_H

#include "rl_error.h"
#include "rl_services.h"
#include "rl_types.h"

rl_engine *rl_engine_get(rl_error *err);     /* the process's engine, started if needed */
rl_engine *rl_engine_current(void);          /* NULL if none */
unsigned rl_fork_generation(void);

int rl_engine_post(rl_engine *eng, int op, rl_lease *l, rl_error *err);
/* Same, without waking the engine thread: for a caller that waits (and so
 * drives the loop, or wakes the engine if it cannot) right after. */
int rl_engine_post_quiet(rl_engine *eng, int op, rl_lease *l, rl_error *err);

/* Engine thread only.  rl_events.c: queue an event of lease l for the binding (coalesced per
 * lease: see there). */
void rl_engine_emit(rl_engine *eng, rl_lease *l, int kind, int64_t token,
                    const char *text, size_t len);

/* rl_loop.c: the loop. */
void *rl_engine_main(void *arg);
/* Create (at engine creation) and close (destroy, fork child) the loop's
 * timerfds; without them the loop falls back to relative poll timeouts. */
void rl_loop_init(rl_engine *eng);
void rl_loop_close(rl_engine *eng);
/* Run engine turns on the calling thread (which must not hold the GIL or
 * eng->mu) until done(arg) returns non-zero, `until` passes, or a signal
 * arrives -- but only if no one else is running the engine right now.
 * Returns 1 if it ran, 0 if the engine was busy elsewhere. */
int rl_engine_drive(rl_engine *eng, int (*done)(void *arg), void *arg, int64_t until);

/* A command was posted quietly and nobody will wait for it: run one turn
 * on this thread if the loop is free (never blocks), else wake the engine. */
void rl_engine_kick(rl_engine *eng);

/* rl_engine.c internals shared with rl_loop.c. */
void rl_engine_run_commands(rl_engine *eng);

/* Stop every lease (releasing held keys), then the thread; waits up to
 * timeout_us.  Returns 0 when the thread has ended. */
int rl_engine_shutdown(int64_t timeout_us);
/* Free an engine whose thread has ended (tests, leak checkers); every
 * lease must have been freed before. */
void rl_engine_destroy(void);

/* Events for the binding: 1 and *ev filled (caller frees ev->text with
 * free()), 0 on timeout, -1 if there is no engine. */
int rl_engine_next_event(rl_event *ev, int64_t max_wait_us);   /* rl_api.c */
/* rl_events.c: the same on a given engine. */
int rl_events_next(rl_engine *eng, rl_event *ev, int64_t max_wait_us);
/* rl_events.c: a lease being freed leaves the event queue (any thread). */
void rl_events_forget(rl_lease *l);
/* Drop every undelivered event (rl_engine_destroy). */
void rl_events_clear(rl_engine *eng);

/* Register an fd (eventfd or pipe) that gets 8 bytes on every notify. */
int rl_engine_add_waker(int fd, rl_error *err);
void rl_engine_remove_waker(int fd);

#endif
