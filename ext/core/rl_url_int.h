/* rl_url_int.h - private to the rl_url*.c files: lexing and decoding
 * helpers (rl_url_lex.c), the parser (rl_url.c), query parameters
 * (rl_url_query.c), display and comparison (rl_url_show.c). */
#ifndef RL_URL_INT_H
#define RL_URL_INT_H

#include <stddef.h>

#include "rl_url.h"

#define RL_URL_DEFAULT_PORT 6379
#define RL_URL_SENTINEL_PORT 26379
#define RL_URL_DB_MAX 2147483647L
#define RL_URL_MAX_SENTINELS 64
#define ECHO_MAX 160 /* input chars shown when quoting a URL in an error */
#define FRAG_MAX 40  /* input chars shown when quoting a piece of a URL */

#define SUPPORTED_SCHEMES \
    "supported schemes are redis://, rediss://, unix://, redis+sentinel:// and rediss+sentinel://"

#if defined(__GNUC__)
#define RL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define RL_PRINTF(f, a)
#endif

/* Locale-independent character helpers */
static inline int rl_is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static inline int rl_is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static inline int rl_is_alnum(unsigned char c) { return rl_is_alpha(c) || rl_is_digit(c); }
static inline unsigned char rl_to_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

int rl_eq_ci(const char *a, size_t n, const char *lit);
int rl_eq_lit(const char *a, size_t n, const char *lit);
const char *rl_find_char(const char *p, const char *end, char ch);
const char *rl_find_last(const char *p, const char *end, char ch);
/* First position in [p, end) holding one of the chars in set, or end. */
const char *rl_find_any(const char *p, const char *end, const char *set);

/* 1 if a query parameter of this name holds no secret (its value may be
   quoted in errors); unknown names count as secret. */
int rl_url_param_public(const char *name, size_t n);

/* Parser context and error reporting */
typedef struct pctx {
    const char *s;
    size_t len;
    unsigned char *mask; /* NULL = treat everything as secret */
    char *err;
    size_t errlen;
} pctx;

/* Flags every input byte that could be a password (see rl_url_lex.c); NULL when out of memory. */
unsigned char *rl_url_mask(const char *s, size_t len);

/* Writes "<problem> in URL '<safe url>'[; <fix>]" into the error buffer; returns -1. */
int rl_url_fail(const pctx *c, const char *fix, const char *fmt, ...) RL_PRINTF(3, 4);

/* A piece of the input, quoted for an error message, with secrets masked. */
typedef struct frag {
    char text[FRAG_MAX * 4 + 16];
} frag;
const char *rl_url_fragment(const pctx *c, frag *f, const char *p, size_t n);

/* Percent-decodes [p, p+n) into a new string (*out). plus_space turns '+' into ' '
   (query values, as redis-py's parse_qs does). secret: never quote the text. */
int rl_url_decode(const pctx *c, const char *p, size_t n, int plus_space, const char *what,
                  int secret, char **out);
/* Decodes an optional string component: empty -> NULL. */
int rl_url_decode_opt(const pctx *c, const char *p, size_t n, int plus_space, const char *what,
                      int secret, char **out);
/* Parses a db number from raw text [p, p+n) (percent-decoded first). */
int rl_url_parse_db(const pctx *c, const char *p, size_t n, int plus_space, const char *where, long *db);

/* Query parameters [q, end) into out (rl_url_query.c). */
int rl_url_parse_query(const pctx *c, const char *q, const char *end, rl_url *out,
                       int user_in_auth, int pass_in_auth);

#endif
