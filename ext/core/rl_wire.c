/* Output buffer, reply-callback FIFO, poll events (see rl_wire.h). */
#include "rl_wire.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "rl_stream.h"

int rl_fifo_push(rl_fifo *f, rl_reply_fn *fn, void *priv, int counted)
{
    if (f->n == f->cap) {
        size_t ncap = f->cap ? 2 * f->cap : 16;
        rl_pend *nv = malloc(ncap * sizeof *nv);
        if (!nv)
            return -1;
        for (size_t i = 0; i < f->n; i++)
            nv[i] = f->v[(f->head + i) % f->cap];
        free(f->v);
        f->v = nv;
        f->head = 0;
        f->cap = ncap;
    }
    f->v[(f->head + f->n) % f->cap] = (rl_pend){fn, priv, counted};
    f->n++;
    return 0;
}

rl_pend rl_fifo_pop(rl_fifo *f)
{
    rl_pend p = f->v[f->head];
    f->head = (f->head + 1) % f->cap;
    f->n--;
    return p;
}

void rl_fifo_free(rl_fifo *f)
{
    free(f->v);
    memset(f, 0, sizeof *f);
}

/* Room for need more bytes: reclaim what was written, then grow. */
static int reserve(rl_conn *c, size_t need)
{
    if (c->olen + need <= c->ocap)
        return 0;
    if (c->opos > 0) {
        memmove(c->obuf, c->obuf + c->opos, c->olen - c->opos);
        c->olen -= c->opos;
        c->opos = 0;
        if (c->olen + need <= c->ocap)
            return 0;
    }
    size_t ncap = c->ocap ? c->ocap : 4096;
    while (ncap < c->olen + need) {
        if (ncap > ((size_t)-1) / 2)
            return -1;
        ncap *= 2;
    }
    char *nb = realloc(c->obuf, ncap);
    if (!nb)
        return -1;
    c->obuf = nb;
    c->ocap = ncap;
    return 0;
}

int rl_wire_queue(rl_conn *c, rl_reply_fn *fn, void *priv, int counted,
                  int argc, const char **argv, const size_t *lens)
{
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0 || !cmd)
        return -1;
    if (reserve(c, (size_t)len) < 0 || (fn && rl_fifo_push(&c->fifo, fn, priv, counted) < 0)) {
        redisFreeCommand(cmd);
        return -1;
    }
    memcpy(c->obuf + c->olen, cmd, (size_t)len);
    c->olen += (size_t)len;
    redisFreeCommand(cmd);
    rl_wire_events(c);
    return 0;
}

int rl_wire_write(rl_conn *c, char *err, size_t errlen)
{
    while (c->opos < c->olen) {
        short want = 0;
        long n = c->stream->ops->write(c->stream, c->obuf + c->opos, c->olen - c->opos, &want, err, errlen);
        if (n > 0) {
            c->opos += (size_t)n;
            continue;
        }
        if (n < 0 && want) {
            c->wr_want = want;
            rl_wire_events(c);
            return 0;
        }
        return -1;
    }
    c->olen = c->opos = 0;
    c->wr_want = 0;
    rl_wire_events(c);
    return 0;
}

void rl_wire_events(rl_conn *c)
{
    if (c->fd < 0 || !c->sock || c->state < RL_C_HANDSHAKE)
        return;
    short ev = c->rd_want ? c->rd_want : POLLIN;
    if (c->olen > c->opos)
        ev |= c->wr_want ? c->wr_want : POLLOUT;
    c->events = ev;
}

void rl_wire_reset(rl_conn *c)
{
    c->olen = c->opos = 0;
    c->wr_want = 0;
}

void rl_wire_free(rl_conn *c)
{
    free(c->obuf);
    c->obuf = NULL;
    c->olen = c->opos = c->ocap = 0;
    rl_fifo_free(&c->fifo);
    rl_fifo_free(&c->orphans);
}
