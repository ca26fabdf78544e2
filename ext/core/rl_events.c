/* The event queue between the engine and the binding's dispatcher thread.
 *
 * Lossless with bounded memory: each lease keeps its undelivered events in
 * its own box (rl_evbox, inside the lease), and a lease with events is on
 * the engine's queue once.  While the dispatcher keeps up, every event is
 * delivered as it came.  A slow callback can hold the dispatcher for as
 * long as it likes; once a lease's box is full it is compacted:
 *
 *   - leader changes: only the latest is kept (a pending "initial" report
 *     stays initial, with the newer holder);
 *   - errors: only the latest error, and a recovery after it;
 *   - terms: a loss (REVOKED) is never dropped.  Two losses in a row (a
 *     lock hears no elections) merge into one.  Where [loss, election,
 *     loss] are followed by another election, the middle term is folded
 *     into the loss before it: that loss then carries the later term's
 *     token (a leadership block whose token is not newer than a loss's is
 *     over) and reason.  So every election delivered is followed by a loss
 *     that covers it, and at most [R, E, R, E] remain.
 *
 * A compacted box holds at most 7 events, and the queue is bounded by the
 * number of leases.  The box lives in the lease: freeing the lease takes it
 * off the queue (rl_events_forget), so the queue holds no reference. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rl_clock.h"
#include "rl_engine.h"

#define RL_EVTEXT_MAX 65536   /* longer texts are cut (none are: ids, messages) */

static void slot_remove(rl_evbox *b, int i, int free_text)
{
    if (free_text)
        free(b->ev[i].text);
    memmove(&b->ev[i], &b->ev[i + 1], (size_t)(b->n - i - 1) * sizeof b->ev[0]);
    b->n--;
}

static void remove_kind(rl_evbox *b, int kind, int from)
{
    for (int i = b->n - 1; i >= from; i--)
        if (b->ev[i].kind == kind)
            slot_remove(b, i, 1);
}

static int find_kind(const rl_evbox *b, int kind)
{
    for (int i = 0; i < b->n; i++)
        if (b->ev[i].kind == kind)
            return i;
    return -1;
}

static int is_term(int kind) { return kind == RL_EV_ELECTED || kind == RL_EV_REVOKED; }

/* Index of the k-th last term event (k = 0: the last), -1 if none. */
static int term_back(const rl_evbox *b, int k)
{
    for (int i = b->n - 1; i >= 0; i--)
        if (is_term(b->ev[i].kind) && k-- == 0)
            return i;
    return -1;
}

static int term_is(const rl_evbox *b, int i, int kind) { return i >= 0 && b->ev[i].kind == kind; }

/* dst takes src's token and text (src's text is moved, not copied). */
static void slot_merge(rl_evslot *dst, rl_evslot *src)
{
    dst->token = src->token;
    free(dst->text);
    dst->text = src->text;
    dst->textlen = src->textlen;
    src->text = NULL;
}

/* Adds ev (its text then owned by the box, ev->text set to NULL), coalescing
 * as described above; b has room for one more. */
static void add_coalesced(rl_evbox *b, rl_evslot *ev)
{
    int i, r, e, x;
    switch (ev->kind) {
    case RL_EV_LEADER:
        if ((i = find_kind(b, RL_EV_LEADER)) >= 0) {
            if (b->ev[i].token == RL_WATCH_INITIAL)
                ev->token = RL_WATCH_INITIAL;     /* the first report stays the first */
            remove_kind(b, RL_EV_LEADER, 0);
        }
        break;
    case RL_EV_RECOVERED:
        remove_kind(b, RL_EV_RECOVERED, 0);
        break;
    case RL_EV_ERROR:
        if ((i = find_kind(b, RL_EV_ERROR)) >= 0) {
            remove_kind(b, RL_EV_RECOVERED, i + 1);   /* it recovered from the replaced one */
            slot_remove(b, i, 1);
        }
        break;
    case RL_EV_ELECTED:
        r = term_back(b, 0);
        e = term_back(b, 1);
        x = term_back(b, 2);
        if (term_is(b, r, RL_EV_REVOKED) && term_is(b, e, RL_EV_ELECTED) && term_is(b, x, RL_EV_REVOKED)) {
            slot_merge(&b->ev[x], &b->ev[r]);     /* fold term e..r into the loss x */
            slot_remove(b, r, 1);
            slot_remove(b, e, 1);
        } else if (term_is(b, r, RL_EV_ELECTED)) {
            slot_remove(b, r, 1);                 /* two elections, no loss between: keep the newer */
        }
        break;
    case RL_EV_REVOKED:
        r = term_back(b, 0);
        if (term_is(b, r, RL_EV_REVOKED)) {
            slot_merge(&b->ev[r], ev);            /* a loss after a loss: one, the latest */
            return;
        }
        break;
    }
    b->ev[b->n++] = *ev;
    ev->text = NULL;
}

/* A full box: the same events, coalesced (at most 7 remain). */
static void compact(rl_evbox *b)
{
    rl_evslot old[RL_EVBOX_SLOTS];
    int n = b->n;
    memcpy(old, b->ev, sizeof old);
    b->n = 0;
    for (int i = 0; i < n; i++) {
        add_coalesced(b, &old[i]);
        free(old[i].text);     /* NULL unless merged away */
    }
}

static void box_add(rl_evbox *b, rl_evslot *ev)
{
    if (b->n == RL_EVBOX_SLOTS) {
        compact(b);
        add_coalesced(b, ev);
    } else {
        b->ev[b->n++] = *ev;
        ev->text = NULL;
    }
}

static void queue_append(rl_engine *e, rl_lease *l)
{
    rl_evbox *b = &l->evbox;
    b->q_next = NULL;
    b->q_prev = e->evq_tail;
    if (e->evq_tail)
        e->evq_tail->evbox.q_next = l;
    else
        e->evq_head = l;
    e->evq_tail = l;
}

static void queue_unlink(rl_engine *e, rl_lease *l)
{
    rl_evbox *b = &l->evbox;
    if (b->q_prev)
        b->q_prev->evbox.q_next = b->q_next;
    else
        e->evq_head = b->q_next;
    if (b->q_next)
        b->q_next->evbox.q_prev = b->q_prev;
    else
        e->evq_tail = b->q_prev;
    b->q_prev = b->q_next = NULL;
}

void rl_engine_emit(rl_engine *e, rl_lease *l, int kind, int64_t token, const char *text, size_t len)
{
    rl_evslot ev = {.kind = kind, .token = token};
    if (text) {
        if (len > RL_EVTEXT_MAX)
            len = RL_EVTEXT_MAX;
        ev.text = malloc(len + 1);
        if (ev.text) {
            memcpy(ev.text, text, len);
            ev.text[len] = 0;
            ev.textlen = (uint32_t)len;
        } else if (!is_term(kind)) {
            /* Without its text this event would say something false; a
             * term event still says enough (a loss without its reason). */
            pthread_mutex_lock(&e->ev_mu);
            e->ev_dropped++;
            pthread_mutex_unlock(&e->ev_mu);
            return;
        }
    }
    pthread_mutex_lock(&e->ev_mu);
    rl_evbox *b = &l->evbox;
    box_add(b, &ev);
    if (b->n && !b->queued) {
        b->queued = 1;
        queue_append(e, l);
        e->ev_len++;
    }
    pthread_cond_signal(&e->ev_cv);
    pthread_mutex_unlock(&e->ev_mu);
    free(ev.text);   /* NULL unless merged into another */
}

/* Takes the first event of the first lease on the queue; that lease goes
 * to the back if it has more (a lease with a steady stream of changes does
 * not hold up the others). */
int rl_events_next(rl_engine *e, rl_event *out, int64_t max_us)
{
    struct timespec ts;
    rl_cond_deadline(&ts, max_us);
    pthread_mutex_lock(&e->ev_mu);
    while (!e->evq_head) {
        if (pthread_cond_timedwait(&e->ev_cv, &e->ev_mu, &ts) == ETIMEDOUT)
            break;
    }
    rl_lease *l = e->evq_head;
    if (l) {
        rl_evbox *b = &l->evbox;
        out->lease_id = l->id;
        out->kind = b->ev[0].kind;
        out->token = b->ev[0].token;
        out->text = b->ev[0].text;        /* now the caller's */
        out->textlen = b->ev[0].textlen;
        slot_remove(b, 0, 0);
        queue_unlink(e, l);
        if (b->n) {
            queue_append(e, l);
        } else {
            b->queued = 0;
            e->ev_len--;
        }
    }
    pthread_mutex_unlock(&e->ev_mu);
    return l != NULL;
}

static void box_clear(rl_engine *e, rl_lease *l)
{
    rl_evbox *b = &l->evbox;
    if (b->queued) {
        queue_unlink(e, l);
        b->queued = 0;
        e->ev_len--;
    }
    while (b->n)
        slot_remove(b, b->n - 1, 1);
}

void rl_events_forget(rl_lease *l)
{
    rl_engine *e = atomic_load(&l->eng);
    if (!e)
        return;      /* never started: it has had no events */
    pthread_mutex_lock(&e->ev_mu);
    box_clear(e, l);
    pthread_mutex_unlock(&e->ev_mu);
}

void rl_events_clear(rl_engine *e)
{
    pthread_mutex_lock(&e->ev_mu);
    while (e->evq_head)
        box_clear(e, e->evq_head);
    pthread_mutex_unlock(&e->ev_mu);
}
