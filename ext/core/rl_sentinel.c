/* The Sentinel topology of one endpoint.  See rl_sentinel.h. */
#include "rl_sentinel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "rl_clock.h"
#include "rl_conn.h"
#include "rl_services.h"
#include "rl_error.h"

#define RL_TOPO_BACKOFF_MIN_US 50000
#define RL_TOPO_BACKOFF_MAX_US 2000000
#define RL_SWITCH_CHANNEL "+switch-master"

typedef struct rl_topo_node {
    rl_topo *t;
    char display[300];        /* "sentinel host:port" */
    rl_conn cmd, sub;
    int fatal;                /* rl_errkind of the latest refusal, 0 if none */
    int nil;                  /* the latest answer: does not know the service */
    int stale;                /* the latest answer: the retired master */
    char last_error[240];
} rl_topo_node;

struct rl_topo {
    rl_engine *eng;
    const rl_url *url;
    const rl_topo_cbs *cbs;
    void *owner;
    rl_topo_node *nodes;
    int n;
    int freeing;
    char master_host[256];
    int master_port;           /* 0: none known */
    /* The old address of the latest +switch-master: a sentinel that still
     * names it has not heard of the switch yet, so its answer is stale. */
    char retired_host[256];
    int retired_port;          /* 0: none */
    int round;                 /* sentinels asked so far this round, -1: no round */
    int first;                 /* where the round starts */
    int answered;              /* index of the sentinel that answered last, -1 none */
    int again;                 /* ask again once this round is over */
    unsigned failures;         /* rounds in a row without an answer */
    rl_timer timer;
};

static void ask_next(rl_topo *t);

static void changed(rl_topo *t)
{
    if (!t->freeing && t->cbs->changed)
        t->cbs->changed(t->owner);
}

static void node_error(rl_topo_node *s, const char *fmt, const char *arg, int len)
{
    snprintf(s->last_error, sizeof s->last_error, fmt, len, arg);
}

/* ---- asking ---- */

static void start_round(rl_topo *t)
{
    if (t->freeing || t->n == 0)
        return;
    if (t->round >= 0) {
        t->again = 1;          /* one in flight: its end starts the next */
        return;
    }
    rl_heap_cancel(&t->eng->timers, &t->timer);
    t->round = 0;
    t->again = 0;
    for (int i = 0; i < t->n; i++)
        t->nodes[i].nil = t->nodes[i].stale = 0;
    ask_next(t);
}

static void round_over(rl_topo *t, int ok)
{
    t->round = -1;
    if (ok) {
        t->failures = 0;
        if (t->again)
            start_round(t);
        return;
    }
    /* A sentinel still connecting may answer soon: its ready (or its
     * failure) starts the next round, say nothing yet. */
    int connecting = 0;
    for (int i = 0; i < t->n; i++)
        connecting += t->nodes[i].cmd.state != RL_C_DOWN && t->nodes[i].cmd.state != RL_C_READY;
    if (connecting) {
        if (t->again && !t->freeing) {
            t->again = 0;
            start_round(t);
        }
        return;
    }
    /* Nobody could name the master: say why, try again later. */
    char msg[900];
    int nil = 0, stale = 0, fatal = t->n ? t->nodes[0].fatal : 0;
    for (int i = 0; i < t->n; i++) {
        nil += t->nodes[i].nil;
        stale += t->nodes[i].stale;
        if (t->nodes[i].fatal != fatal)
            fatal = 0;
    }
    int len;
    if (nil == t->n)
        len = snprintf(msg, sizeof msg, "no sentinel knows the service '%s' (asked %d sentinel%s); "
                       "check the service name in the URL", t->url->service_name, t->n, t->n == 1 ? "" : "s");
    else
        len = snprintf(msg, sizeof msg, "cannot learn the master of service '%s' from the sentinels:",
                       t->url->service_name);
    for (int i = 0; nil != t->n && i < t->n && len > 0 && (size_t)len < sizeof msg; i++) {
        const rl_topo_node *s = &t->nodes[i];
        len += snprintf(msg + len, sizeof msg - (size_t)len, "%s %s: %s", i ? ";" : "", s->display + 9,
                        s->nil ? "does not know the service" : s->last_error[0] ? s->last_error : "not connected");
    }
    if (stale == t->n) {
        /* Every sentinel names the old master again: they moved back (a
         * switch we did not hear of); believe them from the next round. */
        t->retired_port = 0;
    }
    t->failures++;
    int64_t d = RL_TOPO_BACKOFF_MIN_US;
    for (unsigned i = 1; i < t->failures && d < RL_TOPO_BACKOFF_MAX_US; i++)
        d *= 2;
    if (d > RL_TOPO_BACKOFF_MAX_US)
        d = RL_TOPO_BACKOFF_MAX_US;
    if (t->cbs->wanted(t->owner))
        rl_heap_set(&t->eng->timers, &t->timer, rl_now_us() + rl_engine_jitter(t->eng, d));
    changed(t);
    t->cbs->error(t->owner, msg, nil ? 0 : fatal);
    if (t->again && !t->freeing) {
        t->again = 0;
        start_round(t);
    }
}

static int parse_port(const char *s, size_t len)
{
    long v = 0;
    if (len == 0 || len > 5)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    return v >= 1 && v <= 65535 ? (int)v : 0;
}

/* A master address from a sentinel: keep it, tell the owner if it is new. */
static void got_master(rl_topo *t, const char *host, size_t hlen, int port, const char *why)
{
    if (hlen == 0 || hlen >= sizeof t->master_host || memchr(host, 0, hlen))
        return;
    if (t->master_port == port && strlen(t->master_host) == hlen && memcmp(t->master_host, host, hlen) == 0)
        return;
    memcpy(t->master_host, host, hlen);
    t->master_host[hlen] = 0;
    t->master_port = port;
    changed(t);
    t->cbs->master(t->owner, t->master_host, t->master_port, why);
}

static int is_retired(const rl_topo *t, const char *host, size_t hlen, int port)
{
    return t->retired_port == port && strlen(t->retired_host) == hlen && memcmp(t->retired_host, host, hlen) == 0;
}

static void ask_reply(redisReply *r, void *priv)
{
    rl_topo_node *s = priv;
    rl_topo *t = s->t;
    if (t->freeing || t->round < 0)
        return;
    int idx = (int)(s - t->nodes);
    if (!r) {
        node_error(s, "%.*s", "no answer (connection lost)", 27);
    } else if (r->type == REDIS_REPLY_NIL) {
        s->nil = 1;
        s->last_error[0] = 0;
    } else if (r->type == REDIS_REPLY_ERROR) {
        node_error(s, "%.*s", r->str, (int)(r->len > 160 ? 160 : r->len));
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_STRING &&
               r->element[1]->type == REDIS_REPLY_STRING &&
               parse_port(r->element[1]->str, r->element[1]->len) &&
               is_retired(t, r->element[0]->str, r->element[0]->len,
                          parse_port(r->element[1]->str, r->element[1]->len))) {
        s->stale = 1;
        node_error(s, "%.*s", "names the master before the latest +switch-master (not updated yet)", 67);
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_STRING &&
               r->element[1]->type == REDIS_REPLY_STRING &&
               parse_port(r->element[1]->str, r->element[1]->len)) {
        char why[400];
        s->last_error[0] = 0;
        t->answered = idx;
        snprintf(why, sizeof why, "%s names it", s->display);
        got_master(t, r->element[0]->str, r->element[0]->len,
                   parse_port(r->element[1]->str, r->element[1]->len), why);
        round_over(t, 1);
        return;
    } else {
        node_error(s, "%.*s", "unexpected reply to SENTINEL get-master-addr-by-name", 52);
    }
    changed(t);
    t->round++;
    ask_next(t);
}

/* Ask the next sentinel of the round that is connected; the round is
 * over without an answer when none is left. */
static void ask_next(rl_topo *t)
{
    while (t->round >= 0 && t->round < t->n) {
        rl_topo_node *s = &t->nodes[(t->first + t->round) % t->n];
        if (s->cmd.state == RL_C_READY) {
            const char *svc = t->url->service_name;
            const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", svc};
            size_t lens[3] = {8, 23, strlen(svc)};
            if (rl_conn_send(&s->cmd, ask_reply, s, 3, argv, lens) == 0)
                return;
        }
        t->round++;
    }
    if (t->round >= 0)
        round_over(t, 0);
}

static void topo_timer(rl_timer *tm, int64_t now)
{
    rl_topo *t = (rl_topo *)((char *)tm - offsetof(rl_topo, timer));
    (void)now;
    if (t->cbs->wanted(t->owner))
        start_round(t);
}

void rl_topo_ask(rl_topo *t, int distrust)
{
    if (distrust && t->answered >= 0 && t->round < 0)
        t->first = (t->answered + 1) % t->n;
    start_round(t);
}

/* ---- the sentinel connections ---- */

static void cmd_ready(void *owner, rl_conn *c)
{
    rl_topo_node *s = owner;
    (void)c;
    s->fatal = 0;
    s->last_error[0] = 0;
    changed(s->t);
    start_round(s->t);        /* (re)connected: ask again */
}

static void sub_ready(void *owner, rl_conn *c)
{
    rl_topo_node *s = owner;
    const char *argv[2] = {"SUBSCRIBE", RL_SWITCH_CHANNEL};
    size_t lens[2] = {9, strlen(RL_SWITCH_CHANNEL)};
    if (rl_conn_send(c, NULL, NULL, 2, argv, lens) < 0)
        rl_conn_drop(c, "cannot subscribe to " RL_SWITCH_CHANNEL ": out of memory");
    else
        start_round(s->t);    /* a switch may have happened while we were away */
    changed(s->t);
}

static void node_down(void *owner, rl_conn *c, const char *why, int fatal_kind)
{
    rl_topo_node *s = owner;
    if (s->t->freeing)
        return;
    if (c == &s->cmd) {
        s->fatal = fatal_kind;
        snprintf(s->last_error, sizeof s->last_error, "%s", why);
        changed(s->t);
        if (s->t->master_port == 0)
            start_round(s->t);    /* reports the failure once nobody is left connecting */
    }
}

/* +switch-master <name> <old-ip> <old-port> <new-ip> <new-port> */
static void sub_message(void *owner, rl_conn *c, redisReply *r)
{
    rl_topo_node *s = owner;
    rl_topo *t = s->t;
    (void)c;
    if (t->freeing || !r || r->type != REDIS_REPLY_ARRAY || r->elements != 3)
        return;
    const redisReply *kind = r->element[0], *ch = r->element[1], *p = r->element[2];
    if (kind->type != REDIS_REPLY_STRING || kind->len != 7 || memcmp(kind->str, "message", 7) != 0 ||
        ch->type != REDIS_REPLY_STRING || p->type != REDIS_REPLY_STRING)
        return;
    const char *f[5];
    size_t fl[5];
    int nf = 0;
    const char *q = p->str, *end = p->str + p->len;
    while (q < end && nf < 5) {
        while (q < end && *q == ' ')
            q++;
        const char *b = q;
        while (q < end && *q != ' ')
            q++;
        if (q > b) {
            f[nf] = b;
            fl[nf++] = (size_t)(q - b);
        }
    }
    const char *svc = t->url->service_name;
    if (nf != 5 || fl[0] != strlen(svc) || memcmp(f[0], svc, fl[0]) != 0)
        return;
    int port = parse_port(f[4], fl[4]), old_port = parse_port(f[2], fl[2]);
    if (!port)
        return;
    if (old_port && fl[1] < sizeof t->retired_host && !(fl[1] == fl[3] && old_port == port &&
                                                         memcmp(f[1], f[3], fl[1]) == 0)) {
        memcpy(t->retired_host, f[1], fl[1]);
        t->retired_host[fl[1]] = 0;
        t->retired_port = old_port;
    }
    if (is_retired(t, f[3], fl[3], port))
        t->retired_port = 0;
    char why[400];
    snprintf(why, sizeof why, "+switch-master from %s", s->display);
    got_master(t, f[3], fl[3], port, why);
}

static int node_wanted(void *owner, rl_conn *c)
{
    rl_topo_node *s = owner;
    (void)c;
    return !s->t->freeing && s->t->cbs->wanted(s->t->owner);
}

static const rl_conn_cbs node_cmd_cbs = {cmd_ready, node_down, NULL, node_wanted};
static const rl_conn_cbs node_sub_cbs = {sub_ready, node_down, sub_message, node_wanted};

rl_topo *rl_topo_new(rl_engine *eng, const rl_url *url, struct rl_tls_ctx *tls_ctx,
                     int64_t connect_timeout_us, int64_t command_timeout_us,
                     const rl_topo_cbs *cbs, void *owner)
{
    if (!url->sentinels || url->nsentinels <= 0 || !url->service_name)
        return NULL;
    rl_topo *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->nodes = calloc((size_t)url->nsentinels, sizeof *t->nodes);
    if (!t->nodes) {
        free(t);
        return NULL;
    }
    t->eng = eng;
    t->url = url;
    t->cbs = cbs;
    t->owner = owner;
    t->n = url->nsentinels;
    t->round = -1;
    t->answered = -1;
    rl_timer_init(&t->timer, topo_timer);
    for (int i = 0; i < t->n; i++) {
        rl_topo_node *s = &t->nodes[i];
        const rl_url_hostport *hp = &url->sentinels[i];
        s->t = t;
        if (strchr(hp->host, ':'))
            snprintf(s->display, sizeof s->display, "sentinel [%s]:%d", hp->host, hp->port);
        else
            snprintf(s->display, sizeof s->display, "sentinel %s:%d", hp->host, hp->port);
        rl_conn_cfg cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.kind = RL_URL_TCP;
        cfg.host = hp->host;
        cfg.port = hp->port;
        cfg.tls_ctx = tls_ctx;
        cfg.user = url->sentinel_user;
        cfg.password = url->sentinel_password;
        cfg.client_name = url->client_name;
        cfg.connect_timeout_us = connect_timeout_us;
        cfg.command_timeout_us = command_timeout_us;
        cfg.display = s->display;
        rl_conn_init(&s->cmd, eng, &cfg, &node_cmd_cbs, s);
        cfg.is_sub = 1;
        rl_conn_init(&s->sub, eng, &cfg, &node_sub_cbs, s);
    }
    return t;
}

void rl_topo_start(rl_topo *t)
{
    for (int i = 0; i < t->n; i++) {
        rl_topo_node *s = &t->nodes[i];
        if (s->cmd.state == RL_C_DOWN && !rl_timer_pending(&s->cmd.timer))
            rl_conn_connect(&s->cmd);
        if (s->sub.state == RL_C_DOWN && !rl_timer_pending(&s->sub.timer))
            rl_conn_connect(&s->sub);
    }
    if (t->master_port == 0 && !rl_timer_pending(&t->timer))
        rl_heap_set(&t->eng->timers, &t->timer, rl_now_us() + RL_TOPO_BACKOFF_MIN_US);
}

void rl_topo_free(rl_topo *t)
{
    if (!t)
        return;
    t->freeing = 1;
    rl_heap_cancel(&t->eng->timers, &t->timer);
    for (int i = 0; i < t->n; i++) {
        rl_conn_free(&t->nodes[i].cmd);
        rl_conn_free(&t->nodes[i].sub);
    }
    free(t->nodes);
    free(t);
}

const char *rl_topo_master(const rl_topo *t, int *port)
{
    if (port)
        *port = t->master_port;
    return t->master_port ? t->master_host : NULL;
}

int rl_topo_describe(const rl_topo *t, char *buf, size_t n)
{
    static const char *const names[] = {"down", "resolving", "connecting", "connecting", "handshake", "up"};
    int len = 0;
    if (n)
        buf[0] = 0;
    for (int i = 0; i < t->n && (size_t)len < n; i++) {
        const rl_topo_node *s = &t->nodes[i];
        int st = s->cmd.state >= RL_C_DOWN && s->cmd.state <= RL_C_READY ? s->cmd.state : RL_C_DOWN;
        int sub_up = s->sub.state == RL_C_READY;
        const char *err = s->nil ? "does not know the service" : s->last_error;
        int k = snprintf(buf + len, n - (size_t)len, "%s%s %s%s%s%s", i ? "\n" : "", s->display + 9,
                         names[st], st == RL_C_READY && !sub_up ? " (not subscribed)" : "",
                         err[0] && (st != RL_C_READY || s->nil) ? ": " : "",
                         err[0] && (st != RL_C_READY || s->nil) ? err : "");
        if (k < 0)
            break;
        len += k;
    }
    return len;
}

size_t rl_topo_nconns(const rl_topo *t)
{
    return t ? 2 * (size_t)t->n : 0;
}

rl_conn *rl_topo_conn(rl_topo *t, size_t i)
{
    rl_topo_node *s = &t->nodes[i / 2];
    return i % 2 ? &s->sub : &s->cmd;
}
