/* A hash map from byte strings to pointers (chained, grows by doubling).
 * The map does not own keys or values: each value must keep its key bytes
 * alive while it is in the map. */
#ifndef RL_MAP_H
#define RL_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct rl_map_node {
    struct rl_map_node *next;
    uint64_t hash;
    const char *key;
    size_t keylen;
    void *value;
} rl_map_node;

typedef struct rl_map {
    rl_map_node **b;
    size_t nb, len;
} rl_map;

void *rl_map_get(const rl_map *m, const char *key, size_t keylen);
int rl_map_put(rl_map *m, const char *key, size_t keylen, void *value); /* -1 OOM */
void *rl_map_del(rl_map *m, const char *key, size_t keylen);
/* Calls fn for each value; fn must not change the map. */
void rl_map_each(const rl_map *m, void (*fn)(void *value, void *arg), void *arg);
void rl_map_free(rl_map *m);

#endif
