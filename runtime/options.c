#include <string.h>

#include <lauxlib.h>

#include "cluster.h"
#include "cpus.h"
#include "options.h"
#include "proc.h"

static int is_allowed(const char *name, const char *const allowed[]) {
  int i;
  for (i = 0; allowed[i] != NULL; i++)
    if (strcmp(name, allowed[i]) == 0) return 1;
  return 0;
}

/* Fails unless the value on top is an integer >= min; returns it. */
static lua_Integer check_count(lua_State *L, int arg, const char *name, lua_Integer min) {
  int isint = 0;
  lua_Integer v = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &isint) : 0;
  if (!isint || v < min)
    luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' must be an integer >= %d (got %s)",
                                          name, (int)min, luaL_tolstring(L, -1, NULL)));
  return v;
}

static void read_option(lua_State *L, int arg, const char *name, ParOptions *o) {
  if (strcmp(name, "workers") == 0) {
    lua_Integer n = check_count(L, arg, name, 1);
    o->workers = n > OPTIONS_MAX_WORKERS ? OPTIONS_MAX_WORKERS : (int)n;
  } else if (strcmp(name, "chunk") == 0) {
    o->chunk = check_count(L, arg, name, 1);
  } else if (strcmp(name, "on_error") == 0) {
    const char *mode = lua_tostring(L, -1);
    if (lua_type(L, -1) != LUA_TSTRING || (strcmp(mode, "raise") != 0 && strcmp(mode, "collect") != 0))
      luaL_argerror(L, arg, lua_pushfstring(L, "option 'on_error' must be \"raise\" or \"collect\" (got %s)",
                                            luaL_tolstring(L, -1, NULL)));
    o->collect = strcmp(mode, "collect") == 0;
  } else if (strcmp(name, "retries") == 0) {
    o->retries = check_count(L, arg, name, 0);
  } else if (strcmp(name, "timeout") == 0) {
    if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) > 0) || lua_tonumber(L, -1) > 1e9)
      luaL_argerror(L, arg, lua_pushfstring(L, "option 'timeout' must be a number of seconds > 0 (got %s)",
                                            luaL_tolstring(L, -1, NULL)));
    o->timeout = lua_tonumber(L, -1);
  } else if (strcmp(name, "capacity") == 0) {
    o->capacity = check_count(L, arg, name, 1);
  } else if (strcmp(name, "max_bytes") == 0) {
    o->max_bytes = check_count(L, arg, name, 1);
  } else if (strcmp(name, "ordered") == 0) {
    if (lua_type(L, -1) != LUA_TBOOLEAN)
      luaL_argerror(L, arg, lua_pushfstring(L, "option 'ordered' must be a boolean (got %s)",
                                            luaL_typename(L, -1)));
    o->ordered = lua_toboolean(L, -1);
  } else if (strcmp(name, "seed") == 0) {
    int isint = 0;
    o->seed = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &isint) : 0;
    if (!isint)
      luaL_argerror(L, arg, lua_pushfstring(L, "option 'seed' must be an integer (got %s)",
                                            luaL_tolstring(L, -1, NULL)));
    o->seeded = 1;
  } else if (strcmp(name, "gather") == 0) {
    const char *mode = lua_tostring(L, -1);
    if (lua_type(L, -1) != LUA_TSTRING || (strcmp(mode, "all") != 0 && strcmp(mode, "root") != 0))
      luaL_argerror(L, arg, lua_pushfstring(L, "option 'gather' must be \"all\" or \"root\" (got %s)",
                                            luaL_tolstring(L, -1, NULL)));
    o->gather_root = strcmp(mode, "root") == 0;
  } else if (strcmp(name, "init") == 0) {
    if (lua_type(L, -1) != LUA_TFUNCTION)
      luaL_argerror(L, arg, lua_pushfstring(L, "option 'init' must be a function (got %s)",
                                            luaL_typename(L, -1)));
    o->init = lua_absindex(L, -1);
  }
}

void options_read(lua_State *L, int arg, const char *const allowed[], ParOptions *o) {
  memset(o, 0, sizeof *o);
  o->ordered = -1;
  if (lua_isnoneornil(L, arg)) return;
  luaL_checktype(L, arg, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, arg) != 0) {
    const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    if (name == NULL || !is_allowed(name, allowed))
      luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s'", luaL_tolstring(L, -2, NULL)));
    read_option(L, arg, name, o);
    lua_pop(L, 1);
  }
  if (o->init != 0) { /* the value was popped above: fetch it to a stable slot */
    lua_getfield(L, arg, "init");
    o->init = lua_gettop(L);
  }
}

/* Ranks of an MPI job on one machine share its CPUs. */
int options_default_workers(void) {
  int share;
  if (proc_is_forked()) return 1;
  share = cpus_available() / cluster_local_size();
  return share > 1 ? share : 1;
}
