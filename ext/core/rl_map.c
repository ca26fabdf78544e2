#include "rl_map.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static rl_map_node **find(const rl_map *m, uint64_t h, const char *key, size_t keylen)
{
    if (!m->nb)
        return NULL;
    rl_map_node **pp = &m->b[h & (m->nb - 1)];
    for (; *pp; pp = &(*pp)->next) {
        rl_map_node *n = *pp;
        if (n->hash == h && n->keylen == keylen && memcmp(n->key, key, keylen) == 0)
            return pp;
    }
    return pp;
}

void *rl_map_get(const rl_map *m, const char *key, size_t keylen)
{
    rl_map_node **pp = find(m, hash_bytes(key, keylen), key, keylen);
    return (pp && *pp) ? (*pp)->value : NULL;
}

static int grow(rl_map *m)
{
    size_t nb = m->nb ? m->nb * 2 : 16;
    rl_map_node **b = calloc(nb, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < m->nb; i++) {
        rl_map_node *n = m->b[i];
        while (n) {
            rl_map_node *next = n->next;
            size_t j = n->hash & (nb - 1);
            n->next = b[j];
            b[j] = n;
            n = next;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
    return 0;
}

int rl_map_put(rl_map *m, const char *key, size_t keylen, void *value)
{
    uint64_t h = hash_bytes(key, keylen);
    rl_map_node **pp = find(m, h, key, keylen);
    if (pp && *pp) {
        (*pp)->value = value;
        (*pp)->key = key;
        return 0;
    }
    if (m->len + 1 > m->nb * 3 / 4) {
        if (grow(m) < 0)
            return -1;
    }
    rl_map_node *n = malloc(sizeof *n);
    if (!n)
        return -1;
    n->hash = h;
    n->key = key;
    n->keylen = keylen;
    n->value = value;
    size_t j = h & (m->nb - 1);
    n->next = m->b[j];
    m->b[j] = n;
    m->len++;
    return 0;
}

void *rl_map_del(rl_map *m, const char *key, size_t keylen)
{
    rl_map_node **pp = find(m, hash_bytes(key, keylen), key, keylen);
    if (!pp || !*pp)
        return NULL;
    rl_map_node *n = *pp;
    void *v = n->value;
    *pp = n->next;
    free(n);
    m->len--;
    return v;
}

void rl_map_each(const rl_map *m, void (*fn)(void *value, void *arg), void *arg)
{
    for (size_t i = 0; i < m->nb; i++)
        for (rl_map_node *n = m->b[i]; n; n = n->next)
            fn(n->value, arg);
}

void rl_map_free(rl_map *m)
{
    for (size_t i = 0; i < m->nb; i++) {
        rl_map_node *n = m->b[i];
        while (n) {
            rl_map_node *next = n->next;
            free(n);
            n = next;
        }
    }
    free(m->b);
    m->b = NULL;
    m->nb = m->len = 0;
}
