/* Blocking waits of the binding: the GIL released, in slices short enough
 * that Ctrl-C (a pending signal) is seen within WAIT_SLICE_US. */
#include "binding.h"

#include "core/rl_clock.h"

#define WAIT_SLICE_US 50000   /* Ctrl-C is seen within this */

/* Seconds (>= 0, or < 0 for "no limit") to microseconds, saturating: a
 * timeout too large for int64 microseconds means "no limit", never a
 * wrapped-around negative number. */
int64_t rl_seconds_to_us(double seconds)
{
    if (seconds < 0 || !(seconds * 1e6 < 9.2e18))   /* 9.2e18 < INT64_MAX; NaN too */
        return INT64_MAX;
    return (int64_t)(seconds * 1e6);
}

/* now + timeout, saturating at INT64_MAX (= no deadline). */
static int64_t deadline_us(double timeout)
{
    int64_t d = rl_seconds_to_us(timeout), now = rl_now_us();
    return d >= INT64_MAX - now ? INT64_MAX : now + d;
}

int rl_wait_slices(rl_modstate *st, rl_slice_fn fn, void *arg, double timeout)
{
    int64_t until = deadline_us(timeout);
    for (;;) {
        int64_t now = rl_now_us();
        int64_t slice = until - now;
        if (slice > WAIT_SLICE_US)
            slice = WAIT_SLICE_US;
        if (slice < 0)
            slice = 0;
        rl_error err = {0};
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = fn(arg, slice, &err);
        Py_END_ALLOW_THREADS
        if (rc > 0)
            return rc;
        if (rc < 0) {
            rl_raise(st, &err);
            return -1;
        }
        if (PyErr_CheckSignals() < 0)
            return -1;
        if (rl_now_us() >= until)
            return 0;
    }
}

typedef struct {
    rl_lease *l;
    int what;
} lease_wait_arg;

static int lease_wait_slice(void *arg, int64_t max_us, rl_error *err)
{
    lease_wait_arg *a = arg;
    return rl_lease_wait(a->l, a->what, max_us, err);
}

int rl_wait(rl_modstate *st, rl_lease *l, int what, double timeout)
{
    lease_wait_arg a = {l, what};
    return rl_wait_slices(st, lease_wait_slice, &a, timeout);
}
