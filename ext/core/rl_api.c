#include "redlease.h"

#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "rl_campaign.h"
#include "rl_clock.h"
#include "rl_engine.h"
#include "rl_tls.h"
#include "rl_types.h"
#include "rl_api_int.h"

#define TOKEN_SUFFIX ":redlease-token"

static int start(rl_lease *l, int quiet, rl_error *err);
static int stop(rl_lease *l, int quiet);

static atomic_ullong g_next_id = 1;

/* ---- validation ---- */

static int check_seconds(const char *name, double v, double min, double max, rl_error *err)
{
    if (isnan(v) || isinf(v))
        return rl_seterr(err, RL_EVALUE, "%s must be a finite number of seconds, not %g", name, v);
    if (v < min)
        return rl_seterr(err, RL_EVALUE, "%s must be at least %g s, got %g", name, min, v);
    if (v > max)
        return rl_seterr(err, RL_EVALUE, "%s must be at most %g s, got %g", name, max, v);
    return 0;
}

static int check_interval(const char *name, double v, double ttl, rl_error *err)
{
    if (isnan(v) || isinf(v))
        return rl_seterr(err, RL_EVALUE, "%s must be a finite number of seconds, not %g", name, v);
    if (v <= 0)
        return rl_seterr(err, RL_EVALUE, "%s must be > 0, got %g", name, v);
    if (v >= ttl)
        return rl_seterr(err, RL_EVALUE, "%s (%g s) must be shorter than ttl (%g s)", name, v, ttl);
    return 0;
}

/* The fencing counter lives in the same Redis Cluster slot as the key: a key
 * with a hash tag shares its tag; a key without one becomes the tag. */
static char *token_key(const char *key, size_t len, size_t *outlen)
{
    const char *open = memchr(key, '{', len);
    const char *close = open ? memchr(open + 1, '}', len - (size_t)(open + 1 - key)) : NULL;
    int tagged = open && close && close > open + 1;
    int wrap = !tagged && !memchr(key, '}', len);
    size_t n = len + strlen(TOKEN_SUFFIX) + (wrap ? 2 : 0);
    char *p = malloc(n), *q = p;
    if (!p)
        return NULL;
    if (wrap)
        *q++ = '{';
    memcpy(q, key, len);
    q += len;
    if (wrap)
        *q++ = '}';
    memcpy(q, TOKEN_SUFFIX, strlen(TOKEN_SUFFIX));
    *outlen = n;
    return p;
}

static int default_node_id(char *buf, size_t n, rl_error *err)
{
    unsigned char rnd[8];
    char host[256];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        return rl_seterr(err, RL_ESYS, "cannot read random bytes from the OS for the node id");
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = 0;
    int len = snprintf(buf, n, "%s:%ld:", host, (long)getpid());
    for (size_t i = 0; i < sizeof rnd && len + 2 < (int)n; i++)
        len += snprintf(buf + len, n - (size_t)len, "%02x", rnd[i]);
    return len;
}

/* What the URL adds: rediss:// gets its TLS context now, so a bad ssl_* file is a ValueError
 * here (the endpoint takes a reference); socket_timeout and
 * socket_connect_timeout in the query win over the keyword arguments, as in
 * redis-py. */
static int url_options(rl_lease *l, const rl_lease_opts *o, rl_error *err)
{
    char safe[300], tlserr[512];
    rl_url_format_safe(&l->url, safe, sizeof safe);
    double cto = o->connect_timeout, cmd = o->command_timeout;
    if (l->url.socket_connect_timeout >= 0) {
        cto = l->url.socket_connect_timeout;
        if (check_seconds("socket_connect_timeout (in the URL)", cto, 0.001, 86400.0, err) < 0)
            return -1;
    }
    if (l->url.socket_timeout >= 0) {
        cmd = l->url.socket_timeout;
        if (check_seconds("socket_timeout (in the URL)", cmd, 0.001, 86400.0, err) < 0)
            return -1;
    }
    l->conn_to_us = (int64_t)llround(cto * 1e6);
    l->cmd_to_us = (int64_t)llround(cmd * 1e6);
    if (l->url.tls) {
        l->tls_ctx = rl_tls_ctx_new(&l->url.tls_opts, tlserr, sizeof tlserr);
        if (!l->tls_ctx)
            return rl_seterr(err, RL_EVALUE, "%s (URL '%s')", tlserr, safe);
    }
    return 0;
}

/* ---- lifetime ---- */

/* WAIT blocks the connection for up to its timeout: half of command_timeout
 * (the stall detector drops a connection that answers nothing for that
 * long) and a quarter of the renew margin (ttl - renew_interval - drift),
 * so an unconfirmed renew leaves time for more attempts before the
 * deadline; at least 1 ms (WAIT 0 would block for ever). */
static int64_t rl_wait_timeout_ms(const rl_lease *l)
{
    int64_t a = l->cmd_to_us / 2000;
    int64_t b = (l->ttl_us - l->renew_us - l->drift_us) / 4000;
    int64_t ms = a < b ? a : b;
    return ms < 1 ? 1 : ms;
}

static void lease_free(rl_lease *l)
{
    rl_synced_forget(l);     /* a script reply kept for WAIT, if any */
    free(l->sync_msg);
    rl_events_forget(l);     /* its undelivered events, if any */
    rl_url_free(&l->url);
    rl_tls_ctx_free(l->tls_ctx);
    free(l->key);
    free(l->tkey);
    free(l->channel);
    free(l->node_id);
    free(l->term);
    free(l->leader);
    free(l->last_error);
    free(l->q_holder);
    free(l->q_err);
    free(l->fatal_msg);
    free(l);
}

void rl_lease_incref(rl_lease *l) { atomic_fetch_add(&l->refs, 1); }

void rl_lease_decref(rl_lease *l)
{
    if (l && atomic_fetch_sub(&l->refs, 1) == 1)
        lease_free(l);
}

/* What the engine runs for this layer's leases (rl_lease_ops). */
static const rl_lease_ops lease_ops = {
    .start = rl_campaign_start,
    .stop = rl_campaign_stop,
    .resign = rl_campaign_resign,
    .query = rl_campaign_query,
    .decref = rl_lease_decref,
};

rl_lease *rl_lease_new(const rl_lease_opts *o, rl_error *err)
{
    char idbuf[320], urlerr[300];
    double ttl = o->ttl;

    if (check_seconds("ttl", ttl, 0.01, 31536000.0, err) < 0)
        return NULL;
    double renew = o->renew_interval > 0 || isnan(o->renew_interval) ? o->renew_interval : ttl / 3;
    double retry = o->retry_interval > 0 || isnan(o->retry_interval) ? o->retry_interval : ttl / 3;
    if (check_interval("renew_interval", renew, ttl, err) < 0 ||
        check_interval("retry_interval", retry, ttl, err) < 0 ||
        check_seconds("connect_timeout", o->connect_timeout, 0.001, 86400.0, err) < 0 ||
        check_seconds("command_timeout", o->command_timeout, 0.001, 86400.0, err) < 0)
        return NULL;
    if (o->min_replicas < 0 || o->min_replicas > RL_MAX_MIN_REPLICAS) {
        rl_seterr(err, RL_EVALUE, "min_replicas must be an int from 0 to %d (how many replicas must "
                  "acknowledge each acquire and renew), got %d", RL_MAX_MIN_REPLICAS, o->min_replicas);
        return NULL;
    }
    if (o->keylen == 0) {
        rl_seterr(err, RL_EVALUE, "key must not be empty");
        return NULL;
    }
    if (o->keylen > RL_MAX_KEY_BYTES) {
        rl_seterr(err, RL_EVALUE, "key is %zu bytes; the limit is %d bytes (use a short name, e.g. a hash of it)",
                  o->keylen, RL_MAX_KEY_BYTES);
        return NULL;
    }
    if (o->node_id && (o->idlen == 0 || o->idlen > RL_MAX_ID_BYTES)) {
        rl_seterr(err, RL_EVALUE, "node_id must be 1..%d bytes, got %zu", RL_MAX_ID_BYTES, o->idlen);
        return NULL;
    }

    rl_lease *l = calloc(1, sizeof *l);
    if (!l) {
        rl_seterr(err, RL_ENOMEM, "out of memory");
        return NULL;
    }
    atomic_init(&l->refs, 1);
    l->ops = &lease_ops;
    l->ep_table = &rl_campaign_ep_cbs;
    if (rl_url_parse(o->url, o->url_len, &l->url, urlerr, sizeof urlerr) < 0) {
        rl_seterr(err, RL_EVALUE, "%s", urlerr);
        free(l);
        return NULL;
    }
    if (url_options(l, o, err) < 0)
        goto fail;
    if (l->url.kind == RL_URL_UNIX && strlen(l->url.path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        rl_seterr(err, RL_EVALUE, "unix socket path is too long (%zu bytes, the limit is %zu)",
                  strlen(l->url.path), sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        goto fail;
    }
    /* Host names are resolved by the connection, on every connect attempt:
     * a name that does not resolve (yet) fails like a refused port. */

    l->id = atomic_fetch_add(&g_next_id, 1);
    l->fork_gen = rl_fork_generation();
    l->mode = o->mode;
    l->auto_renew = o->mode == RL_MODE_NODE ? 1 : o->auto_renew;
    long long ttl_ms = llround(ttl * 1000.0);
    l->ttl_us = ttl_ms * 1000;
    l->renew_us = (int64_t)llround(renew * 1e6);
    l->retry_us = (int64_t)llround(retry * 1e6);
    l->drift_us = l->ttl_us / 100 + 2000;
    snprintf(l->ttl_ms, sizeof l->ttl_ms, "%lld", ttl_ms);
    l->min_replicas = o->min_replicas;
    if (o->min_replicas > 0 && !(l->sync_msg = calloc(1, RL_SYNC_MSG_LEN)))
        goto oom;
    snprintf(l->min_replicas_s, sizeof l->min_replicas_s, "%d", o->min_replicas);
    snprintf(l->wait_ms_s, sizeof l->wait_ms_s, "%lld", (long long)rl_wait_timeout_ms(l));

    l->key = malloc(o->keylen);
    if (!l->key)
        goto oom;
    memcpy(l->key, o->key, o->keylen);
    l->keylen = o->keylen;
    l->tkey = token_key(o->key, o->keylen, &l->tkeylen);
    if (!l->tkey)
        goto oom;
    char prefix[48];
    int plen = snprintf(prefix, sizeof prefix, "redlease:%ld:", l->url.db);
    l->chlen = (size_t)plen + o->keylen;
    l->channel = malloc(l->chlen);
    if (!l->channel)
        goto oom;
    memcpy(l->channel, prefix, (size_t)plen);
    memcpy(l->channel + plen, o->key, o->keylen);

    const char *id = o->node_id;
    size_t idlen = o->idlen;
    if (!id) {
        int n = default_node_id(idbuf, sizeof idbuf, err);
        if (n < 0)
            goto fail;
        id = idbuf;
        idlen = (size_t)n;
    }
    l->node_id = malloc(idlen + 1);
    if (!l->node_id)
        goto oom;
    memcpy(l->node_id, id, idlen);
    l->node_id[idlen] = 0;
    l->idlen = idlen;
    /* The suffix is drawn by the engine before the first acquire. */
    l->termlen = idlen + 1 + RL_TERM_SUFFIX_LEN;
    l->term = malloc(l->termlen + 1);
    if (!l->term)
        goto oom;
    memcpy(l->term, id, idlen);
    l->term[idlen] = '#';
    memset(l->term + idlen + 1, '0', RL_TERM_SUFFIX_LEN);
    l->term[l->termlen] = 0;
    l->term_used = 1;

    rl_campaign_init(l);
    if (l->mode == RL_MODE_WATCH)
        rl_watch_init(l);
    l->pub_phase = RL_P_IDLE;
    return l;
oom:
    rl_seterr(err, RL_ENOMEM, "out of memory");
fail:
    lease_free(l);
    return NULL;
}

/* ---- control ---- */

int rl_lease_stale(const rl_lease *l)
{
    return l->fork_gen != rl_fork_generation();
}

int rl_api_check_fresh(const rl_lease *l, rl_error *err)
{
    if (rl_lease_stale(l))
        return rl_seterr(err, RL_ESTATE, "this object was created before os.fork() and belongs to the "
                         "parent process; create a new one in the child");
    return 0;
}

rl_engine *rl_api_engine_for(rl_lease *l, rl_error *err)
{
    rl_engine *e = atomic_load(&l->eng);
    if (!e) {
        e = rl_engine_get(err);
        if (!e)
            return NULL;
        rl_engine *none = NULL;
        if (!atomic_compare_exchange_strong(&l->eng, &none, e))
            e = none;
    }
    return e;
}

int rl_lease_start(rl_lease *l, rl_error *err)
{
    return start(l, 0, err);
}

static int start(rl_lease *l, int quiet, rl_error *err)
{
    if (rl_api_check_fresh(l, err) < 0)
        return -1;
    rl_engine *e = rl_api_engine_for(l, err);
    if (!e)
        return -1;
    pthread_mutex_lock(&e->mu);
    if (l->pub_phase != RL_P_RUNNING)
        l->pub_phase = RL_P_RUNNING;   /* visible at once; the engine confirms */
    l->fatal_kind = 0;
    l->lock_done = 0;
    pthread_mutex_unlock(&e->mu);
    return quiet ? rl_engine_post_quiet(e, RL_CMD_START, l, err) : rl_engine_post(e, RL_CMD_START, l, err);
}

int rl_lease_start_lock(rl_lease *l, int once, int quiet, rl_error *err)
{
    if (l->mode != RL_MODE_LOCK)
        return rl_seterr(err, RL_ESTATE, "not a lock");
    l->try_once = once;    /* read by the engine after it takes the START */
    return start(l, quiet, err);
}

int rl_lease_query_post(rl_lease *l, uint64_t *ticket, rl_error *err)
{
    if (rl_api_check_fresh(l, err) < 0)
        return -1;
    rl_engine *e = rl_api_engine_for(l, err);
    if (!e)
        return -1;
    pthread_mutex_lock(&e->mu);
    *ticket = l->q_seq + 1;
    pthread_mutex_unlock(&e->mu);
    return rl_engine_post(e, RL_CMD_QUERY, l, err);
}

int rl_lease_stop(rl_lease *l)
{
    return stop(l, 0);
}

int rl_lease_stop_quiet(rl_lease *l)
{
    return stop(l, 1);
}

static int stop(rl_lease *l, int quiet)
{
    rl_engine *e = atomic_load(&l->eng);
    if (!e || rl_lease_stale(l))
        return 0;
    pthread_mutex_lock(&e->mu);
    int idle = l->pub_phase == RL_P_IDLE || l->pub_phase == RL_P_STOPPED;
    if (!idle)
        l->pub_phase = RL_P_STOPPING;
    pthread_mutex_unlock(&e->mu);
    if (idle)
        return 0;
    return quiet ? rl_engine_post_quiet(e, RL_CMD_STOP, l, NULL) : rl_engine_post(e, RL_CMD_STOP, l, NULL);
}

int rl_lease_resign(rl_lease *l)
{
    rl_engine *e = atomic_load(&l->eng);
    if (!e || rl_lease_stale(l))
        return 0;
    return rl_engine_post(e, RL_CMD_RESIGN, l, NULL);
}

/* Waiting for leadership is like threading.Event.wait: a lease that is not
 * started (yet) is simply not leading, and the wait goes on until it leads,
 * the time is up, or the latest attempt failed in a way retrying won't fix. */
/* ---- reads ---- */

int rl_lease_is_leader(const rl_lease *l)
{
    int64_t dl = atomic_load_explicit(&((rl_lease *)l)->deadline, memory_order_acquire);
    return dl != 0 && rl_now_us() < dl && l->fork_gen == rl_fork_generation();
}

int rl_lease_token(const rl_lease *l, int64_t *token)
{
    rl_lease *m = (rl_lease *)l;
    unsigned s1, s2;
    int64_t tok, dl;
    do {
        s1 = atomic_load(&m->seq);
        tok = atomic_load(&m->token);
        dl = atomic_load(&m->deadline);
        s2 = atomic_load(&m->seq);
    } while (s1 != s2 || (s1 & 1));
    if (dl == 0 || rl_now_us() >= dl || l->fork_gen != rl_fork_generation())
        return 0;
    *token = tok;
    return 1;
}

double rl_lease_remaining(const rl_lease *l)
{
    int64_t dl = atomic_load(&((rl_lease *)l)->deadline);
    int64_t now = rl_now_us();
    if (dl == 0 || now >= dl || l->fork_gen != rl_fork_generation())
        return 0.0;
    return (double)(dl - now) / 1e6;
}

uint64_t rl_lease_id(const rl_lease *l) { return l->id; }
double rl_lease_ttl(const rl_lease *l) { return (double)l->ttl_us / 1e6; }
double rl_lease_renew_interval(const rl_lease *l) { return (double)l->renew_us / 1e6; }
double rl_lease_retry_interval(const rl_lease *l) { return (double)l->retry_us / 1e6; }
double rl_lease_connect_timeout(const rl_lease *l) { return (double)l->conn_to_us / 1e6; }
double rl_lease_command_timeout(const rl_lease *l) { return (double)l->cmd_to_us / 1e6; }
int rl_lease_min_replicas(const rl_lease *l) { return l->min_replicas; }
double rl_lease_wait_timeout(const rl_lease *l)
{
    return l->min_replicas > 0 ? (double)strtoll(l->wait_ms_s, NULL, 10) / 1e3 : 0.0;
}

const char *rl_lease_key(const rl_lease *l, size_t *len)
{
    *len = l->keylen;
    return l->key;
}

const char *rl_lease_node_id(const rl_lease *l, size_t *len)
{
    *len = l->idlen;
    return l->node_id;
}

int rl_lease_url_safe(const rl_lease *l, char *buf, size_t n)
{
    return rl_url_format_safe(&l->url, buf, n);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int rl_lease_phase(rl_lease *l)
{
    rl_engine *e = atomic_load(&l->eng);
    if (!e)
        return RL_P_IDLE;
    if (rl_lease_stale(l))
        return RL_P_STOPPED;
    pthread_mutex_lock(&e->mu);
    int phase = l->pub_phase;
    pthread_mutex_unlock(&e->mu);
    return phase;
}

void rl_lease_get_info(rl_lease *l, rl_lease_info *out, int with_rtt)
{
    rl_engine *e = atomic_load(&l->eng);
    memset(out, 0, sizeof *out);
    if (!e)
        return;
    int64_t rtt[RL_RTT_RING];
    unsigned n = 0;
    pthread_mutex_lock(&e->mu);
    out->phase = l->pub_phase;
    /* Never "this node" once it does not lead: the deadline is a clock
     * read, the engine's step-down (which clears it) may come a moment later. */
    int self_stale = l->leader && l->leader_self && !rl_lease_is_leader(l);
    if (l->leader && !self_stale && (out->leader = malloc(l->leaderlen + 1))) {
        memcpy(out->leader, l->leader, l->leaderlen + 1);
        out->leaderlen = l->leaderlen;
    }
    if (l->last_error)
        out->last_error = strdup(l->last_error);
    out->acquired = l->st_acquired;
    out->renewals = l->st_renewals;
    out->renew_failures = l->st_renew_fail;
    out->losses = l->st_losses;
    out->unconfirmed = l->st_unsynced;
    out->last_rtt_us = l->st_last_rtt_us;
    if (l->url.kind == RL_URL_SENTINEL) {
        out->sentinel = 1;
        if (l->pub_ep && l->pub_ep->pub_master[0])
            out->master = strdup(l->pub_ep->pub_master);
        if (l->pub_ep)
            out->sentinels = strdup(l->pub_ep->pub_sentinels);
    }
    if (with_rtt) {
        n = l->st_rtt_n < RL_RTT_RING ? l->st_rtt_n : RL_RTT_RING;
        for (unsigned i = 0; i < n; i++)
            rtt[i] = l->st_rtt[i];
    }
    pthread_mutex_unlock(&e->mu);
    if (n) {
        qsort(rtt, n, sizeof rtt[0], cmp_i64);
        out->rtt_p50_us = rtt[(n - 1) / 2];
        out->rtt_p99_us = rtt[(n * 99 + 99) / 100 - 1];
    }
    if (rl_lease_stale(l))
        out->phase = RL_P_STOPPED;
}

void rl_lease_info_clear(rl_lease_info *info)
{
    free(info->leader);
    free(info->last_error);
    free(info->master);
    free(info->sentinels);
    memset(info, 0, sizeof *info);
}

int rl_engine_next_event(rl_event *out, int64_t max_us)
{
    rl_engine *e = rl_engine_get(NULL);   /* the dispatcher may start first */
    if (!e)
        return -1;
    return rl_events_next(e, out, max_us);
}

void rl_engine_get_info(rl_engine_info *out)
{
    rl_engine *e = rl_engine_current();
    memset(out, 0, sizeof *out);
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    out->running = e->thread_started && !e->quit;
    for (rl_endpoint *ep = e->endpoints; ep; ep = ep->next)
        out->endpoints++;
    out->open_connections = (uint64_t)e->fds.n;
    pthread_mutex_unlock(&e->mu);
    out->commands = atomic_load(&e->st_commands);
    out->reconnects = atomic_load(&e->st_reconnects);
    out->connections = atomic_load(&e->st_connections);
    out->leases = atomic_load(&e->st_leases);
    pthread_mutex_lock(&e->ev_mu);
    out->dropped_events = e->ev_dropped;
    pthread_mutex_unlock(&e->ev_mu);
}

#define RL_STR2(x) #x
#define RL_STR(x) RL_STR2(x)

const char *rl_hiredis_version_string(void)
{
    return RL_STR(HIREDIS_MAJOR) "." RL_STR(HIREDIS_MINOR) "." RL_STR(HIREDIS_PATCH);
}

void rl_hiredis_version(int *major, int *minor, int *patch)
{
    *major = HIREDIS_MAJOR;
    *minor = HIREDIS_MINOR;
    *patch = HIREDIS_PATCH;
}

int rl_has_tls(void)
{
    return 1;  /* rediss:// with OpenSSL (rl_tls.c), whatever the hiredis version */
}

int rl_waker_add(int fd, rl_error *err)
{
    return rl_engine_add_waker(fd, err);
}

void rl_waker_remove(int fd)
{
    rl_engine_remove_waker(fd);
}

size_t rl_lease_struct_size(void)
{
    return sizeof(rl_lease);
}
