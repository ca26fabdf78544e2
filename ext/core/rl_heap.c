#include "rl_heap.h"

#include <stdlib.h>

void rl_timer_init(rl_timer *t, rl_timer_fn fn)
{
    t->when = 0;
    t->idx = -1;
    t->fn = fn;
}

static void place(rl_heap *h, size_t i, rl_timer *t)
{
    h->v[i] = t;
    t->idx = (long)i;
}

static void sift_up(rl_heap *h, size_t i)
{
    rl_timer *t = h->v[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->v[p]->when <= t->when)
            break;
        place(h, i, h->v[p]);
        i = p;
    }
    place(h, i, t);
}

static void sift_down(rl_heap *h, size_t i)
{
    rl_timer *t = h->v[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->len)
            break;
        if (c + 1 < h->len && h->v[c + 1]->when < h->v[c]->when)
            c++;
        if (t->when <= h->v[c]->when)
            break;
        place(h, i, h->v[c]);
        i = c;
    }
    place(h, i, t);
}

int rl_heap_set(rl_heap *h, rl_timer *t, int64_t when)
{
    if (t->idx >= 0) {
        int64_t old = t->when;
        t->when = when;
        if (when < old)
            sift_up(h, (size_t)t->idx);
        else
            sift_down(h, (size_t)t->idx);
        return 0;
    }
    if (h->len == h->cap) {
        size_t ncap = h->cap ? h->cap * 2 : 64;
        rl_timer **nv = realloc(h->v, ncap * sizeof *nv);
        if (!nv)
            return -1;
        h->v = nv;
        h->cap = ncap;
    }
    t->when = when;
    place(h, h->len++, t);
    sift_up(h, h->len - 1);
    return 0;
}

void rl_heap_cancel(rl_heap *h, rl_timer *t)
{
    if (t->idx < 0)
        return;
    size_t i = (size_t)t->idx;
    t->idx = -1;
    h->len--;
    if (i == h->len)
        return;
    rl_timer *last = h->v[h->len];
    place(h, i, last);
    if (i > 0 && h->v[(i - 1) / 2]->when > last->when)
        sift_up(h, i);
    else
        sift_down(h, i);
}

rl_timer *rl_heap_peek(const rl_heap *h)
{
    return h->len ? h->v[0] : NULL;
}

void rl_heap_free(rl_heap *h)
{
    for (size_t i = 0; i < h->len; i++)
        h->v[i]->idx = -1;
    free(h->v);
    h->v = NULL;
    h->len = h->cap = 0;
}
