/* The opts table shared by par.map and friends: read, checked, defaulted. */
#ifndef PARLUA_OPTIONS_H
#define PARLUA_OPTIONS_H

#include <lua.h>

/* More workers than this are asked for as this many. */
#define OPTIONS_MAX_WORKERS 4096

typedef struct ParOptions {
  int workers;       /* 0: the default for this call */
  lua_Integer chunk; /* 0: automatic */
  int collect;       /* on_error = "collect" */
  int init;          /* stack index of the init function, 0 when none */
  lua_Integer capacity; /* 0: the default */
  int ordered;       /* -1: not given, else 0 or 1 */
  double timeout;    /* seconds per item, 0 for none */
  lua_Integer retries;
  int seeded;        /* a seed was given: each item's math.random starts from it */
  lua_Integer seed;
  lua_Integer max_bytes; /* 0: the default */
  int gather_root;   /* gather = "root": under MPI only rank 0 gets the results */
} ParOptions;

/*
** Reads the options table at stack index 'arg' (nil or none: defaults).
** 'allowed' lists the option names this function takes, NULL-terminated.
** Any other name, or a bad value, raises "bad argument #arg to ...".
*/
void options_read(lua_State *L, int arg, const char *const allowed[], ParOptions *o);

/*
** The worker count when none was asked for: the CPUs here (shared by the
** MPI ranks on this machine), or 1 in any process par forked.
*/
int options_default_workers(void);

#endif
