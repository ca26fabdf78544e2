/* test_url.c - checks for ext/core/rl_url.c (Redis URL parsing). Plain C, no framework. */
#include "../../ext/core/rl_url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static int str_eq(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

static const char *show(const char *s) { return s ? s : "(null)"; }

static int is_zeroed(const rl_url *u)
{
    static const rl_url zero;
    return memcmp(u, &zero, sizeof zero) == 0;
}

/* ------------------------------------------------------------------ */
/* Accepted URLs                                                        */

typedef struct ok_case {
    const char *url;
    int kind, tls;
    const char *host;
    int port;
    const char *path;
    long db;
    const char *user, *password;
    const char *safe; /* expected rl_url_format_safe output */
} ok_case;

#define T RL_URL_TCP
#define U RL_URL_UNIX

static const ok_case ok_cases[] = {
    /* plain TCP forms and defaults */
    {"redis://localhost", T, 0, "localhost", 6379, NULL, 0, NULL, NULL, "redis://localhost:6379/0"},
    {"redis://localhost:6380/3", T, 0, "localhost", 6380, NULL, 3, NULL, NULL, "redis://localhost:6380/3"},
    {"redis://h:6379/0", T, 0, "h", 6379, NULL, 0, NULL, NULL, "redis://h:6379/0"},
    {"redis://h/", T, 0, "h", 6379, NULL, 0, NULL, NULL, "redis://h:6379/0"},
    {"redis://h/5", T, 0, "h", 6379, NULL, 5, NULL, NULL, "redis://h:6379/5"},
    {"redis://10.0.0.7:7000", T, 0, "10.0.0.7", 7000, NULL, 0, NULL, NULL, "redis://10.0.0.7:7000/0"},
    {"redis://h:1/2147483647", T, 0, "h", 1, NULL, 2147483647L, NULL, NULL, "redis://h:1/2147483647"},
    {"redis://h:65535/0", T, 0, "h", 65535, NULL, 0, NULL, NULL, "redis://h:65535/0"},
    {"redis://h:06379/007", T, 0, "h", 6379, NULL, 7, NULL, NULL, "redis://h:6379/7"},
    {"REDIS://Cache.Example.COM/1", T, 0, "cache.example.com", 6379, NULL, 1, NULL, NULL,
     "redis://cache.example.com:6379/1"},
    /* TLS */
    {"rediss://h:6380/1", T, 1, "h", 6380, NULL, 1, NULL, NULL, "rediss://h:6380/1"},
    {"rediss://user:pw@h", T, 1, "h", 6379, NULL, 0, "user", "pw", "rediss://user:***@h:6379/0"},
    /* userinfo */
    {"redis://user:pw@host:6379/0", T, 0, "host", 6379, NULL, 0, "user", "pw", "redis://user:***@host:6379/0"},
    {"redis://:pw@h", T, 0, "h", 6379, NULL, 0, NULL, "pw", "redis://:***@h:6379/0"},
    {"redis://user@h", T, 0, "h", 6379, NULL, 0, "user", NULL, "redis://user@h:6379/0"},
    {"redis://user:@h", T, 0, "h", 6379, NULL, 0, "user", NULL, "redis://user@h:6379/0"},
    {"redis://@h", T, 0, "h", 6379, NULL, 0, NULL, NULL, "redis://h:6379/0"},
    {"redis://:@h", T, 0, "h", 6379, NULL, 0, NULL, NULL, "redis://h:6379/0"},
    {"redis://u:p@ss@h/0", T, 0, "h", 6379, NULL, 0, "u", "p@ss", "redis://u:***@h:6379/0"},
    {"redis://u:pa:ss@h/0", T, 0, "h", 6379, NULL, 0, "u", "pa:ss", "redis://u:***@h:6379/0"},
    /* percent-decoding of user, password, host, db */
    {"redis://us%65r:p%40ss%3Aw%2Fd%25@my%2Dhost:6379/0", T, 0, "my-host", 6379, NULL, 0, "user", "p@ss:w/d%",
     "redis://user:***@my-host:6379/0"},
    {"redis://a%40b%3Ac:x@h", T, 0, "h", 6379, NULL, 0, "a@b:c", "x", "redis://a%40b%3Ac:***@h:6379/0"},
    {"redis://h/%31%32", T, 0, "h", 6379, NULL, 12, NULL, NULL, "redis://h:6379/12"},
    {"redis://p+q:a+b@h", T, 0, "h", 6379, NULL, 0, "p+q", "a+b", "redis://p+q:***@h:6379/0"},
    /* IPv6 */
    {"redis://[::1]:6380/0", T, 0, "::1", 6380, NULL, 0, NULL, NULL, "redis://[::1]:6380/0"},
    {"redis://[::1]", T, 0, "::1", 6379, NULL, 0, NULL, NULL, "redis://[::1]:6379/0"},
    {"redis://[::1]/4", T, 0, "::1", 6379, NULL, 4, NULL, NULL, "redis://[::1]:6379/4"},
    {"rediss://u:pw@[2001:DB8::2]:6390/4", T, 1, "2001:db8::2", 6390, NULL, 4, "u", "pw",
     "rediss://u:***@[2001:db8::2]:6390/4"},
    {"redis://[fe80::1%25eth0]:7000", T, 0, "fe80::1%eth0", 7000, NULL, 0, NULL, NULL,
     "redis://[fe80::1%25eth0]:7000/0"},
    /* query parameters on redis:// */
    {"redis://h/0?db=5", T, 0, "h", 6379, NULL, 5, NULL, NULL, "redis://h:6379/5"},
    {"redis://h?db=7&password=pw&username=bob", T, 0, "h", 6379, NULL, 7, "bob", "pw", "redis://bob:***@h:6379/7"},
    {"redis://h?password=a+b%2Bc%26d", T, 0, "h", 6379, NULL, 0, NULL, "a b+c&d", "redis://:***@h:6379/0"},
    {"redis://h?username=me%40corp", T, 0, "h", 6379, NULL, 0, "me@corp", NULL, "redis://me%40corp@h:6379/0"},
    {"redis://h/1?&db=&password=&&", T, 0, "h", 6379, NULL, 1, NULL, NULL, "redis://h:6379/1"},
    {"redis://u@h?password=pw", T, 0, "h", 6379, NULL, 0, "u", "pw", "redis://u:***@h:6379/0"},
    {"redis://:pw@h?username=u", T, 0, "h", 6379, NULL, 0, "u", "pw", "redis://u:***@h:6379/0"},
    {"rediss://h:6390?db=3", T, 1, "h", 6390, NULL, 3, NULL, NULL, "rediss://h:6390/3"},
    /* unix sockets */
    {"unix:///tmp/redis.sock", U, 0, NULL, 0, "/tmp/redis.sock", 0, NULL, NULL, "unix:///tmp/redis.sock?db=0"},
    {"unix:///tmp/r.sock?db=2", U, 0, NULL, 0, "/tmp/r.sock", 2, NULL, NULL, "unix:///tmp/r.sock?db=2"},
    {"unix://:pw@/tmp/r.sock?db=3", U, 0, NULL, 0, "/tmp/r.sock", 3, NULL, "pw", "unix://:***@/tmp/r.sock?db=3"},
    {"unix://user:pw@/tmp/r.sock", U, 0, NULL, 0, "/tmp/r.sock", 0, "user", "pw", "unix://user:***@/tmp/r.sock?db=0"},
    {"unix:///tmp/r.sock?db=1&password=pw&username=u", U, 0, NULL, 0, "/tmp/r.sock", 1, "u", "pw",
     "unix://u:***@/tmp/r.sock?db=1"},
    {"unix:/tmp/r.sock", U, 0, NULL, 0, "/tmp/r.sock", 0, NULL, NULL, "unix:///tmp/r.sock?db=0"},
    {"unix:/tmp/r.sock?db=9", U, 0, NULL, 0, "/tmp/r.sock", 9, NULL, NULL, "unix:///tmp/r.sock?db=9"},
    {"unix:///tmp/my%20dir/r%3F.sock", U, 0, NULL, 0, "/tmp/my dir/r?.sock", 0, NULL, NULL,
     "unix:///tmp/my%20dir/r%3F.sock?db=0"},
    {"unix:///tmp/a@b.sock", U, 0, NULL, 0, "/tmp/a@b.sock", 0, NULL, NULL, "unix:///tmp/a@b.sock?db=0"},
    {"Unix:///var/run/redis/redis-server.sock", U, 0, NULL, 0, "/var/run/redis/redis-server.sock", 0, NULL, NULL,
     "unix:///var/run/redis/redis-server.sock?db=0"},
};

static void test_ok_case(const ok_case *c)
{
    rl_url u;
    char err[512] = "untouched";
    memset(&u, 0xAB, sizeof u); /* the parser must not rely on a zeroed output */
    int rc = rl_url_parse(c->url, strlen(c->url), &u, err, sizeof err);
    CHECK(rc == 0, "parse '%s' failed: %s", c->url, err);
    if (rc != 0) return;
    CHECK(u.kind == c->kind, "'%s': kind %d, want %d", c->url, u.kind, c->kind);
    CHECK(u.tls == c->tls, "'%s': tls %d, want %d", c->url, u.tls, c->tls);
    CHECK(str_eq(u.host, c->host), "'%s': host '%s', want '%s'", c->url, show(u.host), show(c->host));
    CHECK(u.port == c->port, "'%s': port %d, want %d", c->url, u.port, c->port);
    CHECK(str_eq(u.path, c->path), "'%s': path '%s', want '%s'", c->url, show(u.path), show(c->path));
    CHECK(u.db == c->db, "'%s': db %ld, want %ld", c->url, u.db, c->db);
    CHECK(str_eq(u.user, c->user), "'%s': user '%s', want '%s'", c->url, show(u.user), show(c->user));
    CHECK(str_eq(u.password, c->password), "'%s': password '%s', want '%s'", c->url, show(u.password),
          show(c->password));

    char safe[256];
    int n = rl_url_format_safe(&u, safe, sizeof safe);
    CHECK(str_eq(safe, c->safe), "'%s': safe form '%s', want '%s'", c->url, safe, c->safe);
    CHECK(n == (int)strlen(safe), "'%s': format_safe returned %d for '%s'", c->url, n, safe);
    if (u.password) CHECK(strstr(safe, u.password) == NULL || strcmp(u.password, "***") == 0,
                          "'%s': safe form '%s' shows the password", c->url, safe);
    CHECK(rl_url_same_endpoint(&u, &u), "'%s': not the same endpoint as itself", c->url);

    /* The safe form parses back to the same endpoint, password aside. */
    rl_url back;
    rc = rl_url_parse(safe, strlen(safe), &back, err, sizeof err);
    CHECK(rc == 0, "'%s': safe form '%s' does not parse: %s", c->url, safe, err);
    if (rc == 0) {
        char *pw = u.password;
        char *bpw = back.password;
        CHECK(str_eq(bpw, pw ? "***" : NULL), "'%s': safe form password '%s'", c->url, show(bpw));
        u.password = back.password = NULL;
        CHECK(rl_url_same_endpoint(&u, &back), "'%s': safe form '%s' names another endpoint", c->url, safe);
        u.password = pw;
        back.password = bpw;
        rl_url_free(&back);
    }
    rl_url_free(&u);
    CHECK(is_zeroed(&u), "'%s': rl_url_free did not zero the struct", c->url);
}

/* ------------------------------------------------------------------ */
/* Rejected URLs                                                        */

typedef struct bad_case {
    const char *url;
    size_t len;         /* 0 = strlen(url) */
    const char *expect; /* substring the error must contain */
    const char *secret; /* '|'-separated pieces that must not appear in the error */
} bad_case;

#define SECRET "S3CR3T"

static const bad_case bad_cases[] = {
    /* empty input */
    {"", 0, "empty Redis URL", NULL},
    /* NUL byte inside the URL */
    {"redis://:" SECRET "@h\0x/0", 21, "NUL byte at offset 17", SECRET},
    {"redis://:" SECRET "@h/0\0", 20, "NUL byte at offset 19", SECRET},
    {"redis://h%00x/0", 0, "%00 (NUL byte) in the host", NULL},
    {"redis://:" SECRET "%00@h", 0, "%00 (NUL byte) in the password", SECRET},
    /* unknown / missing scheme */
    {"http://:" SECRET "@h/0", 0, "unsupported scheme 'http'", SECRET},
    {"ftp://u:" SECRET "@h", 0, "supported schemes are redis://, rediss://, unix://, redis+sentinel:// and rediss+sentinel://", SECRET},
    {"redis+cluster://h", 0, "unsupported scheme 'redis+cluster'", NULL},
    {"localhost:6379", 0, "unsupported scheme 'localhost'", NULL},
    {"localhost", 0, "missing scheme", NULL},
    {"//h:6379/0", 0, "missing scheme", NULL},
    {"://h", 0, "missing scheme", NULL},
    {" redis://h", 0, "missing scheme", NULL},
    {"redis:h:6379", 0, "expected '//' after 'redis:'", NULL},
    {"rediss:/h", 0, "expected '//' after 'rediss:'", NULL},
    /* missing host */
    {"redis://", 0, "missing host", NULL},
    {"rediss://", 0, "missing host", NULL},
    {"redis:///0", 0, "missing host", NULL},
    {"redis://:" SECRET "@", 0, "missing host", SECRET},
    {"redis://u:" SECRET "@:6379/0", 0, "missing host", SECRET},
    {"redis://:6379", 0, "missing host", NULL},
    {"redis://[]:6379", 0, "missing host", NULL},
    {"redis://?db=1", 0, "missing host", NULL},
    {"redis://:" SECRET, 0, "missing host", SECRET},      /* forgot "@host": password must stay hidden */
    {"redis://:" SECRET "/0", 0, "missing host", SECRET},
    /* port */
    {"redis://u:" SECRET "@h:0/0", 0, "port '0' out of range 1..65535", SECRET},
    {"redis://u:" SECRET "@h:70000/0", 0, "port '70000' out of range 1..65535 in URL 'redis://u:***@h:70000/0'",
     SECRET},
    {"redis://h:65536", 0, "port '65536' out of range", NULL},
    {"redis://h:99999999999999999999999", 0, "out of range 1..65535", NULL},
    {"redis://u:" SECRET "@h:abc/0", 0, "port 'abc' is not a number", SECRET},
    {"redis://h:-1", 0, "port '***' is not a number in URL 'redis://h:***'", NULL},
    {"redis://h:+1", 0, "is not a number", NULL},
    {"redis://h: 6379", 0, "is not a number", NULL},
    {"redis://h:63%37", 0, "is not a number", NULL},
    {"redis://[::1]:x", 0, "port '***' is not a number", NULL},
    {"redis://h:/0", 0, "empty port after ':'", NULL},
    {"redis://[::1]:", 0, "empty port after ':'", NULL},
    /* db */
    {"redis://:" SECRET "@h/abc", 0, "db 'abc' (path) is not a non-negative integer", SECRET},
    {"redis://h/-1", 0, "db '-1' (path) is not a non-negative integer", NULL},
    {"redis://h/+1", 0, "is not a non-negative integer", NULL},
    {"redis://h/1.5", 0, "is not a non-negative integer", NULL},
    {"redis://h/%201", 0, "is not a non-negative integer", NULL},
    {"redis://h/0x1", 0, "is not a non-negative integer", NULL},
    {"redis://h/2147483648", 0, "db '2147483648' (path) out of range 0..2147483647", NULL},
    {"redis://h/99999999999999999999999999", 0, "out of range 0..2147483647", NULL},
    {"redis://h?db=abc", 0, "db 'abc' (query parameter 'db') is not a non-negative integer", NULL},
    {"redis://h/0?db=-3", 0, "is not a non-negative integer", NULL},
    {"unix:///tmp/s?db=2147483648", 0, "out of range 0..2147483647", NULL},
    {"unix:///tmp/s?db=one", 0, "is not a non-negative integer", NULL},
    /* trailing garbage in the path */
    {"redis://:" SECRET "@h/0/x", 0, "unexpected '/x' after the db number", SECRET},
    {"redis://h/0/", 0, "unexpected '/' after the db number", NULL},
    {"redis://h//0", 0, "unexpected '/0' after the db number", NULL},
    {"redis://h:6379/0/1?db=2", 0, "unexpected '/1' after the db number", NULL},
    /* bad percent escapes */
    {"redis://:" SECRET "%zz@h", 0, "bad percent escape in the password", SECRET "|%zz"},
    {"redis://:" SECRET "%4@h", 0, "bad percent escape in the password", SECRET},
    {"redis://:" SECRET "%@h", 0, "bad percent escape in the password", SECRET},
    {"redis://us%zzer:" SECRET "@h", 0, "bad percent escape '%zz' in the user name", SECRET},
    {"redis://h%2/0", 0, "bad percent escape '%2' in the host", NULL},
    {"redis://h%/0", 0, "bad percent escape '%' in the host", NULL},
    {"redis://[::1%2]:1", 0, "bad percent escape '%2' in the host", NULL},
    {"redis://h/%3", 0, "bad percent escape '%3' in the path", NULL},
    {"unix:///tmp/%GGs", 0, "bad percent escape '%GG' in the socket path", NULL},
    {"redis://h?password=" SECRET "%zz", 0, "bad percent escape in the query parameter 'password'", SECRET "|%zz"},
    {"redis://h?username=%x", 0, "bad percent escape '%x' in the query parameter 'username'", NULL},
    /* query parameters */
    {"redis://:" SECRET "@h/0?timeout=5", 0, "unknown query parameter 'timeout'", SECRET},
    {"redis://h?Password=" SECRET, 0, "unknown query parameter 'Password'", SECRET},
    {"redis://h?socket_keepalive=1&password=" SECRET, 0, "unknown query parameter 'socket_keepalive'", SECRET},
    {"redis://h?timeout=1", 0, "known query parameters are db, password, username, socket_timeout", NULL},
    {"redis://h?passwd=" SECRET, 0, "unknown query parameter 'passwd'", SECRET},
    /* TLS parameters need rediss:// */
    {"redis://:" SECRET "@h?ssl_ca_certs=/ca.pem", 0, "ssl_ca_certs is only meaningful with TLS in URL 'redis://:***@h?ssl_ca_certs=/ca.pem'; use rediss://", SECRET},
    {"redis://h?ssl_cert_reqs=none", 0, "ssl_cert_reqs is only meaningful with TLS", NULL},
    {"redis://h?ssl_check_hostname=", 0, "ssl_check_hostname is only meaningful with TLS", NULL},
    {"unix:///tmp/s?ssl_certfile=/c.pem", 0, "ssl_certfile is only meaningful with TLS", NULL},
    {"redis+sentinel://s/m?ssl_keyfile=/k", 0, "ssl_keyfile is only meaningful with TLS", NULL},
    {"redis://h?ssl_ca_path=/etc/ssl", 0, "ssl_ca_path is only meaningful with TLS", NULL},
    /* bad TLS values */
    {"rediss://:" SECRET "@h?ssl_cert_reqs=maybe", 0, "ssl_cert_reqs 'maybe' is not none, optional or required", SECRET},
    {"rediss://h?ssl_check_hostname=perhaps", 0, "ssl_check_hostname 'perhaps' is not a boolean", NULL},
    {"rediss://h?ssl_cert_reqs=none&ssl_check_hostname=true", 0,
     "ssl_check_hostname=true needs certificate verification, but ssl_cert_reqs is none", NULL},
    {"rediss://h?ssl_ca_certs=/a&ssl_ca_certs=/b", 0, "'ssl_ca_certs' given more than once", NULL},
    {"rediss://h?ssl_ca_certs=%zz", 0, "bad percent escape '%zz' in the query parameter 'ssl_ca_certs'", NULL},
    {"rediss://h?ssl_certfile=/c%00", 0, "%00 (NUL byte) in the query parameter 'ssl_certfile' is not allowed", NULL},
    /* timeouts */
    {"redis://:" SECRET "@h?socket_timeout=0", 0, "socket_timeout '0' is not a positive number of seconds", SECRET},
    {"redis://h?socket_timeout=-1", 0, "socket_timeout '-1' is not a positive number of seconds", NULL},
    {"redis://h?socket_timeout=abc", 0, "socket_timeout 'abc' is not a positive", NULL},
    {"redis://h?socket_timeout=1,5", 0, "is not a positive number of seconds", NULL},
    {"redis://h?socket_timeout=nan", 0, "is not a positive number of seconds", NULL},
    {"redis://h?socket_timeout=inf", 0, "is not a positive number of seconds", NULL},
    {"redis://h?socket_timeout=1e", 0, "is not a positive number of seconds", NULL},
    {"redis://h?socket_timeout=.", 0, "is not a positive number of seconds", NULL},
    {"redis://h?socket_connect_timeout=0.0", 0, "socket_connect_timeout '0.0' is not a positive", NULL},
    {"redis://h?socket_connect_timeout=1&socket_connect_timeout=2", 0, "given more than once", NULL},
    /* client_name and protocol */
    {"redis://:" SECRET "@h?client_name=a+b", 0, "client_name 'a+b' holds a character Redis refuses", SECRET},
    {"redis://h?client_name=a%0Ab", 0, "holds a character Redis refuses", NULL},
    {"redis://h?client_name=caf%C3%A9", 0, "holds a character Redis refuses", NULL},
    {"redis://h?protocol=1", 0, "protocol '1' is not 2 or 3", NULL},
    {"redis://h?protocol=RESP3", 0, "protocol 'RESP3' is not 2 or 3", NULL},
    {"redis://h?protocol=22", 0, "is not 2 or 3", NULL},
    /* sentinel parameters need a sentinel URL */
    {"redis://h?sentinel_password=" SECRET, 0, "sentinel_password is only meaningful in redis+sentinel:// URLs", SECRET},
    {"rediss://h?sentinel_username=u", 0, "sentinel_username is only meaningful in redis+sentinel://", NULL},
    /* sentinel URLs */
    {"redis+sentinel://:" SECRET "@s1:26379", 0, "missing service name", SECRET},
    {"redis+sentinel://s1/", 0, "missing service name", NULL},
    {"redis+sentinel://s1//0", 0, "missing service name", NULL},
    {"redis+sentinel://s1,s2?db=1", 0, "missing service name", NULL},
    {"redis+sentinel://s1,,s2/m", 0, "missing host in the sentinel list", NULL},
    {"redis+sentinel://s1,/m", 0, "missing host in the sentinel list", NULL},
    {"redis+sentinel://,s1/m", 0, "missing host in the sentinel list", NULL},
    {"redis+sentinel:///m", 0, "missing host in the sentinel list", NULL},
    {"redis+sentinel://u:" SECRET "@s1:0/m", 0, "port '0' out of range 1..65535", SECRET},
    {"redis+sentinel://s1:26379,s2:x/m", 0, "is not a number", NULL},
    {"redis+sentinel://s1:/m", 0, "drop the ':' to use 26379", NULL},
    {"redis+sentinel://s1/m/x", 0, "db 'x' (path) is not a non-negative integer", NULL},
    {"redis+sentinel://s1/m/0/1", 0, "unexpected '/1' after the db number", NULL},
    {"redis+sentinel://s1/m%zz", 0, "bad percent escape '%zz' in the service name", NULL},
    {"redis+sentinel:s1/m", 0, "expected '//' after 'redis+sentinel:'", NULL},
    {"rediss+sentinel:/s1/m", 0, "expected '//' after 'rediss+sentinel:'", NULL},
    {"redis+sentinel://s1/m?sentinel_password=" SECRET "&sentinel_password=x", 0, "given more than once", SECRET},
    {"redis+sentinel://s1/m?sentinel_password=" SECRET "%zz", 0, "bad percent escape in the query parameter 'sentinel_password'", SECRET "|%zz"},
    {"redis+sentinel://:" SECRET "@s1:2x/m", 0, "port '2x' is not a number", SECRET},
    {"redis+sentinel://s1:26379,s2:" SECRET "/m", 0, "is not a number", SECRET},
    {"redis+sentinel://s1/m?sentinel_password=" SECRET "&bogus=1", 0, "unknown query parameter 'bogus'", SECRET},
    {"unix:///tmp/s?password=" SECRET "&ssl=true", 0, "unknown query parameter 'ssl'", SECRET},
    {"redis://h?db", 0, "query parameter 'db' has no value", NULL},
    {"redis://h?db=1&db=2", 0, "query parameter 'db' given more than once", NULL},
    {"redis://h?password=" SECRET "&password=" SECRET, 0, "'password' given more than once", SECRET},
    {"redis://:" SECRET "@h?password=" SECRET, 0, "password given both before '@' and as ?password=", SECRET},
    {"redis://bob@h?username=bob", 0, "user name given both before '@' and as ?username=", NULL},
    /* unix without path, or with a host */
    {"unix://", 0, "unix URL has no socket path", NULL},
    {"unix:", 0, "unix URL has no socket path", NULL},
    {"unix://:" SECRET "@", 0, "unix URL has no socket path", SECRET},
    {"unix://:" SECRET "@?db=1", 0, "unix URL has no socket path", SECRET},
    {"unix:?db=1", 0, "unix URL has no socket path", NULL},
    {"unix://tmp/redis.sock", 0, "unix URL names host 'tmp'", NULL},
    {"unix://localhost/tmp/redis.sock", 0, "unix:///tmp/redis.sock", NULL},
    {"unix:tmp/redis.sock", 0, "unix socket path 'tmp/redis.sock' is not absolute", NULL},
    /* fragments and IPv6 */
    {"redis://h/0#frag", 0, "percent-encode '#' as %23", NULL},
    {"redis://:S3C#R3T@h", 0, "'#' found", "S3C|R3T"},
    {"redis://::1:6380/0", 0, "put IPv6 addresses in brackets", NULL},
    {"redis://[::1:6380/0", 0, "unterminated '['", NULL},
    {"redis://[::1]x:6380", 0, "unexpected 'x:6380' after ']'", NULL},
    {"redis://h]:1", 0, "unexpected ']' in the host", NULL},
    /* passwords holding unencoded '/', '?' or '@' that split the URL elsewhere stay hidden */
    {"redis://u:S3/CR3T@h/0", 0, "is not a number", "S3|CR3T"},
    {"redis://u:S3?CR3T@h/0", 0, "is not a number", "S3|CR3T"},
    {"redis://u:" SECRET "/@h", 0, "is not a number", SECRET},
    {"redis://:ab?db=1@h", 0, "", "ab|db=1"},
    {"redis://h?password=S3&CR3T=x", 0, "unknown query parameter 'CR3T'", "S3"},
};

static void test_bad_case(const bad_case *c)
{
    rl_url u;
    char err[512];
    size_t len = c->len ? c->len : strlen(c->url);
    memset(&u, 0xAB, sizeof u);
    memset(err, 'Z', sizeof err);
    int rc = rl_url_parse(c->url, len, &u, err, sizeof err);
    CHECK(rc == -1, "'%s' was accepted", c->url);
    if (rc != -1) {
        rl_url_free(&u);
        return;
    }
    CHECK(is_zeroed(&u), "'%s': output not zeroed on error", c->url);
    CHECK(memchr(err, '\0', sizeof err) != NULL, "'%s': error not NUL-terminated", c->url);
    CHECK(strlen(err) > 10, "'%s': error too short: '%s'", c->url, err);
    CHECK(strchr(err, '\n') == NULL, "'%s': error has a newline: '%s'", c->url, err);
    CHECK(strstr(err, c->expect) != NULL, "'%s': error '%s' lacks '%s'", c->url, err, c->expect);
    if (len > 0) CHECK(strstr(err, " in URL '") != NULL, "'%s': error '%s' does not quote the URL", c->url, err);
    if (c->secret) {
        char pieces[128];
        snprintf(pieces, sizeof pieces, "%s", c->secret);
        for (char *tok = strtok(pieces, "|"); tok; tok = strtok(NULL, "|"))
            CHECK(strstr(err, tok) == NULL, "'%s': error shows secret '%s': %s", c->url, tok, err);
    }
}

/* ------------------------------------------------------------------ */
/* Other API behaviour                                                  */

static void test_edge_api(void)
{
    rl_url u;
    char err[256];

    /* NULL input is "empty" */
    memset(&u, 0xAB, sizeof u);
    CHECK(rl_url_parse(NULL, 5, &u, err, sizeof err) == -1, "NULL accepted");
    CHECK(strstr(err, "empty") != NULL, "NULL input error: %s", err);
    CHECK(is_zeroed(&u), "NULL input: output not zeroed");

    /* len is honoured: trailing bytes past len are ignored */
    CHECK(rl_url_parse("redis://h/12garbage", 11, &u, err, sizeof err) == 0, "prefix parse failed: %s", err);
    CHECK(u.db == 1 && str_eq(u.host, "h"), "prefix parse db %ld host %s", u.db, show(u.host));
    rl_url_free(&u);

    /* tiny or missing error buffers are safe */
    char tiny[8];
    memset(tiny, 'Z', sizeof tiny);
    CHECK(rl_url_parse("redis://h:0", 11, &u, tiny, sizeof tiny) == -1, "port 0 accepted (tiny err)");
    rl_url_free(&u); /* in case it was wrongly accepted */
    CHECK(memchr(tiny, '\0', sizeof tiny) == tiny + 7, "tiny err not truncated at 7: '%.8s'", tiny);
    CHECK(rl_url_parse("redis://h:0", 11, &u, NULL, 0) == -1, "port 0 accepted (NULL err)");
    rl_url_free(&u); /* in case it was wrongly accepted */
    CHECK(rl_url_parse("redis://h:0", 11, &u, err, 0) == -1, "port 0 accepted (errlen 0)");
    rl_url_free(&u); /* in case it was wrongly accepted */
    CHECK(rl_url_parse("", 0, &u, NULL, 0) == -1, "empty accepted (NULL err)");
    rl_url_free(&u); /* in case it was wrongly accepted */
    CHECK(rl_url_parse("redis://h", 9, NULL, err, sizeof err) == -1, "NULL out accepted");

    /* long URLs are quoted shortened, on one line */
    char longurl[2048];
    memcpy(longurl, "redis://h/", 10);
    memset(longurl + 10, 'x', sizeof longurl - 11);
    longurl[sizeof longurl - 1] = '\0';
    CHECK(rl_url_parse(longurl, strlen(longurl), &u, err, sizeof err) == -1, "long URL accepted");
    rl_url_free(&u); /* in case it was wrongly accepted */
    CHECK(strstr(err, "...") != NULL, "long URL not shortened: %s", err);
    CHECK(strstr(err, "is not a non-negative integer") != NULL, "long URL error: %s", err);

    /* control characters are escaped in the quoted URL */
    CHECK(rl_url_parse("redis://h/\n", 11, &u, err, sizeof err) == -1, "newline db accepted");
    rl_url_free(&u); /* in case it was wrongly accepted */
    CHECK(strchr(err, '\n') == NULL && strstr(err, "\\x0a") != NULL, "newline not escaped: %s", err);

    /* a very long password never appears, even partly */
    char lpw[600];
    memcpy(lpw, "redis://:", 9);
    memset(lpw + 9, 'Q', 400);
    memcpy(lpw + 409, "@h:0", 5);
    CHECK(rl_url_parse(lpw, strlen(lpw), &u, err, sizeof err) == -1, "long password URL accepted");
    rl_url_free(&u); /* in case it was wrongly accepted */
    CHECK(strstr(err, "QQ") == NULL, "long password shown: %s", err);

    /* format_safe is snprintf-like */
    CHECK(rl_url_parse("redis://user:pw@host:6379/0", 27, &u, err, sizeof err) == 0, "parse: %s", err);
    const char *want = "redis://user:***@host:6379/0";
    int wlen = (int)strlen(want);
    CHECK(rl_url_format_safe(&u, NULL, 0) == wlen, "format_safe(NULL, 0) length");
    char small[10];
    memset(small, 'Z', sizeof small);
    CHECK(rl_url_format_safe(&u, small, sizeof small) == wlen, "format_safe truncated length");
    CHECK(strcmp(small, "redis://u") == 0, "format_safe truncation: '%s'", small);
    char one[1] = {'Z'};
    CHECK(rl_url_format_safe(&u, one, 1) == wlen && one[0] == '\0', "format_safe buflen 1");
    char exact[64];
    CHECK(rl_url_format_safe(&u, exact, (size_t)wlen + 1) == wlen && strcmp(exact, want) == 0,
          "format_safe exact fit: '%s'", exact);
    CHECK(rl_url_format_safe(&u, exact, (size_t)wlen) == wlen && strlen(exact) == (size_t)wlen - 1,
          "format_safe one short: '%s'", exact);
    rl_url_free(&u);

    /* free is safe on a zeroed struct and twice */
    rl_url z;
    memset(&z, 0, sizeof z);
    rl_url_free(&z);
    rl_url_free(&z);
    rl_url_free(NULL);
    CHECK(is_zeroed(&z), "free on zeroed struct");
    CHECK(rl_url_format_safe(&z, err, sizeof err) > 0, "format_safe on a zeroed struct");
    CHECK(rl_url_format_safe(NULL, err, sizeof err) > 0, "format_safe on NULL");
}

/* ------------------------------------------------------------------ */
/* Query parameters beyond db/password/username, and sentinel URLs      */

static void test_params(void)
{
    rl_url u;
    char err[512];
    const char *url;

    /* defaults */
    url = "rediss://h:6390/1";
    CHECK(rl_url_parse(url, strlen(url), &u, err, sizeof err) == 0, "parse: %s", err);
    CHECK(u.tls_opts.cert_reqs == RL_TLS_REQ_REQUIRED && u.tls_opts.check_hostname == 1,
          "TLS defaults: reqs %d check %d", u.tls_opts.cert_reqs, u.tls_opts.check_hostname);
    CHECK(!u.tls_opts.ca_certs && !u.tls_opts.ca_path && !u.tls_opts.certfile && !u.tls_opts.keyfile,
          "no files by default");
    CHECK(u.socket_timeout < 0 && u.socket_connect_timeout < 0, "timeouts not given");
    CHECK(u.client_name == NULL && u.protocol == 0, "client_name/protocol not given");
    rl_url_free(&u);

    url = "rediss://:pw@h?ssl_cert_reqs=Optional&ssl_ca_certs=/etc/ca%20x.pem&ssl_ca_path=/etc/ssl/certs"
          "&ssl_certfile=/c.pem&ssl_keyfile=/k.pem&ssl_check_hostname=YES&socket_timeout=2.5"
          "&socket_connect_timeout=.25&client_name=worker-1&protocol=3&db=4";
    CHECK(rl_url_parse(url, strlen(url), &u, err, sizeof err) == 0, "parse all: %s", err);
    CHECK(u.tls_opts.cert_reqs == RL_TLS_REQ_OPTIONAL, "cert_reqs %d", u.tls_opts.cert_reqs);
    CHECK(u.tls_opts.check_hostname == 1, "check_hostname %d", u.tls_opts.check_hostname);
    CHECK(str_eq(u.tls_opts.ca_certs, "/etc/ca x.pem"), "ca_certs %s", show(u.tls_opts.ca_certs));
    CHECK(str_eq(u.tls_opts.ca_path, "/etc/ssl/certs"), "ca_path %s", show(u.tls_opts.ca_path));
    CHECK(str_eq(u.tls_opts.certfile, "/c.pem") && str_eq(u.tls_opts.keyfile, "/k.pem"), "cert/key");
    CHECK(u.socket_timeout == 2.5 && u.socket_connect_timeout == 0.25, "timeouts %g %g",
          u.socket_timeout, u.socket_connect_timeout);
    CHECK(str_eq(u.client_name, "worker-1") && u.protocol == 3 && u.db == 4, "client_name/protocol/db");
    char safe[256];
    rl_url_format_safe(&u, safe, sizeof safe);
    CHECK(str_eq(safe, "rediss://:***@h:6379/4"), "safe form %s", safe);
    rl_url cp;
    CHECK(rl_url_copy(&cp, &u) == 0, "copy");
    CHECK(rl_url_same_endpoint(&cp, &u) && cp.tls_opts.ca_certs != u.tls_opts.ca_certs &&
          str_eq(cp.tls_opts.keyfile, "/k.pem") && str_eq(cp.client_name, "worker-1") &&
          cp.socket_timeout == 2.5, "deep copy");
    rl_url_free(&cp);
    rl_url_free(&u);

    /* check_hostname follows cert_reqs unless given; booleans */
    static const struct { const char *url; int reqs, check; } tls[] = {
        {"rediss://h?ssl_cert_reqs=none", RL_TLS_REQ_NONE, 0},
        {"rediss://h?ssl_cert_reqs=optional", RL_TLS_REQ_OPTIONAL, 0},
        {"rediss://h?ssl_cert_reqs=REQUIRED", RL_TLS_REQ_REQUIRED, 1},
        {"rediss://h?ssl_check_hostname=false", RL_TLS_REQ_REQUIRED, 0},
        {"rediss://h?ssl_check_hostname=0", RL_TLS_REQ_REQUIRED, 0},
        {"rediss://h?ssl_check_hostname=No", RL_TLS_REQ_REQUIRED, 0},
        {"rediss://h?ssl_check_hostname=1", RL_TLS_REQ_REQUIRED, 1},
        {"rediss://h?ssl_check_hostname=True&ssl_cert_reqs=optional", RL_TLS_REQ_OPTIONAL, 1},
        {"rediss://h?ssl_cert_reqs=none&ssl_check_hostname=false", RL_TLS_REQ_NONE, 0},
        {"rediss://h?ssl_cert_reqs=&ssl_check_hostname=", RL_TLS_REQ_REQUIRED, 1},
        {"rediss+sentinel://s/m?ssl_cert_reqs=none", RL_TLS_REQ_NONE, 0},
    };
    for (size_t i = 0; i < sizeof tls / sizeof tls[0]; i++) {
        CHECK(rl_url_parse(tls[i].url, strlen(tls[i].url), &u, err, sizeof err) == 0, "%s: %s", tls[i].url, err);
        CHECK(u.tls_opts.cert_reqs == tls[i].reqs && u.tls_opts.check_hostname == tls[i].check,
              "%s: reqs %d check %d", tls[i].url, u.tls_opts.cert_reqs, u.tls_opts.check_hostname);
        rl_url_free(&u);
    }

    /* numbers */
    static const struct { const char *v; double want; } nums[] = {
        {"1", 1}, {"0.5", 0.5}, {".5", 0.5}, {"2.", 2}, {"1e-3", 0.001}, {"1.5E2", 150}, {"007", 7},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        char buf[128];
        snprintf(buf, sizeof buf, "redis://h?socket_timeout=%s", nums[i].v);
        CHECK(rl_url_parse(buf, strlen(buf), &u, err, sizeof err) == 0, "%s: %s", buf, err);
        double d = u.socket_timeout - nums[i].want;
        CHECK(d < 1e-9 && d > -1e-9, "%s: %g", buf, u.socket_timeout);
        rl_url_free(&u);
    }
    url = "unix:///tmp/s?client_name=a&protocol=2&socket_connect_timeout=3";
    CHECK(rl_url_parse(url, strlen(url), &u, err, sizeof err) == 0, "unix params: %s", err);
    CHECK(str_eq(u.client_name, "a") && u.protocol == 2 && u.socket_connect_timeout == 3, "unix params");
    rl_url_free(&u);
}

typedef struct sentinel_case {
    const char *url;
    int tls, n;
    const char *hosts[3];
    int ports[3];
    const char *service;
    long db;
    const char *user, *password, *suser, *spassword;
    const char *safe;
} sentinel_case;

static const sentinel_case sentinel_cases[] = {
    {"redis+sentinel://s1/mymaster", 0, 1, {"s1"}, {26379}, "mymaster", 0, NULL, NULL, NULL, NULL,
     "redis+sentinel://s1:26379/mymaster/0"},
    {"redis+sentinel://S1:26380,s2,[::1]:5000/my%20master/3", 0, 3, {"s1", "s2", "::1"}, {26380, 26379, 5000},
     "my master", 3, NULL, NULL, NULL, NULL, "redis+sentinel://s1:26380,s2:26379,[::1]:5000/my%20master/3"},
    {"rediss+sentinel://u:pw@s1:1,s2:2/m/", 1, 2, {"s1", "s2"}, {1, 2}, "m", 0, "u", "pw", NULL, NULL,
     "rediss+sentinel://u:***@s1:1,s2:2/m/0"},
    {"redis+sentinel://:pw@s1/m?sentinel_username=admin&sentinel_password=sp&db=2", 0, 1, {"s1"}, {26379},
     "m", 2, NULL, "pw", "admin", "sp", "redis+sentinel://:***@s1:26379/m/2?sentinel_username=admin&sentinel_password=***"},
    {"REDIS+SENTINEL://s1/m?sentinel_password=a+b%26c&password=x", 0, 1, {"s1"}, {26379}, "m", 0, NULL, "x", NULL,
     "a b&c", "redis+sentinel://:***@s1:26379/m/0?sentinel_password=***"},
};

static void test_sentinel(void)
{
    for (size_t i = 0; i < sizeof sentinel_cases / sizeof sentinel_cases[0]; i++) {
        const sentinel_case *c = &sentinel_cases[i];
        rl_url u;
        char err[512], safe[256];
        memset(&u, 0xAB, sizeof u);
        int rc = rl_url_parse(c->url, strlen(c->url), &u, err, sizeof err);
        CHECK(rc == 0, "parse '%s': %s", c->url, err);
        if (rc) continue;
        CHECK(u.kind == RL_URL_SENTINEL && u.tls == c->tls && u.nsentinels == c->n, "'%s': kind %d tls %d n %d",
              c->url, u.kind, u.tls, u.nsentinels);
        for (int k = 0; k < c->n && k < u.nsentinels; k++)
            CHECK(str_eq(u.sentinels[k].host, c->hosts[k]) && u.sentinels[k].port == c->ports[k],
                  "'%s': sentinel %d is %s:%d", c->url, k, show(u.sentinels[k].host), u.sentinels[k].port);
        CHECK(u.host == NULL && u.path == NULL, "'%s': host/path set", c->url);
        CHECK(str_eq(u.service_name, c->service) && u.db == c->db, "'%s': service %s db %ld", c->url,
              show(u.service_name), u.db);
        CHECK(str_eq(u.user, c->user) && str_eq(u.password, c->password), "'%s': user/password", c->url);
        CHECK(str_eq(u.sentinel_user, c->suser) && str_eq(u.sentinel_password, c->spassword),
              "'%s': sentinel user '%s' password '%s'", c->url, show(u.sentinel_user), show(u.sentinel_password));
        int n = rl_url_format_safe(&u, safe, sizeof safe);
        CHECK(str_eq(safe, c->safe) && n == (int)strlen(safe), "'%s': safe form '%s'", c->url, safe);
        if (u.password) CHECK(strstr(safe, u.password) == NULL, "'%s': safe shows the password", c->url);
        if (u.sentinel_password)
            CHECK(strstr(safe, u.sentinel_password) == NULL, "'%s': safe shows the sentinel password", c->url);
        rl_url back, cp;
        CHECK(rl_url_parse(safe, strlen(safe), &back, err, sizeof err) == 0, "'%s': safe form does not parse: %s",
              c->url, err);
        CHECK(back.nsentinels == u.nsentinels && str_eq(back.service_name, u.service_name) && back.db == u.db,
              "'%s': safe form names another topology", c->url);
        rl_url_free(&back);
        CHECK(rl_url_copy(&cp, &u) == 0 && rl_url_same_endpoint(&cp, &u), "'%s': copy", c->url);
        rl_url_free(&cp);
        rl_url_free(&u);
        CHECK(is_zeroed(&u), "'%s': free did not zero", c->url);
    }
}

/* ------------------------------------------------------------------ */
/* Endpoint comparison                                                  */

typedef struct same_case {
    const char *a, *b;
    int same;
} same_case;

static const same_case same_cases[] = {
    {"redis://localhost", "redis://LOCALHOST:6379/0", 1},
    {"redis://h/0?db=3", "redis://h:6379/3", 1},
    {"redis://u:pw@h", "redis://h?username=u&password=pw", 1},
    {"redis://:p%40w@h", "redis://:p@w@h", 1},
    {"redis://[::1]:6379", "redis://[0:0::1]:6379", 0}, /* textual comparison, no address normalising */
    {"unix:///tmp/s", "unix:/tmp/s?db=0", 1},
    {"unix://:pw@/tmp/s?db=1", "unix:///tmp/s?db=1&password=pw", 1},
    {"redis://h:6379/0", "redis://h:6380/0", 0},
    {"redis://h:6379/0", "redis://h:6379/1", 0},
    {"redis://h:6379/0", "rediss://h:6379/0", 0},
    {"redis://h:6379/0", "redis://g:6379/0", 0},
    {"redis://:a@h", "redis://:b@h", 0},
    {"redis://:a@h", "redis://h", 0},
    {"redis://u:a@h", "redis://:a@h", 0},
    {"redis://u:a@h", "redis://v:a@h", 0},
    {"unix:///tmp/s", "unix:///tmp/t", 0},
    {"unix:///tmp/s", "unix:///tmp/s?db=1", 0},
    {"unix:///tmp/s", "unix://:x@/tmp/s", 0},
    {"unix:///tmp/s", "redis://localhost", 0},
    /* TLS options and client_name name another connection; timeouts and protocol do not */
    {"rediss://h", "rediss://h?ssl_cert_reqs=required&ssl_check_hostname=true", 1},
    {"rediss://h", "rediss://h?ssl_cert_reqs=none", 0},
    {"rediss://h", "rediss://h?ssl_check_hostname=false", 0},
    {"rediss://h?ssl_ca_certs=/a", "rediss://h?ssl_ca_certs=/b", 0},
    {"rediss://h?ssl_ca_path=/a", "rediss://h", 0},
    {"rediss://h?ssl_certfile=/c", "rediss://h?ssl_certfile=/c&ssl_keyfile=/k", 0},
    {"redis://h?client_name=a", "redis://h?client_name=b", 0},
    {"redis://h?client_name=a", "redis://h", 0},
    {"redis://h?socket_timeout=1&protocol=3", "redis://h", 1},
    /* sentinel URLs */
    {"redis+sentinel://s1,s2/m", "redis+sentinel://S1:26379,s2:26379/m/0", 1},
    {"redis+sentinel://s1,s2/m", "redis+sentinel://s2,s1/m", 0},
    {"redis+sentinel://s1,s2/m", "redis+sentinel://s1/m", 0},
    {"redis+sentinel://s1/m", "redis+sentinel://s1/n", 0},
    {"redis+sentinel://s1/m", "redis+sentinel://s1/m/1", 0},
    {"redis+sentinel://s1/m", "rediss+sentinel://s1/m", 0},
    {"redis+sentinel://s1/m", "redis+sentinel://s1/m?sentinel_password=x", 0},
    {"redis+sentinel://s1/m?sentinel_username=a", "redis+sentinel://s1/m?sentinel_username=b", 0},
    {"redis+sentinel://s1:6379/m", "redis://s1:6379/0", 0},
};

static void test_same_endpoint(void)
{
    for (size_t i = 0; i < sizeof same_cases / sizeof same_cases[0]; i++) {
        const same_case *c = &same_cases[i];
        rl_url a, b;
        char err[256];
        int ra = rl_url_parse(c->a, strlen(c->a), &a, err, sizeof err);
        CHECK(ra == 0, "parse '%s': %s", c->a, err);
        int rb = rl_url_parse(c->b, strlen(c->b), &b, err, sizeof err);
        CHECK(rb == 0, "parse '%s': %s", c->b, err);
        if (ra == 0 && rb == 0) {
            CHECK(rl_url_same_endpoint(&a, &b) == c->same, "same_endpoint('%s', '%s') != %d", c->a, c->b, c->same);
            CHECK(rl_url_same_endpoint(&b, &a) == c->same, "same_endpoint('%s', '%s') != %d", c->b, c->a, c->same);
        }
        rl_url_free(&a);
        rl_url_free(&b);
    }
    rl_url z;
    memset(&z, 0, sizeof z);
    CHECK(rl_url_same_endpoint(NULL, &z) == 0, "same_endpoint(NULL, x)");
    CHECK(rl_url_same_endpoint(&z, NULL) == 0, "same_endpoint(x, NULL)");
}

int main(void)
{
    for (size_t i = 0; i < sizeof ok_cases / sizeof ok_cases[0]; i++) test_ok_case(&ok_cases[i]);
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) test_bad_case(&bad_cases[i]);
    test_edge_api();
    test_params();
    test_sentinel();
    test_same_endpoint();
    printf("test_url: %zu accepted, %zu rejected URL cases\n", sizeof ok_cases / sizeof ok_cases[0],
           sizeof bad_cases / sizeof bad_cases[0]);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
