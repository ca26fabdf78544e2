/* The engine's data structures.  Fields are grouped by who may touch them:
 * "engine" fields belong to the engine thread alone; "published" fields are
 * written by the engine thread and read by API threads, either as atomics or
 * under rl_engine.mu. */
#ifndef RL_TYPES_H
#define RL_TYPES_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "rl_heap.h"
#include "rl_map.h"
#include "rl_scripts.h"
#include "rl_url.h"

struct redisReply;
struct rl_tls_ctx;
struct rl_stream;
struct rl_resolve;
struct addrinfo;
typedef struct rl_engine rl_engine;
typedef struct rl_endpoint rl_endpoint;
typedef struct rl_keyent rl_keyent;
typedef struct rl_lease rl_lease;

/* ---- connections (rl_conn.c) ---- */
enum { RL_C_DOWN, RL_C_RESOLVING, RL_C_CONNECTING, RL_C_STREAM, RL_C_HANDSHAKE, RL_C_READY };

/* A reply callback: reply is a struct redisReply *, or NULL when the
 * connection went away before the reply came.  The reply is freed after
 * the callback returns. */
typedef void rl_reply_fn(struct redisReply *reply, void *priv);

struct rl_conn;
/* What a connection tells its owner (called with the owner's pointer). */
typedef struct rl_conn_cbs {
    void (*ready)(void *owner, struct rl_conn *c);
    /* Gone or never came up.  fatal_kind != 0 (RL_EAUTH, RL_ETLS, ...)
     * when trying again will not help by itself. */
    void (*down)(void *owner, struct rl_conn *c, const char *why, int fatal_kind);
    /* Subscriber: every reply once ready (confirmations, messages). */
    void (*message)(void *owner, struct rl_conn *c, struct redisReply *r);
    /* 1 if the owner still wants the connection up (reconnect after a loss). */
    int (*wanted)(void *owner, struct rl_conn *c);
} rl_conn_cbs;

/* What a connection needs to come up; strings are borrowed from the owner
 * and must outlive the connection. */
typedef struct rl_conn_cfg {
    int kind;                      /* RL_URL_TCP or RL_URL_UNIX */
    const char *host;              /* TCP: name or literal, resolved on every connect */
    int port;
    const char *path;              /* UNIX */
    struct rl_tls_ctx *tls_ctx;    /* NULL: plain */
    const char *user, *password;   /* AUTH when password != NULL */
    long db;                       /* SELECT when select_db and db != 0 */
    const char *client_name;       /* CLIENT SETNAME (NULL: "redlease") */
    int64_t connect_timeout_us, command_timeout_us;
    const char *display;           /* the URL without the password, for messages */
    int is_sub;                    /* subscriber: no SELECT/SCRIPT LOAD, no stall timeout */
    int select_db, load_scripts;   /* which handshake commands */
    int check_role;                /* ROLE must answer "master" (Sentinel): else the attempt fails */
    char (*sha)[48];               /* SCRIPT LOAD answers, RL_SCRIPT_COUNT of them */
} rl_conn_cfg;

typedef struct rl_pend {
    rl_reply_fn *fn;
    void *priv;
    int counted;                   /* counts in rl_conn.pending */
} rl_pend;

typedef struct rl_fifo {
    rl_pend *v;
    size_t head, n, cap;
} rl_fifo;

typedef struct rl_conn {
    rl_engine *eng;
    rl_conn_cfg cfg;
    const rl_conn_cbs *cbs;
    void *owner;
    int is_sub;
    int fd;                        /* socket or resolver fd, -1 when none */
    int sock;                      /* 1: fd is our socket (0: the resolver's) */
    short events;                  /* POLLIN / POLLOUT to poll for */
    short rd_want, wr_want;        /* what the stream asked for */
    int state;
    unsigned gen;                  /* bumped by every teardown */
    int dispatching;               /* inside reply callbacks */
    int closed;                    /* rl_conn_close: no reconnect */
    int failing;                   /* tearing down: no connect meanwhile */
    struct rl_stream *stream;
    void *reader;                  /* redisReader * */
    struct rl_resolve *resolving;
    struct addrinfo *ai, *ai_next; /* addresses to try, the next one */
    char last_err[160];            /* why the last address failed */
    char *obuf;                    /* formatted commands not yet written */
    size_t olen, opos, ocap;
    rl_fifo fifo;                  /* reply callbacks in send order */
    rl_fifo orphans;               /* callbacks owed a NULL reply */
    int hs_pending;                /* handshake replies still expected, -1 failed */
    int hs_kind;                   /* failed: rl_errkind (0: try again later) */
    char hs_msg[640];              /* failed: why */
    int not_master;                /* the last attempt failed on ROLE: the server is not the master */
    int hs_index;                  /* which handshake reply comes next */
    const char *hs_what[10];        /* name of each handshake command */
    int hs_script[10];              /* script id of each SCRIPT LOAD */
    unsigned failures;             /* consecutive failed attempts (backoff) */
    rl_timer timer;                /* reconnect, connect timeout, stall check */
    long pending;                  /* commands sent, replies not yet seen */
    int64_t progress_us;           /* last reply, or send when pending was 0 */
} rl_conn;

/* ---- one Redis server as seen by this process ---- */
struct rl_endpoint {
    rl_endpoint *next;
    rl_engine *eng;
    rl_url url;
    char display[256];             /* URL with the password masked */
    int64_t connect_timeout_us, command_timeout_us;
    rl_conn cmd, sub;
    struct rl_tls_ctx *tls_ctx;    /* rediss://: a reference to the first lease's context (rl_tls.h), NULL otherwise */
    int synced;                    /* serves leases with min_replicas > 0 (WAIT blocks its connection) */
    /* redis+sentinel://: the topology names the master the connections go to */
    struct rl_topo *topo;          /* NULL for other URLs */
    char mhost[256];               /* the master's host ("" while unknown), the connections' cfg.host */
    int mport;                     /* 0 while unknown */
    char mdisplay[600];            /* the connections' cfg.display: master address and the URL */
    int switching;                 /* moving to another master: its drops ask nothing */
    int evict_checked;             /* maxmemory-policy asked (rl_evict.c) */
    char sha[RL_SCRIPT_COUNT][48];
    rl_map keys;                   /* channel -> rl_keyent */
    rl_lease *leases;              /* attached leases (ep_next list) */
    size_t nleases;
    int freeing;
    rl_timer sweep;                /* drops idle subscriptions and itself */
    int idle_marks;
    /* published under eng->mu */
    int fatal_kind;                /* rl_errkind of a handshake failure, 0 if none */
    char fatal_msg[640];
    char pub_master[280];          /* sentinel: "host:port" of the master, "" while unknown */
    char pub_sentinels[1400];      /* sentinel: rl_topo_describe's lines */
};

/* What an endpoint tells each of its leases, handed down by the lease layer
 * when it attaches one (rl_endpoint_attach): the endpoint does not call up
 * into the state machine. */
typedef struct rl_ep_lease_cbs {
    void (*ready)(rl_lease *l);                       /* command connection up */
    void (*down)(rl_lease *l, const char *why, int fatal_kind);
    void (*message)(rl_lease *l, const char *payload, size_t len);   /* release/acquire notice */
    void (*listening)(rl_lease *l);                   /* subscription confirmed */
    /* The server is no longer the master (Sentinel switch, ROLE, READONLY):
     * a leader steps down now, not at its deadline. */
    void (*demoted)(rl_lease *l, const char *why);
} rl_ep_lease_cbs;

/* ---- the leases of one key on one endpoint ---- */
enum { RL_SUB_NONE, RL_SUB_ON, RL_SUB_LEAVING };

struct rl_keyent {
    rl_endpoint *ep;
    char *channel;
    size_t chlen;
    rl_lease *leases;              /* k_next list */
    size_t nleases;
    int sub;                       /* RL_SUB_* */
    int resub;                     /* subscribe again once LEAVING ends */
    int want;                      /* some lease had to wait: listen for releases */
    int confirmed;                 /* the server confirmed the SUBSCRIBE */
    int idle_marks;
};

/* ---- events for the Python side ---- */
enum { RL_EV_ELECTED = 1, RL_EV_REVOKED, RL_EV_LEADER, RL_EV_ERROR, RL_EV_RECOVERED };

/* One event as handed to the binding (rl_engine_next_event). */
typedef struct rl_event {
    uint64_t lease_id;
    int kind;
    int64_t token;
    char *text;      /* NULL or malloc'd, NUL-terminated */
    size_t textlen;
} rl_event;

/* A lease's undelivered events, in order, under eng->ev_mu (rl_events.c).
 * When the box is full it is compacted: the latest leader change, the
 * latest error and recovery, and at most two terms -- a loss is merged into
 * the loss before it, never dropped.  A lease with events is on the
 * engine's event queue once, so the queue is bounded by the number of
 * leases. */
typedef struct rl_evslot {
    int64_t token;
    char *text;      /* NULL or malloc'd, NUL-terminated */
    uint32_t textlen;
    int kind;
} rl_evslot;

#define RL_EVBOX_SLOTS 16

typedef struct rl_evbox {
    rl_evslot ev[RL_EVBOX_SLOTS];
    int n;
    int queued;                        /* on eng's queue (evq_*) */
    rl_lease *q_prev, *q_next;
} rl_evbox;

/* ---- a lease (one node or lock) ---- */
enum { RL_L_IDLE, RL_L_CAMPAIGN, RL_L_LEADING, RL_L_STOPPING };        /* engine */
enum { RL_P_IDLE, RL_P_RUNNING, RL_P_STOPPING, RL_P_STOPPED };          /* published */
enum { RL_REQ_NONE, RL_REQ_ACQ, RL_REQ_RENEW, RL_REQ_WATCH };
enum { RL_MODE_NODE = 0, RL_MODE_LOCK = 1, RL_MODE_WATCH = 2 };
/* Why a watched key's holder changed (token field of RL_EV_LEADER in watch mode). */
enum { RL_WATCH_INITIAL = 0, RL_WATCH_ELECTED, RL_WATCH_RELEASED, RL_WATCH_EXPIRED };
#define RL_RTT_RING 32
#define RL_SYNC_MSG_LEN 192

/* What the engine does with a lease's commands, handed down by the layer
 * that made the lease (rl_api.c): the engine thread runs the queue and
 * calls these; it does not know the state machine above it. */
typedef struct rl_lease_ops {
    void (*start)(rl_engine *e, rl_lease *l);
    void (*stop)(rl_lease *l);
    void (*resign)(rl_lease *l);
    void (*query)(rl_engine *e, rl_lease *l);
    void (*decref)(rl_lease *l);    /* drop a reference the engine held */
} rl_lease_ops;

struct rl_lease {
    atomic_int refs;
    const rl_lease_ops *ops;        /* set at creation, never changes */
    const struct rl_ep_lease_cbs *ep_table;   /* what its endpoint calls: set at creation (rl_api.c) */
    uint64_t id;
    unsigned fork_gen;
    int mode;
    int auto_renew;

    /* configuration, immutable after rl_lease_new */
    rl_url url;
    struct rl_tls_ctx *tls_ctx;    /* rediss://: made at creation (bad files fail there), one reference */
    char *key;       size_t keylen;
    char *tkey;      size_t tkeylen;    /* fencing counter, same slot */
    char *channel;   size_t chlen;      /* release notifications */
    char *node_id;   size_t idlen;
    char *term;      size_t termlen;    /* value of the current term: node_id#<16 hex> */
    int64_t ttl_us, renew_us, retry_us, conn_to_us, cmd_to_us, drift_us;
    char ttl_ms[24];
    int min_replicas;                  /* > 0: acquire/renew count only after WAIT (rl_synced.c) */
    char min_replicas_s[12], wait_ms_s[24];   /* WAIT's arguments */

    /* published: atomics (read without a lock) */
    _Atomic int64_t deadline;          /* local deadline, 0 when not leading */
    _Atomic int64_t token;
    atomic_uint seq;                   /* odd while deadline/token change */
    rl_engine *_Atomic eng;

    /* published under eng->mu */
    int pub_phase;
    rl_endpoint *pub_ep;               /* the endpoint attached (set/cleared with ep), for stats */
    int lock_done;                     /* lock mode: campaign ended */
    int pub_releasing;                 /* releases in flight */
    /* stop()/resign() calls posted (counted by post() in queue order) and
     * completed: a waiter waits until every one posted so far is done, so
     * a start() from another thread cannot leave it waiting for a stop
     * that was superseded, nor a re-election for a release that is over. */
    uint64_t stops_posted, stops_done;
    uint64_t resigns_posted, resigns_done;
    int try_once;                      /* lock mode: one attempt only (set before START) */
    int rel_answer;                    /* lock mode: the latest release script's answer: 0 none,
                                        * 1 deleted our term, 2 not ours, 3 no answer */
    /* status query results */
    uint64_t q_seq;                    /* completed queries */
    int q_errkind;                     /* 0 or rl_errkind of the last query */
    char *q_holder; size_t q_holderlen;
    long long q_pttl;
    long long q_token;                 /* -1: none issued yet */
    char *q_err;                       /* malloc'd message of a failed query */
    char *leader;  size_t leaderlen;   /* NULL: none seen */
    int leader_self;                   /* leader was published by this lease's own election */
    char *last_error;
    int fatal_kind;                    /* latest attempt ended in a permanent error */
    char *fatal_msg;                   /* malloc'd, with fatal_kind */
    uint64_t st_acquired, st_renewals, st_renew_fail, st_losses;
    uint64_t st_unsynced;              /* acquires/renews WAIT did not confirm */
    int64_t st_last_rtt_us;
    uint32_t st_rtt[RL_RTT_RING];      /* recent renew round trips, µs */
    unsigned st_rtt_n;

    /* engine thread only */
    rl_lease *act_next, *act_prev;
    rl_lease *ep_next, *ep_prev;
    rl_lease *k_next, *k_prev;
    rl_endpoint *ep;
    const rl_ep_lease_cbs *ep_cbs;     /* set by rl_endpoint_attach */
    rl_keyent *kent;
    int phase;
    int busy;                          /* RL_REQ_* in flight */
    int rel_pending;                   /* releases in flight */
    int held;                          /* Redis may hold our value */
    int term_used;                     /* led or released: the next acquire draws a new term */
    int want_stop;
    int want_restart;                  /* start() came while stopping */
    uint64_t stops_taken, resigns_taken;   /* STOP/RESIGN commands taken */
    int rel_seen;                      /* a release was announced while busy */
    int64_t t_send;                    /* when the busy request was sent */
    int64_t resign_until;
    unsigned err_streak;
    rl_timer act_timer;                /* next acquire / renew */
    rl_timer dl_timer;                 /* local deadline */
    int64_t lead_deadline;
    int q_wanted, q_inflight, q_temp;  /* status query; q_temp: attached only for it */
    int watch_started;                 /* watch mode: first status reported */
    unsigned watch_notices;            /* notices (and subscriptions) seen */
    unsigned watch_notices_sent;       /* ... when the status query went out */
    int64_t watch_expiry;              /* when the holder's key expires if not renewed */
    int watch_gone;                    /* key seen gone without a notice: look once more */
    /* min_replicas > 0 (rl_synced.c): the script's reply, kept until WAIT's */
    rl_reply_fn *sync_cb;
    struct redisReply *sync_reply;
    int sync_short;                    /* the reply handed to sync_cb was not confirmed */
    char *sync_msg;                    /* ... and why (RL_SYNC_MSG_LEN, malloc'd when min_replicas > 0) */

    /* under eng->ev_mu */
    rl_evbox evbox;
};


/* ---- commands from API threads ---- */
enum { RL_CMD_START = 1, RL_CMD_STOP, RL_CMD_RESIGN, RL_CMD_SHUTDOWN, RL_CMD_QUERY };

typedef struct rl_cmd {
    struct rl_cmd *next;
    int op;
    rl_lease *lease;  /* holds a reference */
} rl_cmd;

/* A growable set of fds (unordered). */
typedef struct rl_fdvec {
    int *v;
    size_t n, cap;
} rl_fdvec;

struct rl_engine {
    /* run_mu: held by whoever runs the engine loop -- the engine thread, or
     * an API thread that is blocked waiting anyway (rl_engine_drive).  All
     * "engine thread only" state is guarded by it.  Lock order: run_mu, mu,
     * ev_mu. */
    pthread_mutex_t run_mu;
    unsigned turns;               /* under run_mu: turns run by other threads */
    atomic_int driving;           /* an API thread is running turns */
    _Atomic int64_t drive_end_us; /* when the last drive ended */
    int eng_polling;              /* under run_mu: engine thread is in ppoll... */
    int64_t eng_poll_until;       /* ...until then... */
    uint64_t eng_poll_sig;        /* ...on this poll set */
    struct pollfd *drv_pfd;       /* under run_mu: poll set of driving threads */
    struct rl_conn **drv_conn;
    size_t drv_cap;
    pthread_mutex_t mu;
    pthread_cond_t cv;            /* broadcast when anything published changes */
    int wake_fd;                  /* eventfd: wakes the engine thread */
    /* timerfds on RL_CLOCK (CLOCK_BOOTTIME), armed at the absolute time of
     * the next timer before each poll, so a freeze (SIGSTOP, suspend) does
     * not leave a poll sleeping out its relative timeout: one for the
     * engine thread, one for whoever drives under run_mu.  -1: none
     * (relative timeouts only). */
    int tfd_eng, tfd_drv;
    pthread_t thread;
    int thread_started;
    int quit;                     /* under mu */
    int shutdown;                 /* under mu: no more starts */
    rl_cmd *cmd_head, *cmd_tail;  /* under mu */
    rl_fdvec fds;                 /* sockets open, under mu: closed in a fork child */
    rl_fdvec wakers;              /* under mu: fds written on every notify (asyncio loops) */

    /* events (their own lock, so the dispatcher never waits for mu) */
    pthread_mutex_t ev_mu;
    pthread_cond_t ev_cv;
    rl_lease *evq_head, *evq_tail;  /* leases with undelivered events (evbox) */
    size_t ev_len;                /* leases on that queue */
    size_t ev_dropped;            /* events lost to out-of-memory */

    /* engine thread only */
    rl_heap timers;
    rl_endpoint *endpoints;       /* list changes under mu (fork handler reads it) */
    rl_lease *active;
    size_t nactive;
    int draining;                 /* shutdown: stop everything, then quit */
    uint64_t rng;

    /* statistics */
    atomic_ullong st_commands, st_reconnects, st_connections, st_leases;
};

#endif
