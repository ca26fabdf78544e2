/* rl_url.h - parse Redis connection URLs the way redis-py's from_url reads them.
 *
 * Accepted forms:
 *   redis://[[user]:password@]host[:port][/db][?query]
 *   rediss://...                      (same as redis://, tls = 1)
 *   unix://[[user]:password@]/path/to/sock[?query]
 *   unix:/path/to/sock[?query]
 *   redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service_name[/db][?query]
 *   rediss+sentinel://...             (TLS to the sentinels and the servers)
 * where query is '&'-separated name=value pairs (redis-py's names):
 *   db, password, username                       every form
 *   socket_timeout, socket_connect_timeout       seconds > 0 (command / connect timeout)
 *   client_name                                  CLIENT SETNAME (default "redlease")
 *   protocol                                     2 or 3 (redlease speaks RESP2: no effect)
 *   ssl_cert_reqs, ssl_ca_certs, ssl_ca_path,
 *   ssl_certfile, ssl_keyfile, ssl_check_hostname    rediss:// and rediss+sentinel:// only
 *   sentinel_username, sentinel_password         sentinel forms only
 * A db given in the query overrides a db given in the path; a password or
 * username given both in the userinfo and in the query is rejected.  In a
 * sentinel URL the userinfo (and password/username) is for the Redis
 * servers; sentinel_username/sentinel_password for the sentinels.
 */
#ifndef RL_URL_H
#define RL_URL_H

#include <stddef.h>

enum { RL_URL_TCP = 1, RL_URL_UNIX = 2, RL_URL_SENTINEL = 3 };

/* ssl_cert_reqs */
enum { RL_TLS_REQ_NONE = 0, RL_TLS_REQ_OPTIONAL = 1, RL_TLS_REQ_REQUIRED = 2 };

/* rediss:// query parameters, redis-py's names (all strings malloc'd, NULL if not given). */
typedef struct rl_tls_opts {
    int cert_reqs;       /* RL_TLS_REQ_*, default REQUIRED */
    int check_hostname;  /* ssl_check_hostname: 0/1; default 1 when cert_reqs is REQUIRED, else 0 */
    char *ca_certs;      /* ssl_ca_certs: a PEM file */
    char *ca_path;       /* ssl_ca_path: a hashed directory */
    char *certfile;      /* ssl_certfile: client certificate (mutual TLS) */
    char *keyfile;       /* ssl_keyfile: its key (default: the certfile) */
} rl_tls_opts;

/* One sentinel of a sentinel URL. */
typedef struct rl_url_hostport {
    char *host;      /* as rl_url.host */
    int port;        /* default 26379 */
} rl_url_hostport;

typedef struct rl_url {
    int kind;        /* RL_URL_TCP, RL_URL_UNIX or RL_URL_SENTINEL */
    int tls;         /* 1 for rediss:// and rediss+sentinel:// */
    char *host;      /* TCP: host, percent-decoded, IPv6 brackets stripped ("::1"); NULL for unix */
    int port;        /* TCP: 1..65535, default 6379 */
    char *path;      /* UNIX: socket path, percent-decoded; NULL for tcp */
    long db;         /* 0 <= db <= 2147483647, default 0 */
    char *user;      /* NULL if none (empty user in "redis://:pw@h" is NULL) */
    char *password;  /* NULL if none */
    rl_tls_opts tls_opts;        /* meaningful when tls */
    char *client_name;           /* client_name: sent with CLIENT SETNAME; NULL means "redlease" */
    double socket_timeout;       /* seconds, < 0 if not given (-> command timeout) */
    double socket_connect_timeout; /* seconds, < 0 if not given (-> connect timeout) */
    int protocol;                /* 2 or 3 as given, 0 if not given (redlease speaks RESP2 either way) */
    /* RL_URL_SENTINEL: host/port above are unused (NULL/0) */
    rl_url_hostport *sentinels;  /* nsentinels entries, in URL order */
    int nsentinels;
    char *service_name;          /* the master's name, percent-decoded */
    char *sentinel_user;         /* sentinel_username, NULL if none */
    char *sentinel_password;     /* sentinel_password, NULL if none */
} rl_url;

/* Returns 0 and fills *out (all strings malloc'd, owned by out) or -1 and writes a one-line
   message into err (never containing the password; say what is wrong and how to fix it, e.g.
   "port 70000 out of range 1..65535 in URL 'redis://h:70000/0'"). On -1, *out holds nothing to free. */
int rl_url_parse(const char *s, size_t len, rl_url *out, char *err, size_t errlen);

/* Frees strings, zeroes struct; safe on a zeroed struct. */
void rl_url_free(rl_url *u);

/* Deep copy: 0, or -1 when out of memory (dst then holds nothing to free). */
int rl_url_copy(rl_url *dst, const rl_url *src);

/* Writes a display form with every password replaced by "***" (e.g. "redis://user:***@host:6379/0",
   "unix:///tmp/r.sock?db=2", "redis+sentinel://:***@s1:26379,s2:26379/mymaster/0?sentinel_password=***");
   TLS options, timeouts and client_name are not shown.  Returns number of chars (snprintf-like). */
int rl_url_format_safe(const rl_url *u, char *buf, size_t buflen);

/* 1 if a and b name the same server connection (kind, tls, host, port, path, db, user, password,
   TLS options, client_name; for sentinel URLs the sentinel list, service name and sentinel
   credentials).  Timeouts are compared by the caller (they may come from keyword arguments). */
int rl_url_same_endpoint(const rl_url *a, const rl_url *b);

#endif /* RL_URL_H */
