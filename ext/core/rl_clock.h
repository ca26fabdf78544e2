/* Time source for the safety rule: a monotonic clock that also counts time
 * the machine spends suspended (CLOCK_BOOTTIME on Linux). */
#ifndef RL_CLOCK_H
#define RL_CLOCK_H

#include <stdint.h>
#include <time.h>

#ifdef CLOCK_BOOTTIME
#define RL_CLOCK CLOCK_BOOTTIME
#else
#define RL_CLOCK CLOCK_MONOTONIC
#endif

static inline int64_t rl_now_us(void)
{
    struct timespec ts;
    clock_gettime(RL_CLOCK, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

#endif
