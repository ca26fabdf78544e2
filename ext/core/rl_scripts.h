/* The Lua scripts of the lease protocol. */
#ifndef RL_SCRIPTS_H
#define RL_SCRIPTS_H

#include <stddef.h>
#include <stdint.h>

enum {
    RL_SCRIPT_ACQUIRE = 0, /* KEYS: key, token key, marker. ARGV: term, ttl ms, channel, retention ms */
    RL_SCRIPT_RENEW,       /* KEYS: key. ARGV: term, ttl ms */
    RL_SCRIPT_RELEASE,     /* KEYS: key. ARGV: term, channel */
    RL_SCRIPT_STATUS,      /* KEYS: key, token key. Reads holder, PTTL, last token */
    RL_SCRIPT_COUNT
};

extern const char *const rl_script_name[RL_SCRIPT_COUNT];
extern const char *const rl_script_text[RL_SCRIPT_COUNT];

/* The database's data-loss marker (one per database on a standalone
 * server; see the acquire script). */
#define RL_MARKER_KEY "redlease:marker"
/* Token counters expire this long after the last acquire: tokens stay
 * monotonic as long as the server clock never steps back by more. */
#define RL_TOKEN_RETENTION_MS "86400000"

/* A term's value is "<node_id>#<RL_TERM_SUFFIX_LEN lowercase hex>". */
#define RL_TERM_SUFFIX_LEN 16
/* The length of the node_id part of a stored value (the whole value when it
 * has no term suffix, e.g. a key written by something else). */
size_t rl_term_idlen(const char *v, size_t len);
/* Writes RL_TERM_SUFFIX_LEN hex digits of r at suffix (no NUL). */
void rl_term_set_suffix(char *suffix, uint64_t r);

#endif
