/*
 * hiredis_loop.c -- the "bare hiredis" baseline for bench/bench_core.py.
 *
 * Loads the lease protocol's acquire and release Lua scripts with
 * SCRIPT LOAD, then runs acquire+release cycles on one key with the
 * synchronous hiredis API (EVALSHA acquire, then EVALSHA release) and
 * prints the mean time per cycle in microseconds for each round.
 *
 * The script texts are read from files (bench_core.py writes them from
 * redlease._redlease.SCRIPTS, or from bench/lua/ when the core does not
 * export them).  Argument layout follows the protocol:
 *   acquire  KEYS: key, token-key   ARGV: node_id, ttl_ms, channel
 *   release  KEYS: key              ARGV: node_id, channel
 *
 * Build:  gcc -O2 -o hiredis_loop hiredis_loop.c $(pkg-config --cflags --libs hiredis)
 * Usage:  hiredis_loop -A acquire.lua -R release.lua [options]
 *   -h HOST     server host (127.0.0.1)      -p PORT    server port (6379)
 *   -s PATH     unix socket instead of TCP   -a PASS    AUTH password
 *   -u USER     AUTH user (ACL, with -a)
 *   -k KEY      lease key (bench:hiredis)    -T KEY     token key (KEY:fence)
 *   -c CHAN     release channel (KEY:chan)   -i ID      node id (bench-node)
 *   -t MS       ttl in ms (10000)            -n N       cycles per round (1000)
 *   -r R        rounds (1)                   -w N       warm-up cycles (100)
 *   -C          connect + disconnect inside every cycle (fresh connection)
 *
 * Output, one line per round, then a summary line:
 *   round=1 cycles=1000 acquired=1000 us_per_cycle=41.237
 *   median_us_per_cycle=41.237
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

struct opts {
    const char *host, *sock, *user, *pass, *key, *tkey, *chan, *id, *afile, *rfile;
    int port, ttl_ms, cycles, rounds, warmup, reconnect;
};

static struct opts o;
static char sha_acq[64], sha_rel[64];
static char ttl_buf[32];

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "hiredis_loop: ");
    fprintf(stderr, fmt, arg ? arg : "");
    fputc('\n', stderr);
    exit(2);
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("cannot open %s", path);
    if (fseek(f, 0, SEEK_END) != 0)
        die("cannot seek %s", path);
    long n = ftell(f);
    if (n < 0)
        die("cannot size %s", path);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    if (!buf)
        die("out of memory%s", NULL);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n)
        die("cannot read %s", path);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static redisContext *connect_server(void)
{
    struct timeval tv = {2, 0};
    redisContext *c = o.sock ? redisConnectUnixWithTimeout(o.sock, tv)
                             : redisConnectWithTimeout(o.host, o.port, tv);
    if (!c)
        die("cannot allocate redis context%s", NULL);
    if (c->err)
        die("connect failed: %s", c->errstr);
    if (o.pass) {
        redisReply *r = o.user ? redisCommand(c, "AUTH %s %s", o.user, o.pass)
                               : redisCommand(c, "AUTH %s", o.pass);
        if (!r || r->type == REDIS_REPLY_ERROR)
            die("AUTH failed: %s", r ? r->str : c->errstr);
        freeReplyObject(r);
    }
    return c;
}

static void script_load(redisContext *c, const char *text, char *sha_out)
{
    redisReply *r = redisCommand(c, "SCRIPT LOAD %s", text);
    if (!r)
        die("SCRIPT LOAD: %s", c->errstr);
    if (r->type != REDIS_REPLY_STRING || r->len >= 64)
        die("SCRIPT LOAD failed: %s", r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    memcpy(sha_out, r->str, (size_t)r->len);
    sha_out[r->len] = '\0';
    freeReplyObject(r);
}

/* Did the acquire script grant the lease?  Accepts the usual shapes:
 * integer > 0, a status/string token, or an array whose first element is
 * the integer 1 (or a non-empty string).  nil / 0 / {0, ...} mean "held". */
static int granted(const redisReply *r)
{
    switch (r->type) {
    case REDIS_REPLY_INTEGER:
        return r->integer > 0;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        return r->len > 0;
    case REDIS_REPLY_ARRAY:
        if (r->elements == 0)
            return 0;
        return granted(r->element[0]);
    default:
        return 0;
    }
}

/* One acquire + release.  Returns 1 when the acquire was granted. */
static int cycle(redisContext *c)
{
    /* The acquire script's KEYS: key, token counter, data-loss marker;
     * ARGV: term, ttl ms, channel, token counter retention ms. */
    const char *acq[] = {"EVALSHA", sha_acq, "3", o.key, o.tkey, "redlease:marker",
                         o.id, ttl_buf, o.chan, "86400000"};
    const char *rel[] = {"EVALSHA", sha_rel, "1", o.key, o.id, o.chan};
    int ok;

    redisReply *r = redisCommandArgv(c, 10, acq, NULL);
    if (!r)
        die("EVALSHA acquire: %s", c->errstr);
    if (r->type == REDIS_REPLY_ERROR)
        die("acquire script error: %s", r->str);
    ok = granted(r);
    freeReplyObject(r);

    r = redisCommandArgv(c, 6, rel, NULL);
    if (!r)
        die("EVALSHA release: %s", c->errstr);
    if (r->type == REDIS_REPLY_ERROR)
        die("release script error: %s", r->str);
    freeReplyObject(r);
    return ok;
}

static int run_cycles(redisContext **pc, int n)
{
    int acquired = 0;
    for (int i = 0; i < n; i++) {
        if (o.reconnect) {
            redisContext *c = connect_server();
            acquired += cycle(c);
            redisFree(c);
        } else {
            acquired += cycle(*pc);
        }
    }
    return acquired;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int parse_int(const char *s, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > 1000000000)
        die("bad value for %s", what);
    return (int)v;
}

int main(int argc, char **argv)
{
    static char tkey_buf[512], chan_buf[512];
    int ch;

    o.host = "127.0.0.1";
    o.port = 6379;
    o.key = "bench:hiredis";
    o.id = "bench-node";
    o.ttl_ms = 10000;
    o.cycles = 1000;
    o.rounds = 1;
    o.warmup = 100;

    while ((ch = getopt(argc, argv, "h:p:s:u:a:k:T:c:i:t:n:r:w:A:R:C")) != -1) {
        switch (ch) {
        case 'h': o.host = optarg; break;
        case 'p': o.port = parse_int(optarg, "-p"); break;
        case 's': o.sock = optarg; break;
        case 'u': o.user = optarg; break;
        case 'a': o.pass = optarg; break;
        case 'k': o.key = optarg; break;
        case 'T': o.tkey = optarg; break;
        case 'c': o.chan = optarg; break;
        case 'i': o.id = optarg; break;
        case 't': o.ttl_ms = parse_int(optarg, "-t"); break;
        case 'n': o.cycles = parse_int(optarg, "-n"); break;
        case 'r': o.rounds = parse_int(optarg, "-r"); break;
        case 'w': o.warmup = parse_int(optarg, "-w"); break;
        case 'A': o.afile = optarg; break;
        case 'R': o.rfile = optarg; break;
        case 'C': o.reconnect = 1; break;
        default:
            fprintf(stderr, "usage: %s -A acquire.lua -R release.lua [-h host] [-p port] "
                            "[-s sock] [-u user] [-a pass] [-k key] [-T tokenkey] [-c chan] [-i id] "
                            "[-t ttl_ms] [-n cycles] [-r rounds] [-w warmup] [-C]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!o.afile || !o.rfile)
        die("both -A acquire.lua and -R release.lua are required%s", NULL);
    if (o.cycles < 1 || o.rounds < 1 || o.ttl_ms < 1)
        die("cycles, rounds and ttl must be positive%s", NULL);
    if (!o.tkey) {
        snprintf(tkey_buf, sizeof tkey_buf, "%s:fence", o.key);
        o.tkey = tkey_buf;
    }
    if (!o.chan) {
        snprintf(chan_buf, sizeof chan_buf, "%s:chan", o.key);
        o.chan = chan_buf;
    }
    snprintf(ttl_buf, sizeof ttl_buf, "%d", o.ttl_ms);

    char *acq_text = read_file(o.afile);
    char *rel_text = read_file(o.rfile);

    redisContext *c = connect_server();
    script_load(c, acq_text, sha_acq);
    script_load(c, rel_text, sha_rel);
    free(acq_text);
    free(rel_text);

    /* Start from a free key, as a fresh DistributionNode would. */
    freeReplyObject(redisCommand(c, "DEL %s", o.key));

    if (o.warmup > 0 && run_cycles(&c, o.warmup) != o.warmup)
        fprintf(stderr, "hiredis_loop: warning: some warm-up acquires were refused "
                        "(is another client holding %s?)\n", o.key);

    double *per = calloc((size_t)o.rounds, sizeof *per);
    if (!per)
        die("out of memory%s", NULL);
    for (int r = 0; r < o.rounds; r++) {
        double t0 = now_us();
        int got = run_cycles(&c, o.cycles);
        double t1 = now_us();
        per[r] = (t1 - t0) / o.cycles;
        printf("round=%d cycles=%d acquired=%d us_per_cycle=%.3f\n", r + 1, o.cycles, got, per[r]);
        fflush(stdout);
        if (got != o.cycles)
            fprintf(stderr, "hiredis_loop: warning: %d of %d acquires refused\n",
                    o.cycles - got, o.cycles);
    }
    qsort(per, (size_t)o.rounds, sizeof *per, cmp_double);
    double med = (o.rounds % 2) ? per[o.rounds / 2]
                                : (per[o.rounds / 2 - 1] + per[o.rounds / 2]) / 2.0;
    printf("median_us_per_cycle=%.3f\n", med);

    free(per);
    redisFree(c);
    return 0;
}
