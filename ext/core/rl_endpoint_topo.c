/* The Sentinel side of an endpoint: what the topology (rl_sentinel.c)
 * tells it through rl_ep_topo_cbs (the master's address, errors), and the
 * step-down of every leader when the server stops being the master. */
#include <stdio.h>
#include <string.h>

#include "rl_conn.h"
#include "rl_endpoint.h"
#include "rl_endpoint_int.h"
#include "rl_sentinel.h"

void rl_ep_set_mdisplay(rl_endpoint *ep)
{
    if (!ep->mport)
        snprintf(ep->mdisplay, sizeof ep->mdisplay, "the master of %s", ep->display);
    else if (strchr(ep->mhost, ':'))
        snprintf(ep->mdisplay, sizeof ep->mdisplay, "master [%s]:%d (%s)", ep->mhost, ep->mport, ep->display);
    else
        snprintf(ep->mdisplay, sizeof ep->mdisplay, "master %s:%d (%s)", ep->mhost, ep->mport, ep->display);
}

/* Every leader on this endpoint steps down now: the server it leads on is
 * (or may be) no longer the master, and a demoted master keeps accepting
 * writes until it is reconfigured. */
void rl_ep_demote_all(rl_endpoint *ep, const char *why)
{
    for (rl_lease *l = ep->leases, *next; l; l = next) {
        next = l->ep_next;
        l->ep_cbs->demoted(l, why);
    }
}

void rl_endpoint_not_master(rl_endpoint *ep, const char *why)
{
    if (!ep->topo || ep->freeing)
        return;
    rl_ep_demote_all(ep, why);
    ep->switching = 1;
    rl_conn_drop(&ep->cmd, why);
    rl_conn_drop(&ep->sub, why);
    ep->switching = 0;
    rl_topo_ask(ep->topo, 1);
}

/* ---- the Sentinel topology's callback table ---- */

static void publish_topo(rl_endpoint *ep)
{
    pthread_mutex_lock(&ep->eng->mu);
    if (ep->mport && strchr(ep->mhost, ':'))
        snprintf(ep->pub_master, sizeof ep->pub_master, "[%s]:%d", ep->mhost, ep->mport);
    else if (ep->mport)
        snprintf(ep->pub_master, sizeof ep->pub_master, "%s:%d", ep->mhost, ep->mport);
    else
        ep->pub_master[0] = 0;
    rl_topo_describe(ep->topo, ep->pub_sentinels, sizeof ep->pub_sentinels);
    pthread_mutex_unlock(&ep->eng->mu);
}

static void topo_master(void *owner, const char *host, int port, const char *why)
{
    rl_endpoint *ep = owner;
    char msg[900];
    if (ep->freeing)
        return;
    int had = ep->mport != 0;
    if (had) {
        snprintf(msg, sizeof msg, "the master of '%s' moved from %s:%d to %s:%d (%s)",
                 ep->url.service_name, ep->mhost, ep->mport, host, port, why);
        rl_ep_demote_all(ep, msg);
    }
    /* Off the old master first: the connections' host points into mhost. */
    ep->switching = 1;
    rl_conn_set_addr(&ep->cmd, ep->mhost, 0, had ? msg : "master changed");
    rl_conn_set_addr(&ep->sub, ep->mhost, 0, had ? msg : "master changed");
    ep->switching = 0;
    snprintf(ep->mhost, sizeof ep->mhost, "%s", host);
    ep->mport = port;
    rl_ep_set_mdisplay(ep);
    rl_conn_set_addr(&ep->cmd, ep->mhost, port, msg);
    rl_conn_set_addr(&ep->sub, ep->mhost, port, msg);
    publish_topo(ep);
    if (ep->nleases > 0) {
        rl_conn_connect(&ep->cmd);
        rl_conn_connect(&ep->sub);
    }
}

static void topo_error(void *owner, const char *msg, int fatal_kind)
{
    rl_endpoint *ep = owner;
    if (ep->freeing)
        return;
    if (fatal_kind) {
        pthread_mutex_lock(&ep->eng->mu);
        ep->fatal_kind = fatal_kind;
        snprintf(ep->fatal_msg, sizeof ep->fatal_msg, "%s", msg);
        pthread_mutex_unlock(&ep->eng->mu);
    }
    if (ep->cmd.state == RL_C_READY)
        return;                  /* the master we have still answers */
    for (rl_lease *l = ep->leases, *next; l; l = next) {
        next = l->ep_next;
        l->ep_cbs->down(l, msg, fatal_kind);
    }
}

static int topo_wanted(void *owner)
{
    rl_endpoint *ep = owner;
    return !ep->freeing && ep->nleases > 0;
}

static void topo_changed(void *owner)
{
    rl_endpoint *ep = owner;
    if (!ep->freeing)
        publish_topo(ep);
}

const rl_topo_cbs rl_ep_topo_cbs = {topo_master, topo_error, topo_wanted, topo_changed};
