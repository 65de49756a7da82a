#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>

#include "lutil.h"
#include "parlua.h"
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

void par_push_syscall_error(lua_State *L, const char *fn, const char *kind, const char *syscall) {
  const char *reason = strerror(errno);
  par_push_error(L, fn, 0, kind, "cannot %s: %s", syscall, reason);
  lua_pushstring(L, syscall);
  lua_setfield(L, -2, "syscall");
}

void par_push_interrupted(lua_State *L, const char *fn, int sig, const char *doing) {
  par_push_error(L, fn, 0, "interrupted", "got SIG%s while %s", sigabbrev_np(sig), doing);
}

int par_wait_readable(lua_State *L, int fd, int64_t deadline, const char *fn, const char *doing) {
  struct pollfd p = {fd, POLLIN, 0};
  int sig, ready = proc_poll(&p, 1, deadline, &sig);
  if (sig != 0) {
    par_push_interrupted(L, fn, sig, doing);
    lua_error(L);
  }
  return ready != 0; /* a poll error shows up in the read that follows */
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

void par_set_bound_class(lua_State *L, const char *class, const luaL_Reg *methods,
                         const luaL_Reg *metamethods, lua_CFunction release) {
  if (luaL_newmetatable(L, class)) {
    lua_newtable(L);
    lua_pushvalue(L, -2);
    luaL_setfuncs(L, methods, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "methods");
    lua_setfield(L, -2, "__index");
    if (metamethods != NULL) {
      lua_pushvalue(L, -1);
      luaL_setfuncs(L, metamethods, 1);
    }
    lua_pushcfunction(L, release);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, release);
    lua_setfield(L, -2, "__close");
  }
  lua_setmetatable(L, -2);
}

void *par_check_bound(lua_State *L, const char *class) {
  void *p = lua_touserdata(L, 1);
  if (p == NULL || !lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(1)))
    luaL_typeerror(L, 1, class);
  lua_pop(L, 1);
  return p;
}

/* Pushes t[name] for the table t on top, without metamethods; returns its type. */
static int push_raw_field(lua_State *L, const char *name) {
  lua_pushstring(L, name);
  return lua_rawget(L, -2);
}

int par_push_randomseed(lua_State *L) {
  int top = lua_gettop(L);
  if (lua_checkstack(L, 3)
      && lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE) == LUA_TTABLE
      && push_raw_field(L, "math") == LUA_TTABLE
      && push_raw_field(L, "randomseed") == LUA_TFUNCTION) {
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
    return 1;
  }
  lua_settop(L, top);
  return 0;
}

/*
** Fresh seeds for a new process's math.random: the kernel's entropy, mixed
** with the clock, this pid and a count of its forks, which still tell
** processes apart should the kernel have none to give.
*/
static void fresh_seeds(lua_Integer seed[2]) {
  static uint64_t forks;
  uint64_t bytes[2] = {0, 0};
  if (getrandom(bytes, sizeof bytes, GRND_NONBLOCK) != (ssize_t)sizeof bytes) bytes[0] = bytes[1] = 0;
  seed[0] = (lua_Integer)(bytes[0] ^ (uint64_t)par_now_ns());
  seed[1] = (lua_Integer)(bytes[1] ^ ((uint64_t)proc_self() << 32 | ++forks));
}

/* Calls the randomseed on top of the stack, popping it, with fresh seeds; an error it raises is dropped. */
static void call_randomseed(lua_State *L) {
  lua_Integer seed[2];
  fresh_seeds(seed);
  lua_pushinteger(L, seed[0]);
  lua_pushinteger(L, seed[1]);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) lua_pop(L, 1);
}

#define RANDOM_STATE_MAX 64

/*
** The bytes math.random draws from, when the randomseed at index 'fn' is
** Lua's own: a C function whose first upvalue is a small userdata. NULL
** for any other.
*/
static void *random_state(lua_State *L, int fn, size_t *size) {
  void *state = NULL;
  if (lua_iscfunction(L, fn) && lua_getupvalue(L, fn, 1) != NULL) {
    if (lua_type(L, -1) == LUA_TUSERDATA && lua_rawlen(L, -1) <= RANDOM_STATE_MAX) {
      state = lua_touserdata(L, -1);
      *size = lua_rawlen(L, -1);
    }
    lua_pop(L, 1);
  }
  return state;
}

/*
** Each page a child touches costs it a fault, code pages too (a fork
** maps none of them), and calling randomseed in the child touched about
** ten: as many as the rest of a small map's worker. So the parent seeds
** the generator for the child just before the fork and puts its own
** state back just after. A randomseed that is not Lua's own runs in the
** child.
*/
pid_t par_fork(lua_State *L) {
  unsigned char saved[RANDOM_STATE_MAX];
  size_t size = 0;
  void *state;
  pid_t pid;
  if (!par_push_randomseed(L)) return proc_fork();
  state = random_state(L, lua_gettop(L), &size);
  if (state == NULL) {
    pid = proc_fork();
    if (pid == 0) call_randomseed(L);
    else lua_pop(L, 1);
    return pid;
  }
  memcpy(saved, state, size);
  call_randomseed(L);
  pid = proc_fork();
  if (pid != 0) memcpy(state, saved, size);
  return pid;
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

