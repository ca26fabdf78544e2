/* Requests of the lease protocol: sending a script with the lease's keys
 * and arguments, the common start of every reply (NOSCRIPT -> EVAL), and
 * error messages that name the server. */
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "rl_campaign_int.h"
#include "rl_conn.h"
#include "rl_error.h"
#include "rl_scripts.h"

int rl_send_script(rl_lease *l, int script, rl_reply_fn *cb, int eval)
{
    rl_endpoint *ep = l->ep;
    const char *argv[12];      /* at most 10: EVALSHA sha 3 key tkey marker term ttl channel retention */
    size_t lens[12];
    int n = 0;
    if (eval) {
        argv[n] = "EVAL";
        lens[n++] = 4;
        argv[n] = rl_script_text[script];
        lens[n++] = strlen(rl_script_text[script]);
    } else {
        argv[n] = "EVALSHA";
        lens[n++] = 7;
        argv[n] = ep->sha[script];
        lens[n++] = strlen(ep->sha[script]);
    }
    const char *const nkeys[RL_SCRIPT_COUNT] = {"3", "1", "1", "2"};
    argv[n] = nkeys[script];
    lens[n++] = 1;
    argv[n] = l->key;
    lens[n++] = l->keylen;
    if (script == RL_SCRIPT_ACQUIRE || script == RL_SCRIPT_STATUS) {
        argv[n] = l->tkey;
        lens[n++] = l->tkeylen;
    }
    if (script == RL_SCRIPT_ACQUIRE) {
        argv[n] = RL_MARKER_KEY;
        lens[n++] = strlen(RL_MARKER_KEY);
    }
    if (script == RL_SCRIPT_STATUS)
        return rl_conn_send(&ep->cmd, cb, l, n, argv, lens);
    argv[n] = l->term;
    lens[n++] = l->termlen;
    if (script != RL_SCRIPT_RELEASE) {
        argv[n] = l->ttl_ms;
        lens[n++] = strlen(l->ttl_ms);
    }
    if (script != RL_SCRIPT_RENEW) {
        argv[n] = l->channel;
        lens[n++] = l->chlen;
    }
    if (script == RL_SCRIPT_ACQUIRE) {
        argv[n] = RL_TOKEN_RETENTION_MS;
        lens[n++] = strlen(RL_TOKEN_RETENTION_MS);
    }
    if (l->min_replicas > 0 && script != RL_SCRIPT_RELEASE)
        return rl_synced_send(l, cb, n, argv, lens);      /* script, then WAIT */
    return rl_conn_send(&ep->cmd, cb, l, n, argv, lens);
}

/* The common start of every script reply: count it, and on NOSCRIPT (the
 * server lost its script cache: SCRIPT FLUSH, a restart) send the same
 * request again with EVAL.  Returns 1 when the reply was handled that way. */
int rl_reply_resent(rl_lease *l, const redisReply *reply, int script, rl_reply_fn *cb, int retry_ok)
{
    return reply && retry_ok && reply->type == REDIS_REPLY_ERROR &&
           rl_reply_is_noscript(reply->str, reply->len) && rl_send_script(l, script, cb, 1) == 0;
}

void rl_reply_error_msg(char *buf, size_t n, const char *what, const redisReply *r)
{
    if (!r)
        snprintf(buf, n, "%s: connection lost before the reply", what);
    else
        snprintf(buf, n, "%s: %.*s", what, (int)(r->len > 200 ? 200 : r->len), r->str);
}

/* The same, naming the server, with what to do about a permission error. */
void rl_reply_error_at(char *buf, size_t n, rl_lease *l, const char *what, const redisReply *r)
{
    const char *srv = l->ep ? l->ep->display : "the server";
    int k;
    if (!r)
        k = snprintf(buf, n, "%s at %s: connection lost before the reply", what, srv);
    else if (rl_reply_errkind(r->str, r->len) == RL_EPERM)
        k = snprintf(buf, n, "%s at %s: %.*s; the ACL user needs the commands EVALSHA, EVAL, SCRIPT, "
                 "PUBLISH, SUBSCRIBE%s, the keys %.*s, %.*s and " RL_MARKER_KEY
                 ", and the channel %.*s", what, srv, (int)(r->len > 160 ? 160 : r->len), r->str,
                 l->min_replicas > 0 ? ", PING and WAIT (min_replicas)" : " and PING",
                 (int)(l->keylen > 60 ? 60 : l->keylen), l->key,
                 (int)(l->tkeylen > 80 ? 80 : l->tkeylen), l->tkey,
                 (int)(l->chlen > 80 ? 80 : l->chlen), l->channel);
    else
        k = snprintf(buf, n, "%s at %s: %.*s", what, srv, (int)(r->len > 200 ? 200 : r->len), r->str);
    if (k < 0 && n)
        buf[0] = 0;        /* truncation is fine; an encoding error is not expected */
}

