#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "buffer.h"
#include "codec.h"
#include "cpus.h"
#include "lpar.h"
#include "chunks.h"
#include "parlua.h"
#include "pool.h"
#include "proc.h"

void par_make_error(lua_State *L, const char *fn, lua_Integer index, const char *kind) {
  lua_pushstring(L, fn);
  lua_setfield(L, -2, "fn");
  if (index != 0) {
    lua_pushinteger(L, index);
    lua_setfield(L, -2, "index");
  }
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  luaL_setmetatable(L, PAR_ERROR_METATABLE);
}

void par_push_error(lua_State *L, const char *fn, lua_Integer index, const char *kind,
                    const char *fmt, ...) {
  va_list args;
  lua_createtable(L, 0, 4);
  va_start(args, fmt);
  lua_pushvfstring(L, fmt, args);
  va_end(args);
  lua_setfield(L, -2, "message");
  par_make_error(L, fn, index, kind);
}

void par_push_interrupted(lua_State *L, const char *fn, int sig, const char *doing) {
  par_push_error(L, fn, 0, "interrupted", "got SIG%s while %s", sigabbrev_np(sig), doing);
}

static int par_workers(lua_State *L) {
  lua_pushinteger(L, cpus_available());
  return 1;
}

static int par_pid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

static int par_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)par_now_ns() / 1e9);
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

static int threads_allowed;

void parlua_allow_threads(int allow) {
  threads_allowed = allow;
}

void par_check_fork_safe(lua_State *L, const char *fn) {
  int threads;
  if (threads_allowed) return;
  threads = proc_thread_count();
  if (threads > 1)
    luaL_error(L, "%s: this process has %d threads, and forking it could leave a worker "
                  "stuck on a lock another thread held; call parlua_allow_threads(1) "
                  "from C if every thread is safe to fork", fn, threads);
}

/* Longer waits than this (about 31 years) mean no deadline at all. */
#define FOREVER_SECONDS 1e9

int64_t par_deadline(lua_State *L, int arg) {
  lua_Number seconds;
  if (lua_isnoneornil(L, arg)) return -1;
  seconds = luaL_checknumber(L, arg);
  luaL_argcheck(L, seconds >= 0, arg, "timeout must be a number of seconds >= 0");
  if (seconds >= FOREVER_SECONDS) return -1;
  return par_now_ns() + (int64_t)(seconds * 1e9);
}

void par_check_callable(lua_State *L, int arg) {
  if (lua_type(L, arg) == LUA_TFUNCTION) return;
  if (luaL_getmetafield(L, arg, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  luaL_typeerror(L, arg, "function");
}

void par_set_class(lua_State *L, const char *name, const luaL_Reg *methods,
                   lua_CFunction release, int closable) {
  if (luaL_newmetatable(L, name)) {
    if (methods != NULL) {
      lua_newtable(L);
      luaL_setfuncs(L, methods, 0);
      lua_setfield(L, -2, "__index");
    }
    lua_pushcfunction(L, release);
    lua_setfield(L, -2, "__gc");
    if (closable) {
      lua_pushcfunction(L, release);
      lua_setfield(L, -2, "__close");
    }
  }
  lua_setmetatable(L, -2);
}

static int buffer_gc(lua_State *L) {
  buffer_free(lua_touserdata(L, 1));
  return 0;
}

Buffer *par_push_buffer(lua_State *L) {
  Buffer *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  par_set_class(L, "par.Buffer", NULL, buffer_gc, 1);
  lua_toclose(L, -1);
  return b;
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
  {"workers", par_workers},
  {"pid", par_pid},
  {"now", par_now},
  {"sleep", par_sleep},
  {"encode", par_encode},
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

/* Runs lualib/par.lua with the C functions, the error metatable and load_part. */
int luaopen_par(lua_State *L) {
  lua_pushcfunction(L, load_part);
  lua_pushliteral(L, "par");
  lua_call(L, 1, 1);
  luaL_newlib(L, par_functions);
  luaL_newmetatable(L, PAR_ERROR_METATABLE);
  lua_pushcfunction(L, load_part);
  lua_call(L, 3, 1);
  return 1;
}

void parlua_openlib(lua_State *L) {
  luaL_requiref(L, "par", luaopen_par, 1);
  lua_pop(L, 1);
}
