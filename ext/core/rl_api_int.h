/* Shared by rl_api.c and rl_wait.c. */
#ifndef RL_API_INT_H
#define RL_API_INT_H

#include "rl_error.h"
#include "rl_types.h"

/* The process's engine for this lease (started if needed); NULL + err. */
rl_engine *rl_api_engine_for(rl_lease *l, rl_error *err);
/* -1 + err if the lease was created before a fork (it belongs to the parent). */
int rl_api_check_fresh(const rl_lease *l, rl_error *err);

#endif
