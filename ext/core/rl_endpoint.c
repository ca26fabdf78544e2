#include "rl_endpoint.h"
#include "rl_endpoint_int.h"

#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "rl_clock.h"
#include "rl_conn.h"
#include "rl_services.h"
#include "rl_sentinel.h"
#include "rl_tls.h"

#define RL_SWEEP_US 10000000       /* idle subscriptions/endpoints go after 2 sweeps */
#define RL_SUB_BATCH 256

static void sweep_timer(rl_timer *t, int64_t now);
static const rl_conn_cbs cmd_cbs, sub_cbs;

static int same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static void conn_cfg(rl_endpoint *ep, rl_conn_cfg *cfg, int is_sub)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = ep->url.kind;
    cfg->host = ep->url.host;
    cfg->port = ep->url.port;
    cfg->path = ep->url.path;
    cfg->tls_ctx = ep->tls_ctx;
    cfg->user = ep->url.user;
    cfg->password = ep->url.password;
    cfg->db = ep->url.db;
    cfg->client_name = ep->url.client_name;
    cfg->connect_timeout_us = ep->connect_timeout_us;
    cfg->command_timeout_us = ep->command_timeout_us;
    cfg->display = ep->display;
    cfg->is_sub = is_sub;
    cfg->select_db = !is_sub;
    cfg->load_scripts = !is_sub;
    cfg->sha = is_sub ? NULL : ep->sha;
    if (ep->topo) {
        /* Sentinel: wherever the topology says the master is, checked
         * with ROLE on every connect. */
        cfg->kind = RL_URL_TCP;
        cfg->host = ep->mhost;
        cfg->port = ep->mport;
        cfg->display = ep->mdisplay;
        cfg->check_role = 1;
    }
}

/* A sentinel endpoint connects once the topology named the master. */
static int addr_known(const rl_endpoint *ep)
{
    return !ep->topo || ep->mport != 0;
}

/* Endpoints are shared by URL identity: the host name as written, not the
 * address it resolves to (which may change: every connect resolves it
 * again). */
rl_endpoint *rl_endpoint_get(rl_engine *eng, const rl_lease *l)
{
    for (rl_endpoint *ep = eng->endpoints; ep; ep = ep->next) {
        if (!ep->freeing && rl_url_same_endpoint(&ep->url, &l->url) &&
            same_str(ep->url.client_name, l->url.client_name) &&
            ep->connect_timeout_us == l->conn_to_us && ep->command_timeout_us == l->cmd_to_us &&
            ep->synced == (l->min_replicas > 0))   /* WAIT blocks a connection: own endpoint */
            return ep;
    }
    rl_endpoint *ep = calloc(1, sizeof *ep);
    if (!ep || rl_url_copy(&ep->url, &l->url) < 0) {
        free(ep);
        return NULL;
    }
    ep->tls_ctx = rl_tls_ctx_ref(l->tls_ctx);
    ep->eng = eng;
    rl_url_format_safe(&ep->url, ep->display, sizeof ep->display);
    ep->connect_timeout_us = l->conn_to_us;
    ep->command_timeout_us = l->cmd_to_us;
    ep->synced = l->min_replicas > 0;
    if (ep->url.kind == RL_URL_SENTINEL) {
        ep->topo = rl_topo_new(eng, &ep->url, ep->tls_ctx, ep->connect_timeout_us,
                               ep->command_timeout_us, &rl_ep_topo_cbs, ep);
        if (!ep->topo) {
            rl_tls_ctx_free(ep->tls_ctx);
            rl_url_free(&ep->url);
            free(ep);
            return NULL;
        }
        rl_ep_set_mdisplay(ep);
    }
    rl_conn_cfg cfg;
    conn_cfg(ep, &cfg, 0);
    rl_conn_init(&ep->cmd, eng, &cfg, &cmd_cbs, ep);
    conn_cfg(ep, &cfg, 1);
    rl_conn_init(&ep->sub, eng, &cfg, &sub_cbs, ep);
    rl_timer_init(&ep->sweep, sweep_timer);
    pthread_mutex_lock(&eng->mu);
    ep->next = eng->endpoints;
    eng->endpoints = ep;
    pthread_mutex_unlock(&eng->mu);
    rl_heap_set(&eng->timers, &ep->sweep, rl_now_us() + RL_SWEEP_US);
    if (ep->topo) {
        rl_topo_start(ep->topo);      /* the connections follow once it names the master */
        return ep;
    }
    rl_conn_connect(&ep->cmd);
    rl_conn_connect(&ep->sub);
    return ep;
}

/* ---- subscriptions ---- */

static void keyent_free(rl_keyent *k)
{
    free(k->channel);
    free(k);
}

static void sub_send(rl_endpoint *ep, const char *cmd, rl_keyent **ks, int n);

/* Every reply on the subscriber connection once it is ready:
 * subscribe/unsubscribe confirmations and messages. */
static void sub_message(void *owner, rl_conn *c, redisReply *reply)
{
    rl_endpoint *ep = owner;
    (void)c;
    if (!reply || ep->freeing || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
        return;
    redisReply *type = reply->element[0], *ch = reply->element[1];
    if (type->type != REDIS_REPLY_STRING || ch->type != REDIS_REPLY_STRING)
        return;
    rl_keyent *k = rl_map_get(&ep->keys, ch->str, ch->len);
    if (!k)
        return;
    if (type->len == 9 && memcmp(type->str, "subscribe", 9) == 0) {
        k->confirmed = 1;
        /* Listening now: a release that came before is caught by trying again. */
        for (rl_lease *l = k->leases, *next; l; l = next) {
            next = l->k_next;
            l->ep_cbs->listening(l);
        }
    } else if (type->len == 7 && memcmp(type->str, "message", 7) == 0) {
        redisReply *p = reply->element[2];
        if (p->type != REDIS_REPLY_STRING || p->len < 1)
            return;
        for (rl_lease *l = k->leases, *next; l; l = next) {
            next = l->k_next;
            l->ep_cbs->message(l, p->str, p->len);
        }
    } else if (type->len == 11 && memcmp(type->str, "unsubscribe", 11) == 0) {
        k->confirmed = 0;
        if (k->sub != RL_SUB_LEAVING)
            return;
        if (k->resub || k->nleases) {
            k->sub = RL_SUB_NONE;
            k->resub = 0;
            sub_send(ep, "SUBSCRIBE", &k, 1);
        } else {
            rl_map_del(&ep->keys, k->channel, k->chlen);
            keyent_free(k);
        }
    }
}

static void sub_send(rl_endpoint *ep, const char *cmd, rl_keyent **ks, int n)
{
    const char *argv[RL_SUB_BATCH + 1];
    size_t lens[RL_SUB_BATCH + 1];
    int subscribe = cmd[0] == 'S';
    if (ep->sub.state != RL_C_READY || n == 0)
        return;
    argv[0] = cmd;
    lens[0] = strlen(cmd);
    for (int i = 0; i < n; i++) {
        argv[i + 1] = ks[i]->channel;
        lens[i + 1] = ks[i]->chlen;
    }
    if (rl_conn_send(&ep->sub, NULL, NULL, n + 1, argv, lens) < 0)
        return;   /* the connection is going down; ready() resubscribes */
    for (int i = 0; i < n; i++) {
        ks[i]->sub = subscribe ? RL_SUB_ON : RL_SUB_LEAVING;
        if (subscribe)
            ks[i]->confirmed = 0;          /* until the server says so */
    }
}

typedef struct {
    rl_endpoint *ep;
    rl_keyent *batch[RL_SUB_BATCH];
    int n;
} sub_all_ctx;

static void sub_all_one(void *v, void *arg)
{
    rl_keyent *k = v;
    sub_all_ctx *ctx = arg;
    k->sub = RL_SUB_NONE;
    k->resub = 0;
    if (!k->nleases || !k->want)
        return;    /* idle, or nobody had to wait: no need to listen */
    ctx->batch[ctx->n++] = k;
    if (ctx->n == RL_SUB_BATCH) {
        sub_send(ctx->ep, "SUBSCRIBE", ctx->batch, ctx->n);
        ctx->n = 0;
    }
}

/* ---- leases ---- */

int rl_endpoint_attach(rl_endpoint *ep, rl_lease *l, const rl_ep_lease_cbs *cbs)
{
    rl_keyent *k = rl_map_get(&ep->keys, l->channel, l->chlen);
    if (!k) {
        k = calloc(1, sizeof *k);
        if (!k)
            return -1;
        k->ep = ep;
        k->channel = malloc(l->chlen ? l->chlen : 1);
        if (!k->channel) {
            free(k);
            return -1;
        }
        memcpy(k->channel, l->channel, l->chlen);
        k->chlen = l->chlen;
        if (rl_map_put(&ep->keys, k->channel, k->chlen, k) < 0) {
            keyent_free(k);
            return -1;
        }
    }
    l->ep = ep;
    l->ep_cbs = cbs;
    l->kent = k;
    pthread_mutex_lock(&ep->eng->mu);
    l->pub_ep = ep;
    pthread_mutex_unlock(&ep->eng->mu);
    l->k_prev = NULL;
    l->k_next = k->leases;
    if (k->leases)
        k->leases->k_prev = l;
    k->leases = l;
    k->nleases++;
    k->idle_marks = 0;
    l->ep_prev = NULL;
    l->ep_next = ep->leases;
    if (ep->leases)
        ep->leases->ep_prev = l;
    ep->leases = l;
    ep->nleases++;
    ep->idle_marks = 0;
    if (k->want && k->sub == RL_SUB_NONE)
        sub_send(ep, "SUBSCRIBE", &k, 1);
    else if (k->want && k->sub == RL_SUB_LEAVING)
        k->resub = 1;
    if (ep->topo)
        rl_topo_start(ep->topo);
    if (!addr_known(ep))
        return 0;
    if (ep->cmd.state == RL_C_DOWN && !rl_timer_pending(&ep->cmd.timer))
        rl_conn_connect(&ep->cmd);
    if (ep->sub.state == RL_C_DOWN && !rl_timer_pending(&ep->sub.timer))
        rl_conn_connect(&ep->sub);
    return 0;
}

int rl_endpoint_others_listening(const rl_lease *l, long long receivers)
{
    const rl_keyent *k = l->kent;
    if (receivers < 0)
        return 1;
    if (k && k->nleases > 1)
        return 1;                       /* another lease here on the same key */
    /* Ours counts only while the server confirmed it on a live connection. */
    long long ours = k && k->sub == RL_SUB_ON && k->confirmed &&
                     l->ep->sub.state == RL_C_READY ? 1 : 0;
    return receivers - ours > 0;
}

void rl_endpoint_listen(rl_lease *l)
{
    rl_keyent *k = l->kent;
    if (!k)
        return;
    k->want = 1;
    if (k->sub == RL_SUB_NONE)
        sub_send(l->ep, "SUBSCRIBE", &k, 1);
    else if (k->sub == RL_SUB_LEAVING)
        k->resub = 1;
}

void rl_endpoint_detach(rl_lease *l)
{
    rl_endpoint *ep = l->ep;
    rl_keyent *k = l->kent;
    if (!ep)
        return;
    if (l->k_prev)
        l->k_prev->k_next = l->k_next;
    else
        k->leases = l->k_next;
    if (l->k_next)
        l->k_next->k_prev = l->k_prev;
    k->nleases--;
    if (l->ep_prev)
        l->ep_prev->ep_next = l->ep_next;
    else
        ep->leases = l->ep_next;
    if (l->ep_next)
        l->ep_next->ep_prev = l->ep_prev;
    ep->nleases--;
    l->k_next = l->k_prev = l->ep_next = l->ep_prev = NULL;
    pthread_mutex_lock(&ep->eng->mu);
    l->pub_ep = NULL;
    pthread_mutex_unlock(&ep->eng->mu);
    l->ep = NULL;
    l->kent = NULL;
}

typedef struct {
    rl_keyent **v;
    size_t n;
} idle_ctx;

static void keyent_mark(void *v, void *arg)
{
    rl_keyent *k = v;
    idle_ctx *ctx = arg;
    if (k->nleases || k->sub == RL_SUB_LEAVING) {
        k->idle_marks = 0;
        return;
    }
    if (++k->idle_marks >= 2) {
        k->want = 0;
        ctx->v[ctx->n++] = k;
    }
}

/* Every RL_SWEEP_US: channels nobody listened on for two sweeps are left,
 * and an endpoint nobody used for two sweeps is closed. */
static void sweep_timer(rl_timer *t, int64_t now)
{
    rl_endpoint *ep = (rl_endpoint *)((char *)t - offsetof(rl_endpoint, sweep));
    rl_engine *eng = ep->eng;
    if (ep->nleases == 0 && ep->cmd.pending == 0) {
        if (++ep->idle_marks >= 2) {
            rl_endpoint_free(ep);
            return;
        }
    } else {
        ep->idle_marks = 0;
    }
    idle_ctx ctx = {malloc((ep->keys.len + 1) * sizeof(rl_keyent *)), 0};
    if (ctx.v) {
        rl_map_each(&ep->keys, keyent_mark, &ctx);
        for (size_t i = 0; i < ctx.n; i++) {
            rl_keyent *k = ctx.v[i];
            if (k->sub == RL_SUB_ON && ep->sub.state == RL_C_READY) {
                sub_send(ep, "UNSUBSCRIBE", &k, 1);
                if (k->sub == RL_SUB_LEAVING)
                    continue;    /* freed when the server confirms */
            }
            rl_map_del(&ep->keys, k->channel, k->chlen);
            keyent_free(k);
        }
        free(ctx.v);
    }
    rl_heap_set(&eng->timers, &ep->sweep, now + RL_SWEEP_US);
}

static void keyent_free_cb(void *v, void *arg)
{
    (void)arg;
    keyent_free(v);
}

void rl_endpoint_free(rl_endpoint *ep)
{
    rl_engine *eng = ep->eng;
    ep->freeing = 1;
    rl_heap_cancel(&eng->timers, &ep->sweep);
    rl_topo_free(ep->topo);
    ep->topo = NULL;
    rl_conn_free(&ep->cmd);
    rl_conn_free(&ep->sub);
    rl_map_each(&ep->keys, keyent_free_cb, NULL);
    rl_map_free(&ep->keys);
    pthread_mutex_lock(&eng->mu);
    for (rl_endpoint **pp = &eng->endpoints; *pp; pp = &(*pp)->next) {
        if (*pp == ep) {
            *pp = ep->next;
            break;
        }
    }
    pthread_mutex_unlock(&eng->mu);
    rl_url_free(&ep->url);
    rl_tls_ctx_free(ep->tls_ctx);
    free(ep);
}

/* ---- connection state changes (the connections' callback tables) ---- */

static void cmd_ready(void *owner, rl_conn *c)
{
    rl_endpoint *ep = owner;
    (void)c;
    pthread_mutex_lock(&ep->eng->mu);
    ep->fatal_kind = 0;
    ep->fatal_msg[0] = 0;
    pthread_mutex_unlock(&ep->eng->mu);
    for (rl_lease *l = ep->leases, *next; l; l = next) {
        next = l->ep_next;
        l->ep_cbs->ready(l);
    }
}

static void sub_ready(void *owner, rl_conn *c)
{
    rl_endpoint *ep = owner;
    (void)c;
    sub_all_ctx ctx = {.ep = ep, .n = 0};
    rl_map_each(&ep->keys, sub_all_one, &ctx);
    sub_send(ep, "SUBSCRIBE", ctx.batch, ctx.n);
}

static void unsub_one(void *v, void *arg)
{
    rl_keyent *k = v;
    (void)arg;
    k->sub = RL_SUB_NONE;
    k->resub = 0;
}

static void cmd_down(void *owner, rl_conn *c, const char *why, int fatal_kind)
{
    rl_endpoint *ep = owner;
    (void)c;
    if (ep->freeing)
        return;
    if (fatal_kind) {
        /* Published: a lease that attaches later (or a query) sees it. */
        pthread_mutex_lock(&ep->eng->mu);
        ep->fatal_kind = fatal_kind;
        snprintf(ep->fatal_msg, sizeof ep->fatal_msg, "%s", why);
        pthread_mutex_unlock(&ep->eng->mu);
    }
    if (ep->topo && c->not_master)
        rl_ep_demote_all(ep, why);
    for (rl_lease *l = ep->leases, *next; l; l = next) {
        next = l->ep_next;
        l->ep_cbs->down(l, why, fatal_kind);
    }
    if (ep->topo && c->not_master)
        rl_topo_ask(ep->topo, 1);
    else if (ep->topo && !ep->switching) {
        rl_topo_ask(ep->topo, 0);    /* after every loss of the master: ask again */
    }
}

static void sub_down(void *owner, rl_conn *c, const char *why, int fatal_kind)
{
    rl_endpoint *ep = owner;
    (void)why; (void)fatal_kind;
    if (ep->freeing)
        return;
    rl_map_each(&ep->keys, unsub_one, NULL);
    if (ep->topo && c->not_master)
        rl_topo_ask(ep->topo, 1);
}

static int conn_wanted(void *owner, rl_conn *c)
{
    rl_endpoint *ep = owner;
    (void)c;
    return !ep->freeing && ep->nleases > 0 && addr_known(ep);
}

static const rl_conn_cbs cmd_cbs = {cmd_ready, cmd_down, NULL, conn_wanted};
static const rl_conn_cbs sub_cbs = {sub_ready, sub_down, sub_message, conn_wanted};

size_t rl_endpoint_nconns(const rl_endpoint *ep)
{
    return 2 + rl_topo_nconns(ep->topo);
}

rl_conn *rl_endpoint_conn(rl_endpoint *ep, size_t i)
{
    return i == 0 ? &ep->cmd : i == 1 ? &ep->sub : rl_topo_conn(ep->topo, i - 2);
}

