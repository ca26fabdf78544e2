/* Replica-synced requests (min_replicas > 0): the acquire or renew script
 * goes out followed by `WAIT min_replicas wait_ms` on the same connection
 * (WAIT is not allowed inside a script).  The script's reply is kept until
 * WAIT answers; then the lease's own reply handler gets it, with
 * l->sync_short set when fewer than min_replicas replicas acknowledged (or
 * WAIT failed), so the handler does not count it as a grant or renewal. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "rl_campaign_int.h"
#include "rl_conn.h"

#define RL_REPLY_COPY_DEPTH 4

static void reply_free(redisReply *r)
{
    if (!r)
        return;
    if (r->element) {
        for (size_t i = 0; i < r->elements; i++)
            reply_free(r->element[i]);
        free(r->element);
    }
    free(r->str);
    free(r);
}

/* A copy of a reply (hiredis frees its own when the callback returns).
 * The scripts' replies are at most an array of scalars. */
static redisReply *reply_copy(const redisReply *r, int depth)
{
    redisReply *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->type = r->type;
    c->integer = r->integer;
    if (r->str) {
        c->str = malloc(r->len + 1);
        if (!c->str)
            goto fail;
        memcpy(c->str, r->str, r->len);
        c->str[r->len] = 0;
        c->len = r->len;
    }
    if (r->element && r->elements) {
        if (depth >= RL_REPLY_COPY_DEPTH)
            goto fail;
        c->element = calloc(r->elements, sizeof *c->element);
        if (!c->element)
            goto fail;
        c->elements = r->elements;
        for (size_t i = 0; i < r->elements; i++) {
            c->element[i] = r->element[i] ? reply_copy(r->element[i], depth + 1) : NULL;
            if (r->element[i] && !c->element[i])
                goto fail;
        }
    }
    return c;
fail:
    reply_free(c);
    return NULL;
}

static void script_reply(redisReply *r, void *priv)
{
    rl_lease *l = priv;
    reply_free(l->sync_reply);
    l->sync_reply = NULL;
    if (l->sync_short == 2) {
        /* No WAIT follows (it could not be queued): not confirmed. */
        l->sync_short = 1;
        snprintf(l->sync_msg, RL_SYNC_MSG_LEN, "WAIT could not be sent (out of memory; min_replicas=%d)",
                 l->min_replicas);
        l->sync_cb(r, l);
        return;
    }
    if (!r)
        return;                        /* connection lost: WAIT gets NULL too */
    l->sync_reply = reply_copy(r, 0);  /* NULL (out of memory): handled as lost */
}

static void wait_reply(redisReply *r, void *priv)
{
    rl_lease *l = priv;
    const redisReply *w = r;
    redisReply *s = l->sync_reply;
    rl_reply_fn *cb = l->sync_cb;
    l->sync_reply = NULL;
    if (!w || !s) {
        reply_free(s);
        cb(NULL, l);
        return;
    }
    if (w->type == REDIS_REPLY_ERROR && w->str && rl_reply_errkind(w->str, w->len) != 0) {
        /* A WAIT that retrying will not fix (NOPERM: the ACL user lacks
         * WAIT): the request fails with WAIT's error, as the script's own
         * would.  A grant it hid expires by itself; its term is reused. */
        reply_free(s);
        cb(r, l);
        return;
    }
    double secs = (double)strtoll(l->wait_ms_s, NULL, 10) / 1000.0;
    if (w->type == REDIS_REPLY_INTEGER && w->integer >= l->min_replicas) {
        l->sync_short = 0;
    } else {
        l->sync_short = 1;
        if (w->type == REDIS_REPLY_INTEGER)
            snprintf(l->sync_msg, RL_SYNC_MSG_LEN,
                     "WAIT: %lld of %d replicas acknowledged within %.3g s (min_replicas=%d)",
                     w->integer < 0 ? 0LL : (long long)w->integer, l->min_replicas, secs, l->min_replicas);
        else if (w->type == REDIS_REPLY_ERROR && w->str)
            snprintf(l->sync_msg, RL_SYNC_MSG_LEN, "WAIT: %.*s (min_replicas=%d)",
                     (int)(w->len > 120 ? 120 : w->len), w->str, l->min_replicas);
        else
            snprintf(l->sync_msg, RL_SYNC_MSG_LEN, "WAIT: unexpected reply type %d (min_replicas=%d)",
                     w->type, l->min_replicas);
    }
    cb(s, l);          /* may send again, or drop the lease's last reference */
    reply_free(s);
}

int rl_synced_send(rl_lease *l, rl_reply_fn *cb, int n, const char **argv, const size_t *lens)
{
    rl_conn *c = &l->ep->cmd;
    const char *wargv[3] = {"WAIT", l->min_replicas_s, l->wait_ms_s};
    size_t wlens[3] = {4, strlen(l->min_replicas_s), strlen(l->wait_ms_s)};
    l->sync_short = 0;
    if (rl_conn_send(c, script_reply, l, n, argv, lens) < 0)
        return -1;
    l->sync_cb = cb;
    if (rl_conn_send(c, wait_reply, l, 3, wargv, wlens) < 0)
        l->sync_short = 2;     /* the script's reply goes to cb at once, unconfirmed */
    return 0;
}

void rl_synced_forget(rl_lease *l)
{
    reply_free(l->sync_reply);
    l->sync_reply = NULL;
}
