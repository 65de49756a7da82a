/* The par module: its table of functions, the small ones, and luaopen_par. */
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "buffer.h"
#include "chunks.h"
#include "cluster.h"
#include "codec.h"
#include "cpus.h"
#include "lpar.h"
#include "lutil.h"
#include "parlua.h"
#include "worker.h"
#include "proc.h"
#include "progress.h"

static int par_workers(lua_State *L) {
  lua_pushinteger(L, cpus_available());
  return 1;
}

static int par_pid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)proc_self());
  return 1;
}

/* The MPI rank of this process (0-based), the number of ranks, and whether it is rank 0. */
static int par_rank(lua_State *L) {
  lua_pushinteger(L, cluster_rank());
  return 1;
}

static int par_size(lua_State *L) {
  lua_pushinteger(L, cluster_size());
  return 1;
}

static int par_is_root(lua_State *L) {
  lua_pushboolean(L, cluster_rank() == 0);
  return 1;
}

static int par_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)par_now_ns() / 1e9);
  return 1;
}

/* slice(list, first, count): see codec_push_slice. */
static int par_slice(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  codec_push_slice(L, 1, luaL_checkinteger(L, 2), luaL_checkinteger(L, 3));
  return 1;
}

/*
** take_range(text, results, first): the outcome of a range of a par.pool
** map, as par_queue_push_raw gives it: its results "r" go straight into
** results from 'first' on; returns the rest of it (errors, time taken).
*/
static int par_take_range(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  luaL_checktype(L, 2, LUA_TTABLE);
  codec_decode_member_into(L, "r", 2, luaL_checkinteger(L, 3), text, len);
  return 1;
}

/* A table with room for n list items: Lua 5.4 has no table.create, and
** par.pool's results, filled range by range in any order, would otherwise
** grow by rehashes and spill into the hash part. */
static int par_list_of_size(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  lua_createtable(L, n > 0 && n < INT_MAX ? (int)n : 0, 0);
  return 1;
}

/* A wait like par.map's: a SIGINT or SIGTERM meanwhile raises "interrupted". */
static int par_sleep(lua_State *L) {
  lua_Number seconds = luaL_checknumber(L, 1);
  int sig;
  luaL_argcheck(L, seconds >= 0 && seconds < 1e9, 1, "must be a number of seconds >= 0");
  sig = proc_sleep_until(par_now_ns() + (int64_t)(seconds * 1e9));
  if (sig != 0) {
    par_push_interrupted(L, "par.sleep", sig, "sleeping");
    return lua_error(L);
  }
  return 0;
}

static int par_encode(lua_State *L) {
  Buffer *b;
  char err[256];
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  b = par_push_buffer(L);
  if (codec_encode(L, 1, b, "value", err, sizeof err) != 0)
    return luaL_argerror(L, 1, err);
  lua_pushlstring(L, b->data, b->len);
  return 1;
}

static int par_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  codec_decode(L, s, len);
  return 1;
}

static const luaL_Reg par_functions[] = {
  {"map", par_map},
  {"queue", par_queue},
  {"spawn", par_spawn},
  {"channel", par_channel},
  {"lock", par_lock},
  {"semaphore", par_semaphore},
  {"event", par_event},
  {"barrier", par_barrier},
  {"value", par_value},
  {"array", par_array},
  {"pipe", par_pipe},
  {"dict", par_dict},
  {"list", par_list},
  {"workers", par_workers},
  {"pid", par_pid},
  {"rank", par_rank},
  {"size", par_size},
  {"is_root", par_is_root},
  {"now", par_now},
  {"sleep", par_sleep},
  {"encode", par_encode},
  {"retire", worker_retire}, /* lualib/par.lua hands these to the pool alone */
  {"list_of_size", par_list_of_size},
  {"slice", par_slice},
  {"push_raw", par_queue_push_raw},
  {"take_range", par_take_range},
  {"decode", par_decode},
  {NULL, NULL}
};

/* Loads a built-in Lua part (lualib/NAME.lua) as a function. */
static int load_part(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const LualibChunk *c;
  for (c = lualib_chunks; c->name != NULL; c++)
    if (strcmp(c->name, name) == 0) break;
  if (c->name == NULL) return luaL_error(L, "par: no built-in part '%s'", name);
  if (luaL_loadbufferx(L, c->source, c->size, c->chunkname, "t") != LUA_OK) lua_error(L);
  return 1;
}

/* Runs lualib/par.lua with the C functions and version, the error metatable, load_part and the progress meter. */
int luaopen_par(lua_State *L) {
  lua_pushcfunction(L, load_part);
  lua_pushliteral(L, "par");
  lua_call(L, 1, 1);
  luaL_newlib(L, par_functions);
  lua_pushliteral(L, PARLUA_VERSION);
  lua_setfield(L, -2, "version");
  luaL_newmetatable(L, PAR_ERROR_METATABLE);
  lua_pushcfunction(L, load_part);
  lua_pushcfunction(L, progress_lua_new);
  lua_call(L, 4, 1);
  return 1;
}

void parlua_openlib(lua_State *L) {
  luaL_requiref(L, "par", luaopen_par, 1);
  lua_pop(L, 1);
}
