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

/* The absolute CLOCK_MONOTONIC time max_us from now, for a condition
 * variable created with pthread_condattr_setclock(CLOCK_MONOTONIC) (condition
 * variables cannot wait on CLOCK_BOOTTIME: callers wait in short slices). */
static inline void rl_cond_deadline(struct timespec *ts, int64_t max_us)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += max_us / 1000000;
    ts->tv_nsec += (max_us % 1000000) * 1000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

#endif
