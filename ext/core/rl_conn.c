/* The connection's transport: resolve, socket, connect, stream handshake,
 * buffered writes, reads fed to hiredis's reply reader, the callback FIFO,
 * timeouts and reconnect backoff.  See rl_conn.h. */
#include "rl_conn.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include "rl_clock.h"
#include "rl_conn_hs.h"
#include "rl_engine.h"
#include "rl_error.h"
#include "rl_resolve.h"
#include "rl_sock.h"
#include "rl_stream.h"
#include "rl_tls.h"
#include "rl_wire.h"

#define RL_CONN_BACKOFF_MIN_US 25000
#define RL_CONN_BACKOFF_MAX_US 2000000
#define RL_CONN_FATAL_BACKOFF_US 3000000
#define RL_CONN_READ_CHUNK 16384
#define RL_CONN_READ_ROUNDS 64          /* per poll wake-up: others get a turn */

static void conn_timer(rl_timer *t, int64_t now);
static void try_next_addr(rl_conn *c);
static void conn_fail(rl_conn *c, const char *why, int fatal_kind);

void rl_conn_init(rl_conn *c, rl_engine *eng, const rl_conn_cfg *cfg,
                  const rl_conn_cbs *cbs, void *owner)
{
    memset(c, 0, sizeof *c);
    c->eng = eng;
    c->cfg = *cfg;
    c->cbs = cbs;
    c->owner = owner;
    c->is_sub = cfg->is_sub;
    c->fd = -1;
    c->state = RL_C_DOWN;
    rl_timer_init(&c->timer, conn_timer);
}

/* Every callback still owed a reply gets NULL, once, in order.  Callbacks
 * may queue more orphans (a close from inside one): they run too. */
static void run_orphans(rl_conn *c)
{
    while (c->orphans.n) {
        rl_pend p = rl_fifo_pop(&c->orphans);
        p.fn(NULL, p.priv);
    }
}

/* ---- fds ---- */

static void set_fd(rl_conn *c, int fd, int sock, short events)
{
    c->fd = fd;
    c->sock = sock;
    c->events = events;
}

static void close_fd(rl_conn *c)
{
    if (c->fd < 0)
        return;
    rl_engine_forget_fd(c->eng, c->fd);
    if (c->sock)
        close(c->fd);          /* a resolver's fd belongs to the resolver */
    c->fd = -1;
    c->sock = 0;
    c->events = 0;
}

/* Closes everything of the current attempt; the callbacks owed a reply move
 * to the orphans (run now unless a reply is being dispatched). */
static void teardown(rl_conn *c, int keep_lookup)
{
    c->gen++;
    close_fd(c);
    if (c->stream) {
        c->stream->ops->free(c->stream);
        c->stream = NULL;
    }
    if (c->reader) {
        redisReaderFree(c->reader);
        c->reader = NULL;
    }
    /* A lookup still running is kept for the next attempt (which takes
     * its answer instead of starting another): one thread per connection
     * at most, however slow the resolver. */
    if (c->resolving && !keep_lookup) {
        rl_resolve_release(c->resolving);
        c->resolving = NULL;
    }
    if (c->ai) {
        freeaddrinfo(c->ai);
        c->ai = c->ai_next = NULL;
    }
    rl_wire_reset(c);
    while (c->fifo.n) {
        rl_pend p = rl_fifo_pop(&c->fifo);
        if (p.fn && rl_fifo_push(&c->orphans, p.fn, p.priv, 0) < 0)
            p.fn(NULL, p.priv);    /* out of memory: run it here */
    }
    c->pending = 0;
    c->hs_pending = 0;
    c->state = RL_C_DOWN;
    if (!c->dispatching)
        run_orphans(c);
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
    return rl_engine_jitter(c->eng, d);
}

/* The connection is gone (or never came up): pending callbacks get NULL,
 * the next attempt is planned, the owner is told.  fatal_kind != 0 when
 * the server refused our credentials, database or TLS handshake, which
 * waiting callers must see as an exception. */
static void conn_fail(rl_conn *c, const char *why, int fatal_kind)
{
    int was_ready = c->state == RL_C_READY;
    c->failing = 1;
    teardown(c, 1);
    c->failing = 0;
    c->failures++;
    if (was_ready)
        atomic_fetch_add(&c->eng->st_reconnects, 1);
    /* An owner that no longer needs the connection waits for its next
     * user to reconnect (and the connect timeout must not fire as a
     * reconnect either). */
    if (!c->closed && c->cbs->wanted(c->owner, c))
        rl_heap_set(&c->eng->timers, &c->timer, rl_now_us() + backoff_us(c, fatal_kind != 0));
    else
        rl_heap_cancel(&c->eng->timers, &c->timer);
    c->cbs->down(c->owner, c, why, fatal_kind);
}

static void conn_ready(rl_conn *c)
{
    c->state = RL_C_READY;
    c->failures = 0;
    rl_heap_cancel(&c->eng->timers, &c->timer);
    c->cbs->ready(c->owner, c);
}

/* ---- connecting ---- */

static void stream_handshake(rl_conn *c)
{
    short want = 0;
    int permanent = 0;
    char err[256] = "";
    int rc = c->stream->ops->handshake(c->stream, &want, &permanent, err, sizeof err);
    if (rc == 0) {
        c->events = want ? want : POLLIN;
        return;
    }
    if (rc < 0) {
        char why[640];
        snprintf(why, sizeof why, "TLS handshake with %s failed: %s", c->cfg.display,
                 err[0] ? err : "unknown error");
        conn_fail(c, why, permanent ? RL_ETLS : 0);
        return;
    }
    c->reader = redisReaderCreate();
    if (!c->reader) {
        conn_fail(c, "cannot connect: out of memory", 0);
        return;
    }
    c->state = RL_C_HANDSHAKE;
    c->rd_want = c->wr_want = 0;
    if (rl_hs_start(c) < 0) {
        conn_fail(c, "cannot connect: out of memory", 0);
        return;
    }
    rl_wire_events(c);
}

/* The socket is connected: make the stream on it and shake hands. */
static void connected(rl_conn *c)
{
    char err[256] = "";
    if (c->ai) {
        freeaddrinfo(c->ai);      /* connected: the other addresses are not needed */
        c->ai = c->ai_next = NULL;
    }
    if (c->cfg.tls_ctx)
        c->stream = rl_tls_stream_new(c->cfg.tls_ctx, c->fd, c->cfg.host, err, sizeof err);
    else
        c->stream = rl_stream_plain(c->fd);
    if (!c->stream) {
        char why[640];
        if (c->cfg.tls_ctx) {
            snprintf(why, sizeof why, "TLS with %s failed: %s", c->cfg.display, err[0] ? err : "unknown error");
            conn_fail(c, why, RL_ETLS);
        } else {
            conn_fail(c, "cannot connect: out of memory", 0);
        }
        return;
    }
    c->state = RL_C_STREAM;
    stream_handshake(c);
}

/* Starts a connect to the next address; on to the one after when it fails
 * at once.  When none is left the attempt failed. */
static void try_next_addr(rl_conn *c)
{
    while (c->ai_next) {
        struct addrinfo *a = c->ai_next;
        c->ai_next = a->ai_next;
        int fd;
        int rc = rl_sock_connect(a->ai_family, a->ai_socktype, a->ai_protocol, a->ai_addr,
                                 a->ai_addrlen, &fd, c->last_err, sizeof c->last_err);
        if (rc < 0)
            continue;
        /* A socket the engine does not know of would stay open in a fork child. */
        if (rl_engine_track_fd(c->eng, fd) < 0) {
            close(fd);
            snprintf(c->last_err, sizeof c->last_err, "out of memory");
            continue;
        }
        set_fd(c, fd, 1, POLLOUT);
        if (rc == 1) {
            connected(c);
            return;
        }
        c->state = RL_C_CONNECTING;
        return;                 /* poll for POLLOUT */
    }
    char why[640];
    snprintf(why, sizeof why, "cannot connect to %s: %s", c->cfg.display,
             c->last_err[0] ? c->last_err : "no address to connect to");
    conn_fail(c, why, 0);
}

static void connect_done(rl_conn *c)
{
    int err = rl_sock_result(c->fd);
    if (err == 0) {
        connected(c);
        return;
    }
    snprintf(c->last_err, sizeof c->last_err, "%s", strerror(err));
    close_fd(c);
    if (c->cfg.kind == RL_URL_UNIX)
        c->ai_next = NULL;
    try_next_addr(c);
}

static void resolved(rl_conn *c)
{
    struct addrinfo *res = NULL;
    int gai = 0;
    if (!rl_resolve_take(c->resolving, &res, &gai))
        return;                 /* spurious wake-up */
    close_fd(c);                /* the resolver's fd */
    rl_resolve_release(c->resolving);
    c->resolving = NULL;
    if (!res) {
        char why[640];
        snprintf(why, sizeof why, "cannot resolve host '%s': %s; check the host name in the URL",
                 c->cfg.host, gai_strerror(gai));
        conn_fail(c, why, 0);
        return;
    }
    c->ai = c->ai_next = res;
    try_next_addr(c);
}

static void connect_unix(rl_conn *c)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", c->cfg.path);
    int fd;
    int rc = rl_sock_connect(AF_UNIX, SOCK_STREAM, 0, (struct sockaddr *)&sa, sizeof sa, &fd,
                             c->last_err, sizeof c->last_err);
    if (rc >= 0 && rl_engine_track_fd(c->eng, fd) < 0) {
        close(fd);
        snprintf(c->last_err, sizeof c->last_err, "out of memory");
        rc = -1;
    }
    if (rc < 0) {
        try_next_addr(c);        /* no addresses: fails with last_err */
        return;
    }
    set_fd(c, fd, 1, POLLOUT);
    if (rc == 1)
        connected(c);
    else
        c->state = RL_C_CONNECTING;
}

void rl_conn_connect(rl_conn *c)
{
    if (c->state != RL_C_DOWN || c->failing)
        return;
    c->closed = 0;
    c->last_err[0] = 0;
    c->rd_want = c->wr_want = 0;
    atomic_fetch_add(&c->eng->st_connections, 1);
    c->state = RL_C_RESOLVING;
    /* The connect timeout covers it all: resolve, connect, TLS, handshake. */
    rl_heap_set(&c->eng->timers, &c->timer, rl_now_us() + c->cfg.connect_timeout_us);
    if (c->cfg.kind == RL_URL_UNIX) {
        connect_unix(c);
        return;
    }
    struct addrinfo *res = NULL;
    if (rl_resolve_numeric(c->cfg.host, c->cfg.port, &res) == 0 && res) {
        c->ai = c->ai_next = res;
        try_next_addr(c);
        return;
    }
    /* A name: resolve it again on every attempt, on a thread of its own
     * (or take the answer of the lookup an earlier attempt left running). */
    char err[200];
    if (!c->resolving)
        c->resolving = rl_resolve_start(c->cfg.host, c->cfg.port, err, sizeof err);
    if (!c->resolving) {
        char why[640];
        snprintf(why, sizeof why, "cannot resolve host '%s': %s", c->cfg.host, err);
        conn_fail(c, why, 0);
        return;
    }
    int fd = rl_resolve_fd(c->resolving);
    if (rl_engine_track_fd(c->eng, fd) < 0) {
        conn_fail(c, "cannot connect: out of memory", 0);
        return;
    }
    set_fd(c, fd, 0, POLLIN);
}

/* ---- writing ---- */

int rl_conn_send(rl_conn *c, rl_reply_fn *fn, void *priv,
                 int argc, const char **argv, const size_t *lens)
{
    if (c->state < RL_C_HANDSHAKE)
        return -1;
    int counted = !c->is_sub && fn;
    if (rl_wire_queue(c, fn, priv, counted, argc, argv, lens) < 0)
        return -1;
    atomic_fetch_add(&c->eng->st_commands, 1);
    if (counted) {
        if (c->pending++ == 0) {
            c->progress_us = rl_now_us();
            if (c->state == RL_C_READY)
                rl_heap_set(&c->eng->timers, &c->timer, c->progress_us + c->cfg.command_timeout_us);
        }
    }
    return 0;
}

/* Writes what is queued; 0, or -1 after a failure (the connection is down then). */
static int write_out(rl_conn *c)
{
    char err[256] = "";
    if (rl_wire_write(c, err, sizeof err) == 0)
        return 0;
    char why[640];
    snprintf(why, sizeof why, "connection lost: %s", err[0] ? err : "write failed");
    conn_fail(c, why, rl_tls_stream_refused(c->stream) ? RL_ETLS : 0);
    return -1;
}

/* ---- reading ---- */

/* Hands every complete reply to its callback (or the message handler).
 * A callback may close the connection: then stop. */
static void dispatch(rl_conn *c)
{
    unsigned gen = c->gen;
    c->dispatching++;
    while (c->gen == gen && c->reader) {
        void *r = NULL;
        if (redisReaderGetReply(c->reader, &r) != REDIS_OK) {
            char why[640];
            snprintf(why, sizeof why, "connection lost: protocol error from %s: %s", c->cfg.display,
                     ((redisReader *)c->reader)->errstr);
            c->dispatching--;
            conn_fail(c, why, 0);
            return;
        }
        if (!r)
            break;
        c->progress_us = rl_now_us();
        if (c->fifo.n) {
            rl_pend p = rl_fifo_pop(&c->fifo);
            if (p.counted && c->pending > 0)
                c->pending--;
            p.fn(r, p.priv);
        } else if (c->cbs->message && c->state == RL_C_READY) {
            c->cbs->message(c->owner, c, r);
        }
        freeReplyObject(r);
        if (c->gen == gen && c->state == RL_C_HANDSHAKE && c->hs_pending <= 0) {
            /* The handshake is over: outside the callback's bracket, so
             * that a failure hands out the NULL replies before "down". */
            c->dispatching--;
            if (c->hs_pending == 0)
                conn_ready(c);
            else
                conn_fail(c, c->hs_msg, c->hs_kind);
            c->dispatching++;
        }
    }
    c->dispatching--;
    if (!c->dispatching)
        run_orphans(c);
}

static void read_in(rl_conn *c)
{
    char buf[RL_CONN_READ_CHUNK];
    unsigned gen = c->gen;
    for (int round = 0; round < RL_CONN_READ_ROUNDS && c->gen == gen; round++) {
        short want = 0;
        char err[256] = "";
        long n = c->stream->ops->read(c->stream, buf, sizeof buf, &want, err, sizeof err);
        if (n > 0) {
            if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK) {
                conn_fail(c, "connection lost: out of memory", 0);
                return;
            }
            dispatch(c);
            /* A short read drained the socket: poll (level-triggered) tells
             * when there is more, without a read that would only say EAGAIN. */
            if ((size_t)n < sizeof buf && c->gen == gen && !c->stream->ops->pending(c->stream))
                return;
            continue;
        }
        if (n < 0 && want) {
            /* Whatever the stream buffered was read and is incomplete (a
             * partial TLS record): poll for the rest. */
            c->rd_want = want == POLLIN ? 0 : want;
            rl_wire_events(c);
            return;
        }
        char why[640];
        if (n == 0)
            snprintf(why, sizeof why, "connection closed by %s", c->cfg.display);
        else
            snprintf(why, sizeof why, "connection lost: %s", err[0] ? err : "read failed");
        conn_fail(c, why, rl_tls_stream_refused(c->stream) ? RL_ETLS : 0);
        return;
    }
}

void rl_conn_flush(rl_conn *c)
{
    if (c->state < RL_C_HANDSHAKE || !c->stream)
        return;
    unsigned gen = c->gen;
    if (c->stream->ops->pending(c->stream))
        read_in(c);
    if (c->gen == gen && c->olen > c->opos && !c->wr_want)
        (void)write_out(c);
}

void rl_conn_handle(rl_conn *c, short revents)
{
    unsigned gen = c->gen;
    switch (c->state) {
    case RL_C_RESOLVING:
        if (revents & POLLIN)
            resolved(c);
        return;
    case RL_C_CONNECTING:
        connect_done(c);
        return;
    case RL_C_STREAM:
        stream_handshake(c);
        return;
    case RL_C_HANDSHAKE:
    case RL_C_READY:
        break;
    default:
        return;
    }
    /* A stream that wanted the other direction gets its call either way. */
    if (revents & (POLLIN | POLLHUP | POLLERR) || (c->rd_want && (revents & c->rd_want)))
        read_in(c);
    if (c->gen == gen && c->olen > c->opos && (revents & (POLLOUT | POLLIN | POLLERR | POLLHUP)))
        (void)write_out(c);
}

/* ---- closing ---- */

void rl_conn_set_addr(rl_conn *c, const char *host, int port, const char *why)
{
    if (c->state != RL_C_DOWN)
        rl_conn_drop(c, why);
    c->cfg.host = host;
    c->cfg.port = port;
}

void rl_conn_drop(rl_conn *c, const char *why)
{
    if (c->state == RL_C_DOWN)
        return;
    conn_fail(c, why, 0);
}

void rl_conn_close(rl_conn *c)
{
    c->closed = 1;
    rl_heap_cancel(&c->eng->timers, &c->timer);
    c->failing = 1;
    teardown(c, 0);
    c->failing = 0;
}

void rl_conn_free(rl_conn *c)
{
    rl_conn_close(c);
    rl_wire_free(c);
}

static void conn_timer(rl_timer *t, int64_t now)
{
    rl_conn *c = (rl_conn *)((char *)t - offsetof(rl_conn, timer));
    char why[640];
    switch (c->state) {
    case RL_C_DOWN:
        rl_conn_connect(c);
        break;
    case RL_C_RESOLVING:
        snprintf(why, sizeof why, "cannot resolve host '%s': no answer within %.3f s (connect_timeout); "
                 "check the host name in the URL and the resolver", c->cfg.host,
                 (double)c->cfg.connect_timeout_us / 1e6);
        rl_conn_drop(c, why);
        break;
    case RL_C_STREAM: {
        /* A TLS server that never answered: a plain port (waiting for a
         * newline the ClientHello may not have) or a frozen server -- they
         * look the same, so it stays a transient failure, but it says so. */
        char tls[320];
        if (rl_tls_stream_no_answer(c->stream, tls, sizeof tls)) {
            snprintf(why, sizeof why, "cannot connect to %s: %s", c->cfg.display, tls);
            rl_conn_drop(c, why);
            break;
        }
    }
        /* fall through */
    case RL_C_CONNECTING:
    case RL_C_HANDSHAKE:
        snprintf(why, sizeof why, "cannot connect to %s: timed out after %.3f s (connect_timeout)",
                 c->cfg.display, (double)c->cfg.connect_timeout_us / 1e6);
        rl_conn_drop(c, why);
        break;
    case RL_C_READY:
        if (c->pending <= 0)
            break;
        if (now - c->progress_us >= c->cfg.command_timeout_us) {
            snprintf(why, sizeof why, "no reply from %s within %.3f s (command_timeout); reconnecting",
                     c->cfg.display, (double)c->cfg.command_timeout_us / 1e6);
            rl_conn_drop(c, why);
        } else {
            rl_heap_set(&c->eng->timers, &c->timer, c->progress_us + c->cfg.command_timeout_us);
        }
        break;
    }
}
