/* test_tls.c - checks for ext/core/rl_tls.c and rl_tls_stream.c.
 *
 * Without environment: context errors that need no files.  With
 * RL_TLS_TEST_DIR (certificates made by tests/helpers/tls.py) and
 * RL_TLS_TEST_PORT (a redis-server tls-port with tls-auth-clients no),
 * RL_TLS_TEST_MTLS_PORT (tls-auth-clients yes) and RL_TLS_TEST_PLAIN_PORT (a
 * plain port): handshakes, PING, and every failure against real servers
 * (tests/test_tls_core.py starts them). */
#include "../../ext/core/rl_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int passed, failed;

#define CHECK(cond, ...)                                            \
    do {                                                            \
        if (cond) {                                                 \
            passed++;                                               \
        } else {                                                    \
            failed++;                                               \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);    \
            fprintf(stderr, __VA_ARGS__);                           \
            fputc('\n', stderr);                                    \
        }                                                           \
    } while (0)

static const char *dir;

static char *cert(const char *name)
{
    static char bufs[8][512];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

static rl_tls_opts opts(int reqs, int check, char *ca, char *certfile, char *keyfile)
{
    rl_tls_opts o = {reqs, check, ca, NULL, certfile, keyfile};
    return o;
}

/* ---- context errors ---- */

static void expect_ctx_error(rl_tls_opts o, const char *want1, const char *want2)
{
    char err[512] = "";
    rl_tls_ctx *c = rl_tls_ctx_new(&o, err, sizeof err);
    CHECK(c == NULL, "expected a failure (%s)", want1);
    rl_tls_ctx_free(c);
    CHECK(strstr(err, want1) != NULL, "error '%s' lacks '%s'", err, want1);
    if (want2)
        CHECK(strstr(err, want2) != NULL, "error '%s' lacks '%s'", err, want2);
}

static void test_ctx_basic(void)
{
    char err[512] = "";
    rl_tls_opts o = opts(RL_TLS_REQ_REQUIRED, 1, NULL, NULL, NULL);
    rl_tls_ctx *c = rl_tls_ctx_new(&o, err, sizeof err);
    CHECK(c != NULL, "default CA paths: %s", err);
    CHECK(rl_tls_ctx_ref(c) == c, "ref returns the context");
    rl_tls_ctx_free(c);
    rl_tls_ctx_free(c);
    rl_tls_ctx_free(NULL);
    CHECK(rl_tls_ctx_ref(NULL) == NULL, "ref(NULL)");

    expect_ctx_error(opts(RL_TLS_REQ_REQUIRED, 1, "/nonexistent/ca.pem", NULL, NULL),
                     "ssl_ca_certs: cannot read '/nonexistent/ca.pem'", "No such file");
    expect_ctx_error(opts(RL_TLS_REQ_NONE, 0, "/nonexistent/ca.pem", NULL, NULL),
                     "ssl_ca_certs: cannot read", NULL);
    rl_tls_opts p = opts(RL_TLS_REQ_REQUIRED, 1, NULL, NULL, NULL);
    p.ca_path = "/nonexistent-dir";
    expect_ctx_error(p, "ssl_ca_path: cannot read the directory '/nonexistent-dir'", NULL);
    expect_ctx_error(opts(RL_TLS_REQ_REQUIRED, 1, NULL, "/nonexistent/c.pem", NULL),
                     "ssl_certfile: cannot read '/nonexistent/c.pem'", NULL);
    expect_ctx_error(opts(RL_TLS_REQ_REQUIRED, 1, NULL, NULL, "/nonexistent/c.key"),
                     "ssl_keyfile is given without ssl_certfile", NULL);
    expect_ctx_error(opts(RL_TLS_REQ_REQUIRED, 1, "/etc/hostname", NULL, NULL),
                     "ssl_ca_certs: '/etc/hostname' holds no usable PEM certificate", NULL);
}

static void test_ctx_files(void)
{
    char err[512] = "";
    rl_tls_opts o = opts(RL_TLS_REQ_REQUIRED, 1, cert("ca.pem"), cert("client.pem"), cert("client.key"));
    rl_tls_ctx *c = rl_tls_ctx_new(&o, err, sizeof err);
    CHECK(c != NULL, "CA and client certificate: %s", err);
    rl_tls_ctx_free(c);
    expect_ctx_error(opts(RL_TLS_REQ_REQUIRED, 1, cert("ca.pem"), cert("client.pem"), cert("server.key")),
                     "ssl_keyfile: the key in", "does not match the certificate");
    expect_ctx_error(opts(RL_TLS_REQ_REQUIRED, 1, cert("ca.pem"), cert("client.pem"), NULL),
                     "ssl_certfile (holding the key too): cannot load a private key", NULL);
    expect_ctx_error(opts(RL_TLS_REQ_REQUIRED, 1, cert("ca.pem"), cert("client.key"), cert("client.key")),
                     "ssl_certfile: cannot load a certificate", NULL);
}

/* ---- streams against real servers ---- */

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("connect");
        exit(2);
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* 1 done, -1 failed (err, *permanent), 0 timed out. */
static int handshake(rl_stream *s, int *permanent, char *err, size_t n)
{
    for (int i = 0; i < 100; i++) {
        short want = 0;
        int rc = s->ops->handshake(s, &want, permanent, err, n);
        if (rc != 0)
            return rc;
        struct pollfd p = {s->fd, want, 0};
        poll(&p, 1, 50);
    }
    return 0;
}

/* Sends PING, reads until "+PONG\r\n"; 1 ok, -1 failed (err), 0 timed out. */
static int ping(rl_stream *s, char *err, size_t n)
{
    const char *cmd = "*1\r\n$4\r\nPING\r\n";
    size_t off = 0, len = strlen(cmd);
    char buf[64];
    size_t got = 0;
    for (int i = 0; i < 200; i++) {
        short want = 0;
        if (off < len) {
            long w = s->ops->write(s, cmd + off, len - off, &want, err, n);
            if (w > 0)
                off += (size_t)w;
            else if (want == 0)
                return -1;
        } else {
            long r = s->ops->read(s, buf + got, sizeof buf - 1 - got, &want, err, n);
            if (r > 0) {
                got += (size_t)r;
                buf[got] = 0;
                if (strstr(buf, "+PONG\r\n"))
                    return 1;
                continue;
            }
            if (r == 0) {
                snprintf(err, n, "closed");
                return -1;
            }
            if (want == 0)
                return -1;
            if (s->ops->pending(s))
                continue;
        }
        if (want) {
            struct pollfd p = {s->fd, want, 0};
            poll(&p, 1, 50);
        }
    }
    return 0;
}

typedef struct {
    int rc;          /* handshake result */
    int permanent;
    int ping;        /* ping result when the handshake worked */
    int refused;
    char err[640];
} outcome;

static outcome run(rl_tls_opts o, int port, const char *host)
{
    outcome r = {0};
    char err[512] = "";
    rl_tls_ctx *c = rl_tls_ctx_new(&o, err, sizeof err);
    if (!c) {
        snprintf(r.err, sizeof r.err, "ctx: %s", err);
        r.rc = -2;
        return r;
    }
    int fd = connect_to(port);
    rl_stream *s = rl_tls_stream_new(c, fd, host, r.err, sizeof r.err);
    rl_tls_ctx_free(c);               /* the stream keeps its own reference */
    if (!s) {
        close(fd);
        r.rc = -3;
        return r;
    }
    r.rc = handshake(s, &r.permanent, r.err, sizeof r.err);
    if (r.rc == 1) {
        r.ping = ping(s, r.err, sizeof r.err);
        r.refused = rl_tls_stream_refused(s);
    } else if (r.rc == 0) {
        char why[300];
        if (rl_tls_stream_no_answer(s, why, sizeof why))
            snprintf(r.err, sizeof r.err, "%s", why);
    }
    s->ops->free(s);
    close(fd);
    return r;
}

static void test_streams(int port, int mport, int pport)
{
    outcome r;
    r = run(opts(RL_TLS_REQ_REQUIRED, 1, cert("ca.pem"), NULL, NULL), port, "127.0.0.1");
    CHECK(r.rc == 1 && r.ping == 1, "TLS by IP: rc %d ping %d: %s", r.rc, r.ping, r.err);
    r = run(opts(RL_TLS_REQ_REQUIRED, 1, cert("ca.pem"), NULL, NULL), port, "localhost");
    CHECK(r.rc == 1 && r.ping == 1, "TLS by name: rc %d ping %d: %s", r.rc, r.ping, r.err);
    r = run(opts(RL_TLS_REQ_OPTIONAL, 1, cert("ca.pem"), NULL, NULL), port, "localhost");
    CHECK(r.rc == 1 && r.ping == 1, "optional: rc %d ping %d: %s", r.rc, r.ping, r.err);

    r = run(opts(RL_TLS_REQ_REQUIRED, 1, cert("ca2.pem"), NULL, NULL), port, "127.0.0.1");
    CHECK(r.rc == -1 && r.permanent, "wrong CA: rc %d permanent %d", r.rc, r.permanent);
    CHECK(strstr(r.err, "certificate verify failed") && strstr(r.err, "check ssl_ca_certs"),
          "wrong CA message: %s", r.err);
    CHECK(strstr(r.err, "unable to get local issuer certificate") || strstr(r.err, "self-signed certificate"),
          "verify reason: %s", r.err);
    r = run(opts(RL_TLS_REQ_OPTIONAL, 1, cert("ca2.pem"), NULL, NULL), port, "127.0.0.1");
    CHECK(r.rc == -1 && r.permanent, "optional, wrong CA: rc %d: %s", r.rc, r.err);
    r = run(opts(RL_TLS_REQ_NONE, 0, cert("ca2.pem"), NULL, NULL), port, "127.0.0.1");
    CHECK(r.rc == 1 && r.ping == 1, "none, wrong CA: rc %d ping %d: %s", r.rc, r.ping, r.err);

    r = run(opts(RL_TLS_REQ_REQUIRED, 1, cert("ca.pem"), NULL, NULL), port, "wrong.test");
    CHECK(r.rc == -1 && r.permanent, "wrong name: rc %d permanent %d", r.rc, r.permanent);
    CHECK(strstr(r.err, "the server's certificate is for 'localhost', '127.0.0.1', not 'wrong.test'"),
          "wrong name message: %s", r.err);
    r = run(opts(RL_TLS_REQ_REQUIRED, 0, cert("ca.pem"), NULL, NULL), port, "wrong.test");
    CHECK(r.rc == 1 && r.ping == 1, "no name check: rc %d ping %d: %s", r.rc, r.ping, r.err);

    /* mutual TLS */
    r = run(opts(RL_TLS_REQ_REQUIRED, 1, cert("ca.pem"), cert("client.pem"), cert("client.key")),
            mport, "127.0.0.1");
    CHECK(r.rc == 1 && r.ping == 1, "mTLS: rc %d ping %d: %s", r.rc, r.ping, r.err);
    r = run(opts(RL_TLS_REQ_REQUIRED, 1, cert("ca.pem"), NULL, NULL), mport, "127.0.0.1");
    CHECK((r.rc == -1 && r.permanent) || (r.rc == 1 && r.ping == -1 && r.refused),
          "mTLS without a certificate: rc %d permanent %d ping %d refused %d: %s",
          r.rc, r.permanent, r.ping, r.refused, r.err);
    CHECK(strstr(r.err, "the server refused the client certificate") != NULL, "refusal: %s", r.err);
    r = run(opts(RL_TLS_REQ_REQUIRED, 1, cert("ca.pem"), cert("ca2-client.pem"), cert("ca2-client.key")),
            mport, "127.0.0.1");
    CHECK((r.rc == -1 && r.permanent) || (r.rc == 1 && r.ping == -1 && r.refused),
          "mTLS, unknown certificate: rc %d ping %d refused %d: %s", r.rc, r.ping, r.refused, r.err);
    CHECK(strstr(r.err, "the server refused the client certificate") != NULL, "refusal: %s", r.err);

    /* rediss:// to a plain port: Redis reads the ClientHello as an inline
     * command and looks for '\n' with strchr, which stops at the hello's
     * first NUL byte, so it never answers: the handshake times out, and
     * rl_tls_stream_no_answer says why.  (Or, should a reply come, a
     * permanent "does not speak TLS".) */
    r = run(opts(RL_TLS_REQ_REQUIRED, 1, cert("ca.pem"), NULL, NULL), pport, "127.0.0.1");
    CHECK((r.rc == -1 && r.permanent) || r.rc == 0, "plain port: rc %d permanent %d: %s",
          r.rc, r.permanent, r.err);
    CHECK(strstr(r.err, "this port does not speak TLS") != NULL, "plain port message: %s", r.err);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    test_ctx_basic();
    dir = getenv("RL_TLS_TEST_DIR");
    const char *port = getenv("RL_TLS_TEST_PORT"), *mport = getenv("RL_TLS_TEST_MTLS_PORT");
    const char *pport = getenv("RL_TLS_TEST_PLAIN_PORT");
    if (dir && port && mport && pport) {
        test_ctx_files();
        test_streams(atoi(port), atoi(mport), atoi(pport));
    } else {
        printf("test_tls: RL_TLS_TEST_DIR/..._PORT not set: server checks skipped "
               "(tests/test_tls_core.py runs them)\n");
    }
    printf("test_tls: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
