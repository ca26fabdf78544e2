/* Classification of Redis error replies (see rl_reply.h). */
#include "rl_reply.h"

#include <string.h>

#include "rl_error.h"

static int prefix(const char *s, size_t len, const char *p)
{
    size_t n = strlen(p);
    return len >= n && memcmp(s, p, n) == 0;
}

int rl_reply_is_noscript(const char *s, size_t len)
{
    return prefix(s, len, "NOSCRIPT");
}

int rl_reply_errkind(const char *s, size_t len)
{
    static const char *const transient[] = {
        "LOADING", "READONLY", "OOM", "BUSY", "MASTERDOWN", "TRYAGAIN",
        "CLUSTERDOWN", "NOREPLICAS", NULL,
    };
    for (int i = 0; transient[i]; i++)
        if (prefix(s, len, transient[i]))
            return 0;
    if (prefix(s, len, "NOAUTH") || prefix(s, len, "WRONGPASS"))
        return RL_EAUTH;
    if (prefix(s, len, "NOPERM"))
        return RL_EPERM;
    return RL_EREDIS;
}
