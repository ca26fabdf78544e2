/* The Redis side of bringing a connection up: AUTH, CLIENT SETNAME,
 * SELECT, SCRIPT LOAD, and what an error reply to each of them means.
 * Records the outcome in the connection (hs_pending 0: done, -1: failed
 * with hs_kind/hs_msg); rl_conn.c acts on it after each reply. */
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "rl_conn_hs.h"
#include "rl_reply.h"
#include "rl_wire.h"
#include "rl_error.h"
#include "rl_scripts.h"

#define HS_SETNAME "CLIENT SETNAME"

/* Handshake replies, in order: [AUTH], CLIENT SETNAME, [SELECT], SCRIPT LOAD x N. */
static void hs_reply(redisReply *reply, void *priv)
{
    rl_conn *c = priv;
    if (c->hs_pending <= 0 || !reply)
        return;
    const char *what = c->hs_what[c->hs_index];
    if (reply->type == REDIS_REPLY_ERROR && strcmp(what, HS_SETNAME) == 0) {
        /* An ACL without CLIENT, a proxy that does not know it: the name is
         * a courtesy to whoever reads CLIENT LIST, not a requirement. */
    } else if (reply->type == REDIS_REPLY_ERROR) {
        int kind = rl_reply_errkind(reply->str, reply->len);
        int n = (int)(reply->len > 120 ? 120 : reply->len);
        char msg[640];
        if (kind == 0) {
            /* LOADING and friends: try again later, not fatal. */
            snprintf(msg, sizeof msg, "%s failed: %.*s", what, (int)(reply->len > 180 ? 180 : reply->len),
                     reply->str);
        } else {
            if (kind == RL_EPERM)
                ;                      /* an ACL denial, not the credentials */
            else if (strncmp(what, "AUTH", 4) == 0 || strncmp(reply->str, "NOAUTH", 6) == 0 ||
                     strncmp(reply->str, "WRONGPASS", 9) == 0)
                kind = RL_EAUTH;
            else if (kind != RL_EAUTH)
                kind = RL_EREDIS;
            if (kind == RL_EAUTH)
                snprintf(msg, sizeof msg, "authentication failed at %s: %.*s; check the user and password in the URL",
                         c->cfg.display, n, reply->str);
            else if (kind == RL_EPERM)
                snprintf(msg, sizeof msg, "%s refused by %s: %.*s; the ACL user lacks a permission redlease "
                         "needs (see README, Errors)", what, c->cfg.display, n, reply->str);
            else
                snprintf(msg, sizeof msg, "%s refused by %s: %.*s", what, c->cfg.display, n, reply->str);
        }
        c->hs_pending = -1;
        c->hs_kind = kind;
        snprintf(c->hs_msg, sizeof c->hs_msg, "%s", msg);
        return;
    } else if (reply->type == REDIS_REPLY_STRING && strncmp(what, "SCRIPT", 6) == 0 && c->cfg.sha) {
        int s = c->hs_script[c->hs_index];
        snprintf(c->cfg.sha[s], sizeof c->cfg.sha[s], "%.*s", (int)(reply->len > 47 ? 47 : reply->len), reply->str);
    }
    c->hs_index++;
    c->hs_pending--;
}

static int hs_send(rl_conn *c, int *n, const char *what, int argc, const char **argv, const size_t *lens)
{
    c->hs_what[*n] = what;
    (*n)++;
    return rl_wire_queue(c, hs_reply, c, 0, argc, argv, lens);
}

int rl_hs_start(rl_conn *c)
{
    const rl_conn_cfg *cfg = &c->cfg;
    int n = 0;
    c->hs_pending = 0;
    c->hs_kind = 0;
    c->hs_msg[0] = 0;
    c->hs_index = 0;
    if (cfg->password) {
        const char *argv[3] = {"AUTH", NULL, NULL};
        size_t lens[3] = {4, 0, 0};
        int argc = 2;
        if (cfg->user) {
            argv[1] = cfg->user;
            lens[1] = strlen(cfg->user);
            argv[2] = cfg->password;
            lens[2] = strlen(cfg->password);
            argc = 3;
        } else {
            argv[1] = cfg->password;
            lens[1] = strlen(cfg->password);
        }
        if (hs_send(c, &n, "AUTH", argc, argv, lens) < 0)
            goto fail;
    }
    {
        const char *name = cfg->client_name ? cfg->client_name : "redlease";
        const char *argv[3] = {"CLIENT", "SETNAME", name};
        size_t lens[3] = {6, 7, strlen(name)};
        if (hs_send(c, &n, HS_SETNAME, 3, argv, lens) < 0)
            goto fail;
    }
    if (cfg->select_db && cfg->db != 0) {
        char db[24];
        int len = snprintf(db, sizeof db, "%ld", cfg->db);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, (size_t)len};
        if (hs_send(c, &n, "SELECT (database index)", 2, argv, lens) < 0)
            goto fail;
    }
    if (cfg->load_scripts) {
        for (int s = 0; s < RL_SCRIPT_COUNT; s++) {
            const char *argv[3] = {"SCRIPT", "LOAD", rl_script_text[s]};
            size_t lens[3] = {6, 4, strlen(rl_script_text[s])};
            c->hs_script[n] = s;
            if (hs_send(c, &n, "SCRIPT LOAD", 3, argv, lens) < 0)
                goto fail;
        }
    }
    c->hs_pending = n;
    atomic_fetch_add(&c->eng->st_commands, (unsigned long long)n);
    return 0;
fail:
    c->hs_pending = -1;
    return -1;
}

