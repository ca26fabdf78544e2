/* The event queue (rl_events.c) without Redis: events are emitted by hand
 * for leases that are never started, then taken as the dispatcher would.
 * Checks the coalescing rules, the bound, the order, and that a lease freed
 * with undelivered events leaves the queue (ASan sees a use after free). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../ext/core/redlease.h"
#include "../../ext/core/rl_engine.h"
#include "../../ext/core/rl_types.h"

static int passed, failed;

#define CHECK(cond) do { if (cond) passed++; else { failed++; \
    fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); } } while (0)

static rl_engine *eng;

static rl_lease *mk(const char *key)
{
    rl_error err = {0};
    const char *url = "redis://127.0.0.1:1/0";
    rl_lease_opts o = {.url = url, .url_len = strlen(url), .key = key, .keylen = strlen(key),
                       .ttl = 1.0, .connect_timeout = 1.0, .command_timeout = 1.0};
    rl_lease *l = rl_lease_new(&o, &err);
    if (!l) {
        fprintf(stderr, "rl_lease_new: %s\n", err.msg);
        exit(1);
    }
    atomic_store(&l->eng, eng);   /* as rl_lease_start would */
    return l;
}

static void emit(rl_lease *l, int kind, int64_t token, const char *text)
{
    rl_engine_emit(eng, l, kind, token, text, text ? strlen(text) : 0);
}

typedef struct got {
    uint64_t id;
    int kind;
    int64_t token;
    char text[32];
} got;

/* Takes every event now queued; returns how many. */
static int drain(got *out, int max)
{
    int n = 0;
    rl_event ev;
    while (rl_engine_next_event(&ev, 0) == 1) {
        if (n < max) {
            out[n].id = ev.lease_id;
            out[n].kind = ev.kind;
            out[n].token = ev.token;
            snprintf(out[n].text, sizeof out[n].text, "%s", ev.text ? ev.text : "-");
        }
        n++;
        free(ev.text);
    }
    return n;
}

static int is(const got *g, int kind, int64_t token, const char *text)
{
    return g->kind == kind && g->token == token && (!text || strcmp(g->text, text) == 0);
}

static void test_order_kept(void)
{
    rl_lease *l = mk("a");
    got g[16];
    emit(l, RL_EV_ELECTED, 1, NULL);
    emit(l, RL_EV_LEADER, 0, "me");
    emit(l, RL_EV_REVOKED, 1, "lost");
    emit(l, RL_EV_ELECTED, 2, NULL);
    int n = drain(g, 16);
    CHECK(n == 4);
    CHECK(is(&g[0], RL_EV_ELECTED, 1, NULL));
    CHECK(is(&g[1], RL_EV_LEADER, 0, "me"));
    CHECK(is(&g[2], RL_EV_REVOKED, 1, "lost"));
    CHECK(is(&g[3], RL_EV_ELECTED, 2, NULL));
    rl_lease_decref(l);
}

/* Checks the term events of g[0..n): they alternate (starting with `first`),
 * tokens never go down, a loss covers the election before it. */
static void check_terms(const got *g, int n, int first)
{
    int want = first;
    int64_t prev = 0;
    for (int i = 0; i < n; i++) {
        if (g[i].kind != RL_EV_ELECTED && g[i].kind != RL_EV_REVOKED)
            continue;
        CHECK(g[i].kind == want);
        CHECK(g[i].token >= prev);
        if (g[i].kind == RL_EV_ELECTED)
            CHECK(g[i].token > prev || prev == 0);
        prev = g[i].token;
        want = want == RL_EV_ELECTED ? RL_EV_REVOKED : RL_EV_ELECTED;
    }
}

/* The last event of `kind` in g[0..n), or NULL. */
static const got *last_of(const got *g, int n, int kind)
{
    const got *r = NULL;
    for (int i = 0; i < n; i++)
        if (g[i].kind == kind)
            r = &g[i];
    return r;
}

/* Many terms while nobody takes events: bounded, and every election that
 * comes out is followed by a loss covering it, the last loss with the
 * latest token and reason; only the latest leader and error remain. */
static void test_terms_bounded(void)
{
    rl_lease *l = mk("b");
    got g[32];
    char why[32];
    for (int t = 1; t <= 10000; t++) {
        emit(l, RL_EV_ELECTED, t, NULL);
        emit(l, RL_EV_LEADER, 0, t % 2 ? "me" : "other");
        snprintf(why, sizeof why, "lost %d", t);
        emit(l, RL_EV_REVOKED, t, why);
        emit(l, RL_EV_ERROR, 0, t % 2 ? "e1" : "e2");
        emit(l, RL_EV_RECOVERED, 0, NULL);
    }
    emit(l, RL_EV_ELECTED, 10001, NULL);
    int n = drain(g, 32);
    CHECK(n <= RL_EVBOX_SLOTS);
    check_terms(g, n, RL_EV_ELECTED);
    CHECK(g[0].kind == RL_EV_ELECTED && g[0].token == 1);   /* the first term is told */
    CHECK(is(&g[n - 1], RL_EV_ELECTED, 10001, NULL));
    const got *r = last_of(g, n, RL_EV_REVOKED);
    CHECK(r && is(r, RL_EV_REVOKED, 10000, "lost 10000"));
    const got *ld = last_of(g, n, RL_EV_LEADER);
    CHECK(ld && strcmp(ld->text, "other") == 0);
    const got *er = last_of(g, n, RL_EV_ERROR);
    CHECK(er && strcmp(er->text, "e2") == 0);
    rl_lease_decref(l);
}

/* A loss is never dropped: after a delivered election the loss comes
 * first, later terms fold into it; with only losses (a lock hears no
 * elections) they merge into the latest. */
static void test_losses_merge(void)
{
    rl_lease *l = mk("c");
    got g[32];
    emit(l, RL_EV_ELECTED, 5, NULL);
    CHECK(drain(g, 32) == 1);
    emit(l, RL_EV_REVOKED, 5, "lost");
    for (int t = 6; t <= 1000; t++) {
        emit(l, RL_EV_ELECTED, t, NULL);
        emit(l, RL_EV_REVOKED, t, t == 1000 ? "resigned" : "lost");
    }
    emit(l, RL_EV_ELECTED, 1001, NULL);
    int n = drain(g, 32);
    CHECK(n <= RL_EVBOX_SLOTS);
    CHECK(g[0].kind == RL_EV_REVOKED);
    check_terms(g, n, RL_EV_REVOKED);
    CHECK(n >= 2 && is(&g[n - 2], RL_EV_REVOKED, 1000, "resigned"));
    CHECK(is(&g[n - 1], RL_EV_ELECTED, 1001, NULL));
    for (int t = 1; t <= 100; t++)
        emit(l, RL_EV_REVOKED, 2000 + t, t == 100 ? "expired" : "lost");
    n = drain(g, 32);
    CHECK(n >= 1 && n <= RL_EVBOX_SLOTS);
    for (int i = 1; i < n; i++)
        CHECK(g[i].token > g[i - 1].token);
    CHECK(is(&g[n - 1], RL_EV_REVOKED, 2100, "expired"));
    rl_lease_decref(l);
}

/* Errors: the latest, with a recovery after it only if there was one; a
 * watch's first report stays "initial". */
static void test_errors_and_initial(void)
{
    rl_lease *l = mk("d");
    got g[32];
    char text[16];
    emit(l, RL_EV_LEADER, RL_WATCH_INITIAL, "x");
    for (int i = 0; i < 20; i++) {
        snprintf(text, sizeof text, "y%d", i);
        emit(l, RL_EV_LEADER, RL_WATCH_ELECTED, text);
    }
    int n = drain(g, 32);
    CHECK(n >= 1 && n <= RL_EVBOX_SLOTS);
    CHECK(g[0].kind == RL_EV_LEADER && g[0].token == RL_WATCH_INITIAL);
    CHECK(strcmp(g[n - 1].text, "y19") == 0);
    for (int i = 0; i < 20; i++) {
        snprintf(text, sizeof text, "e%d", i);
        emit(l, RL_EV_ERROR, 0, text);
        emit(l, RL_EV_RECOVERED, 0, NULL);
    }
    emit(l, RL_EV_ERROR, 0, "last");
    n = drain(g, 32);
    CHECK(n >= 1 && n <= RL_EVBOX_SLOTS);
    CHECK(is(&g[n - 1], RL_EV_ERROR, 0, "last"));
    for (int i = 1; i < n; i++)     /* errors and recoveries alternate */
        CHECK(g[i].kind != g[i - 1].kind);
    rl_lease_decref(l);
}

/* Leases take turns; a lease freed with events leaves the queue. */
static void test_fair_and_freed(void)
{
    rl_lease *a = mk("e"), *b = mk("f"), *c = mk("g");
    got g[16];
    emit(a, RL_EV_ELECTED, 1, NULL);
    emit(a, RL_EV_REVOKED, 1, "lost");
    emit(b, RL_EV_ELECTED, 1, NULL);
    emit(c, RL_EV_ELECTED, 1, NULL);
    emit(c, RL_EV_LEADER, 0, "c");
    uint64_t bid = rl_lease_id(b);
    rl_lease_decref(b);            /* freed with an event queued */
    int n = drain(g, 16);
    CHECK(n == 4);
    for (int i = 0; i < n && i < 16; i++)
        CHECK(g[i].id != bid);
    CHECK(g[0].id == rl_lease_id(a) && g[1].id == rl_lease_id(c));
    CHECK(g[2].id == rl_lease_id(a) && g[2].kind == RL_EV_REVOKED);
    CHECK(g[3].id == rl_lease_id(c) && g[3].kind == RL_EV_LEADER);
    /* And one freed while still queued, with others behind it. */
    emit(a, RL_EV_ELECTED, 2, NULL);
    emit(c, RL_EV_REVOKED, 1, "stopped");
    rl_lease_decref(a);
    n = drain(g, 16);
    CHECK(n == 1 && g[0].id == rl_lease_id(c) && is(&g[0], RL_EV_REVOKED, 1, "stopped"));
    emit(c, RL_EV_ELECTED, 2, NULL);
    rl_lease_decref(c);            /* the last: nothing left behind */
    CHECK(drain(g, 16) == 0);
    rl_engine_info info;
    rl_engine_get_info(&info);
    CHECK(info.dropped_events == 0);
}

int main(void)
{
    rl_error err = {0};
    eng = rl_engine_get(&err);
    if (!eng) {
        fprintf(stderr, "no engine: %s\n", err.msg);
        return 1;
    }
    test_order_kept();
    test_terms_bounded();
    test_losses_merge();
    test_errors_and_initial();
    test_fair_and_freed();
    CHECK(rl_engine_shutdown(3000000) == 0);
    rl_engine_destroy();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
