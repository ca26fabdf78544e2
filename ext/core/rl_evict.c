/* The eviction guard: once per endpoint, on its first ready command
 * connection, read maxmemory-policy.  A policy that may evict keys with a
 * TTL (volatile-*, allkeys-*) can delete a held lease key before it expires,
 * and then another node is granted it while the holder still leads: one
 * warning (through the lease that asked, to the Python logger) says so and
 * what to set.  A refused CONFIG (managed services, ACLs, renamed command)
 * is skipped quietly. */
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "rl_campaign_int.h"
#include "rl_conn.h"

static int has_prefix(const char *s, size_t len, const char *p)
{
    size_t n = strlen(p);
    return len >= n && memcmp(s, p, n) == 0;
}

static void policy_reply(redisReply *r, void *priv)
{
    rl_lease *l = priv;
    if (!r) {
        /* the connection went away first: ask again on the next one */
        if (l->ep)
            l->ep->evict_checked = 0;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
               r->element[1]->type == REDIS_REPLY_STRING) {
        const char *p = r->element[1]->str;
        size_t n = r->element[1]->len;
        if (has_prefix(p, n, "volatile-") || has_prefix(p, n, "allkeys-")) {
            char msg[640];
            int len = snprintf(msg, sizeof msg,
                               "%s has maxmemory-policy %.*s: under memory pressure Redis may evict lease "
                               "keys before their ttl, and then two nodes lead at once; set "
                               "maxmemory-policy noeviction on the Redis that holds leases",
                               l->ep ? l->ep->display : "the server", (int)(n > 40 ? 40 : n), p);
            if (len > (int)sizeof msg - 1)
                len = (int)sizeof msg - 1;
            rl_pub_emit(l, RL_EV_ERROR, 0, msg, (size_t)len);
        }
    }
    /* an error reply (CONFIG refused or renamed): nothing to say */
    l->ops->decref(l);
}

void rl_evict_check(rl_lease *l)
{
    rl_endpoint *ep = l->ep;
    if (!ep || ep->evict_checked)
        return;
    static const char *const argv[3] = {"CONFIG", "GET", "maxmemory-policy"};
    static const size_t lens[3] = {6, 3, 16};
    ep->evict_checked = 1;
    atomic_fetch_add(&l->refs, 1);        /* until the reply (or NULL) comes */
    if (rl_conn_send(&ep->cmd, policy_reply, l, 3, (const char **)argv, lens) < 0) {
        ep->evict_checked = 0;
        l->ops->decref(l);
    }
}
