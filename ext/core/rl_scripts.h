/* The Lua scripts of the lease protocol. */
#ifndef RL_SCRIPTS_H
#define RL_SCRIPTS_H

enum {
    RL_SCRIPT_ACQUIRE = 0, /* KEYS: key, token key. ARGV: node_id, ttl ms, channel */
    RL_SCRIPT_RENEW,       /* KEYS: key. ARGV: node_id, ttl ms */
    RL_SCRIPT_RELEASE,     /* KEYS: key. ARGV: node_id, channel */
    RL_SCRIPT_STATUS,      /* KEYS: key, token key. Reads holder, PTTL, last token */
    RL_SCRIPT_COUNT
};

extern const char *const rl_script_name[RL_SCRIPT_COUNT];
extern const char *const rl_script_text[RL_SCRIPT_COUNT];

#endif
