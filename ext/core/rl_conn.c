#include "rl_conn.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>

#include "rl_clock.h"
#include "rl_endpoint.h"
#include "rl_engine.h"
#include "rl_error.h"

#define RL_CONN_BACKOFF_MIN_US 25000
#define RL_CONN_BACKOFF_MAX_US 2000000
#define RL_CONN_FATAL_BACKOFF_US 3000000

static void conn_timer(rl_timer *t, int64_t now);

void rl_conn_init(rl_conn *c, rl_endpoint *ep, int is_sub)
{
    memset(c, 0, sizeof *c);
    c->ep = ep;
    c->is_sub = is_sub;
    c->fd = -1;
    c->state = RL_C_DOWN;
    rl_timer_init(&c->timer, conn_timer);
}

/* ---- hiredis event hooks: record interest, the loop polls for it ---- */
static void hook_add_read(void *p) { ((rl_conn *)p)->events |= POLLIN; }
static void hook_del_read(void *p) { ((rl_conn *)p)->events &= ~POLLIN; }
static void hook_add_write(void *p) { ((rl_conn *)p)->events |= POLLOUT; }
static void hook_del_write(void *p) { ((rl_conn *)p)->events &= ~POLLOUT; }

static void hook_cleanup(void *p)
{
    rl_conn *c = p;
    /* Runs while hiredis frees the context; our state lives in rl_conn,
     * which outlives it, so there is nothing to free here. */
    if (c->fd >= 0)
        rl_engine_forget_fd(c->ep->eng, c->fd);
    c->fd = -1;
    c->events = 0;
}

/* -1 if the socket cannot be tracked (out of memory): a socket the engine
 * does not know of would stay open in a fork child, so it is not used. */
static int attach(rl_conn *c, redisAsyncContext *ac)
{
    ac->ev.data = c;
    ac->ev.addRead = hook_add_read;
    ac->ev.delRead = hook_del_read;
    ac->ev.addWrite = hook_add_write;
    ac->ev.delWrite = hook_del_write;
    ac->ev.cleanup = hook_cleanup;
    c->fd = ac->c.fd;
    c->events = 0;
    /* hiredis 0.14 does not open sockets close-on-exec. */
    int fl = fcntl(c->fd, F_GETFD);
    if (fl >= 0)
        (void)fcntl(c->fd, F_SETFD, fl | FD_CLOEXEC);
    if (rl_engine_track_fd(c->ep->eng, c->fd) < 0) {
        c->fd = -1;      /* hook_cleanup has nothing to forget */
        return -1;
    }
    return 0;
}

static int64_t backoff_us(rl_conn *c, int fatal)
{
    int64_t d = RL_CONN_BACKOFF_MIN_US;
    for (unsigned i = 0; i < c->failures && d < RL_CONN_BACKOFF_MAX_US; i++)
        d *= 2;
    if (d > RL_CONN_BACKOFF_MAX_US)
        d = RL_CONN_BACKOFF_MAX_US;
    if (fatal && d < RL_CONN_FATAL_BACKOFF_US)
        d = RL_CONN_FATAL_BACKOFF_US;
    return rl_engine_jitter(c->ep->eng, d);
}

/* The connection is gone (or never came up): plan the next attempt and tell
 * the endpoint.  fatal_kind != 0 when the server refused our credentials or
 * database, which waiting callers must see as an exception. */
static void conn_failed(rl_conn *c, const char *why, int fatal_kind)
{
    rl_engine *eng = c->ep->eng;
    int was_ready = c->state == RL_C_READY;
    c->state = RL_C_DOWN;
    c->pending = 0;
    c->failures++;
    if (was_ready)
        atomic_fetch_add(&eng->st_reconnects, 1);
    /* An endpoint nobody uses waits for its next lease to reconnect (and
     * the connect timeout must not fire as a reconnect either). */
    if (!c->ep->freeing && c->ep->nleases > 0)
        rl_heap_set(&eng->timers, &c->timer, rl_now_us() + backoff_us(c, fatal_kind != 0));
    else
        rl_heap_cancel(&eng->timers, &c->timer);
    rl_endpoint_conn_down(c, why, fatal_kind);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    rl_conn *c = ac->data;
    if (!c || c->ac != ac)
        return;      /* rl_conn_drop already took care of it */
    c->ac = NULL;
    char why[640];
    if (status == REDIS_OK && c->hs_pending < 0)
        snprintf(why, sizeof why, "%s", c->ep->fatal_msg);
    else if (status == REDIS_OK)
        snprintf(why, sizeof why, "connection closed");
    else
        snprintf(why, sizeof why, "connection lost: %s", ac->errstr[0] ? ac->errstr : "I/O error");
    int fatal = c->hs_pending < 0 ? c->ep->fatal_kind : 0;
    conn_failed(c, why, fatal);
}

static void ready(rl_conn *c)
{
    c->state = RL_C_READY;
    c->failures = 0;
    rl_heap_cancel(&c->ep->eng->timers, &c->timer);
    rl_endpoint_conn_ready(c);
}

/* Handshake replies, in order: [AUTH], [SELECT], SCRIPT LOAD x N. */
static void hs_reply(redisAsyncContext *ac, void *r, void *priv)
{
    rl_conn *c = priv;
    redisReply *reply = r;
    (void)ac;
    if (c->ep->freeing || c->hs_pending <= 0 || !reply)
        return;
    rl_conn_got_reply(c);
    if (reply->type == REDIS_REPLY_ERROR) {
        int kind = rl_reply_errkind(reply->str, reply->len);
        const char *what = c->hs_what[c->hs_index];
        char msg[640];
        if (kind == 0) {
            /* LOADING and friends: try again later, not fatal. */
            snprintf(msg, sizeof msg, "%s failed: %.*s", what, (int)(reply->len > 180 ? 180 : reply->len), reply->str);
            c->hs_pending = -1;
            rl_endpoint_set_fatal(c->ep, 0, msg);
        } else {
            if (kind == RL_EPERM)
                ;                      /* an ACL denial, not the credentials */
            else if (strncmp(what, "AUTH", 4) == 0 || strncmp(reply->str, "NOAUTH", 6) == 0 ||
                strncmp(reply->str, "WRONGPASS", 9) == 0)
                kind = RL_EAUTH;
            else if (kind != RL_EAUTH)
                kind = RL_EREDIS;
            if (kind == RL_EAUTH)
                snprintf(msg, sizeof msg, "authentication failed at %s: %.*s; check the user and password in the URL",
                         c->ep->display, (int)(reply->len > 120 ? 120 : reply->len), reply->str);
            else if (kind == RL_EPERM)
                snprintf(msg, sizeof msg, "%s refused by %s: %.*s; the ACL user lacks a permission redlease "
                         "needs (see README, Errors)", what, c->ep->display,
                         (int)(reply->len > 120 ? 120 : reply->len), reply->str);
            else
                snprintf(msg, sizeof msg, "%s refused by %s: %.*s", what, c->ep->display,
                         (int)(reply->len > 120 ? 120 : reply->len), reply->str);
            c->hs_pending = -1;
            rl_endpoint_set_fatal(c->ep, kind, msg);
        }
        redisAsyncDisconnect(c->ac);
        return;
    }
    if (reply->type == REDIS_REPLY_STRING && strncmp(c->hs_what[c->hs_index], "SCRIPT", 6) == 0) {
        int s = c->hs_script[c->hs_index];
        snprintf(c->ep->sha[s], sizeof c->ep->sha[s], "%.*s", (int)reply->len, reply->str);
    }
    c->hs_index++;
    if (--c->hs_pending == 0)
        ready(c);
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    rl_conn *c = ac->data;
    if (!c || c->ac != ac)
        return;
    if (status != REDIS_OK) {
        char why[640];
        snprintf(why, sizeof why, "cannot connect to %s: %s", c->ep->display,
                 ac->errstr[0] ? ac->errstr : "connection failed");
        c->ac = NULL;    /* hiredis frees the context after this callback */
        conn_failed(c, why, 0);
        return;
    }
    c->state = RL_C_HANDSHAKE;
    if (c->ep->url.kind == RL_URL_TCP && redisEnableKeepAlive(&ac->c) != REDIS_OK) {
        /* Not fatal: clear the error hiredis recorded and go on without. */
        ac->c.err = 0;
        ac->c.errstr[0] = 0;
        ac->err = 0;
    }
    rl_endpoint *ep = c->ep;
    c->hs_pending = 0;
    c->hs_index = 0;
    int n = 0;
    if (ep->url.password) {
        const char *argv[3] = {"AUTH", NULL, NULL};
        size_t lens[3] = {4, 0, 0};
        int argc = 2;
        if (ep->url.user) {
            argv[1] = ep->url.user;
            lens[1] = strlen(ep->url.user);
            argv[2] = ep->url.password;
            lens[2] = strlen(ep->url.password);
            argc = 3;
        } else {
            argv[1] = ep->url.password;
            lens[1] = strlen(ep->url.password);
        }
        c->hs_what[n++] = "AUTH";
        if (rl_conn_send(c, hs_reply, c, argc, argv, lens) < 0)
            goto fail;
    }
    if (!c->is_sub && ep->url.db != 0) {
        char db[24];
        int len = snprintf(db, sizeof db, "%ld", ep->url.db);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, (size_t)len};
        c->hs_what[n++] = "SELECT (database index)";
        if (rl_conn_send(c, hs_reply, c, 2, argv, lens) < 0)
            goto fail;
    }
    if (!c->is_sub) {
        for (int s = 0; s < RL_SCRIPT_COUNT; s++) {
            const char *argv[3] = {"SCRIPT", "LOAD", rl_script_text[s]};
            size_t lens[3] = {6, 4, strlen(rl_script_text[s])};
            c->hs_script[n] = s;
            c->hs_what[n++] = "SCRIPT LOAD";
            if (rl_conn_send(c, hs_reply, c, 3, argv, lens) < 0)
                goto fail;
        }
    }
    c->hs_pending = n;
    if (n == 0)
        ready(c);
    return;
fail:
    c->hs_pending = -1;
    redisAsyncDisconnect(ac);
}

void rl_conn_connect(rl_conn *c)
{
    rl_endpoint *ep = c->ep;
    rl_engine *eng = ep->eng;
    redisAsyncContext *ac;
    if (c->ac || ep->freeing)
        return;
    if (ep->url.kind == RL_URL_UNIX)
        ac = redisAsyncConnectUnix(ep->url.path);
    else
        ac = redisAsyncConnect(ep->addr, ep->url.port);
    if (!ac) {
        conn_failed(c, "cannot connect: out of memory", 0);
        return;
    }
    if (ac->err) {
        char why[640];
        snprintf(why, sizeof why, "cannot connect to %s: %s", ep->display, ac->errstr);
        redisAsyncFree(ac);
        conn_failed(c, why, 0);
        return;
    }
    if (attach(c, ac) < 0) {
        redisAsyncFree(ac);
        conn_failed(c, "cannot connect: out of memory", 0);
        return;
    }
    atomic_fetch_add(&eng->st_connections, 1);
    c->ac = ac;
    ac->data = c;
    c->state = RL_C_CONNECTING;
    c->pending = 0;
    c->hs_pending = 0;
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    redisAsyncSetConnectCallback(ac, on_connect); /* arms the first write event */
    rl_heap_set(&eng->timers, &c->timer, rl_now_us() + ep->connect_timeout_us);
}

int rl_conn_send(rl_conn *c, redisCallbackFn *fn, void *priv,
                 int argc, const char **argv, const size_t *lens)
{
    if (!c->ac || c->state < RL_C_HANDSHAKE)
        return -1;
    if (redisAsyncCommandArgv(c->ac, fn, priv, argc, argv, lens) != REDIS_OK)
        return -1;
    atomic_fetch_add(&c->ep->eng->st_commands, 1);
    if (!c->is_sub) {
        if (c->pending++ == 0) {
            c->progress_us = rl_now_us();
            if (c->state == RL_C_READY)
                rl_heap_set(&c->ep->eng->timers, &c->timer, c->progress_us + c->ep->command_timeout_us);
        }
    }
    return 0;
}

void rl_conn_got_reply(rl_conn *c)
{
    if (c->is_sub || c->pending <= 0)
        return;
    c->pending--;
    c->progress_us = rl_now_us();
}

void rl_conn_drop(rl_conn *c, const char *why)
{
    redisAsyncContext *ac = c->ac;
    if (!ac)
        return;
    c->ac = NULL;        /* on_disconnect sees a foreign context and returns */
    redisAsyncFree(ac);  /* pending callbacks run with NULL replies */
    conn_failed(c, why, 0);
}

void rl_conn_close(rl_conn *c)
{
    redisAsyncContext *ac = c->ac;
    rl_heap_cancel(&c->ep->eng->timers, &c->timer);
    c->ac = NULL;
    c->state = RL_C_DOWN;
    if (ac)
        redisAsyncFree(ac);
}

static void conn_timer(rl_timer *t, int64_t now)
{
    rl_conn *c = (rl_conn *)((char *)t - offsetof(rl_conn, timer));
    rl_endpoint *ep = c->ep;
    char why[640];
    switch (c->state) {
    case RL_C_DOWN:
        rl_conn_connect(c);
        break;
    case RL_C_CONNECTING:
    case RL_C_HANDSHAKE:
        snprintf(why, sizeof why, "cannot connect to %s: timed out after %.3f s (connect_timeout)",
                 ep->display, (double)ep->connect_timeout_us / 1e6);
        rl_conn_drop(c, why);
        break;
    case RL_C_READY:
        if (c->pending <= 0)
            break;
        if (now - c->progress_us >= ep->command_timeout_us) {
            snprintf(why, sizeof why, "no reply from %s within %.3f s (command_timeout); reconnecting",
                     ep->display, (double)ep->command_timeout_us / 1e6);
            rl_conn_drop(c, why);
        } else {
            rl_heap_set(&ep->eng->timers, &c->timer, c->progress_us + ep->command_timeout_us);
        }
        break;
    }
}

void rl_conn_handle(rl_conn *c, short revents)
{
    redisAsyncContext *ac = c->ac;
    if (!ac)
        return;
    if (revents & (POLLIN | POLLHUP | POLLERR))
        redisAsyncHandleRead(ac);
    /* The read may have freed the context. */
    if (c->ac == ac && (revents & (POLLOUT | POLLERR | POLLHUP)) && (c->events & POLLOUT))
        redisAsyncHandleWrite(ac);
}

static int prefix(const char *s, size_t len, const char *p)
{
    size_t n = strlen(p);
    return len >= n && memcmp(s, p, n) == 0;
}

int rl_reply_is_noscript(const char *s, size_t len)
{
    return prefix(s, len, "NOSCRIPT");
}

int rl_reply_errkind(const char *s, size_t len)
{
    static const char *const transient[] = {
        "LOADING", "READONLY", "OOM", "BUSY", "MASTERDOWN", "TRYAGAIN",
        "CLUSTERDOWN", "NOREPLICAS", NULL,
    };
    for (int i = 0; transient[i]; i++)
        if (prefix(s, len, transient[i]))
            return 0;
    if (prefix(s, len, "NOAUTH") || prefix(s, len, "WRONGPASS"))
        return RL_EAUTH;
    if (prefix(s, len, "NOPERM"))
        return RL_EPERM;
    return RL_EREDIS;
}
