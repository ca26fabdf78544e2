/* A binary min-heap of timers, ordered by due time.  Each timer is embedded
 * in the object it wakes and knows its heap slot, so moving or cancelling
 * one is O(log n).  Engine thread only. */
#ifndef RL_HEAP_H
#define RL_HEAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct rl_timer rl_timer;
typedef void (*rl_timer_fn)(rl_timer *t, int64_t now);

struct rl_timer {
    int64_t when;
    long idx;          /* slot in the heap, -1 when not scheduled */
    rl_timer_fn fn;
};

typedef struct rl_heap {
    rl_timer **v;
    size_t len, cap;
} rl_heap;

void rl_timer_init(rl_timer *t, rl_timer_fn fn);
int rl_heap_set(rl_heap *h, rl_timer *t, int64_t when); /* -1 on OOM */
void rl_heap_cancel(rl_heap *h, rl_timer *t);
rl_timer *rl_heap_peek(const rl_heap *h);
void rl_heap_free(rl_heap *h);

static inline int rl_timer_pending(const rl_timer *t) { return t->idx >= 0; }

#endif
