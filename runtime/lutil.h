/*
** Helpers every Lua-facing part of par shares: the error values it
** raises, classes of userdata, time-outs and argument checks.
*/
#ifndef PARLUA_LUTIL_H
#define PARLUA_LUTIL_H

#include <stdint.h>
#include <sys/types.h>

#include <lua.h>
#include <lauxlib.h>

#include "buffer.h"

#define PAR_ERROR_METATABLE "par.Error"

/*
** Makes the table on top of the stack (with 'message' and maybe
** 'traceback' and 'value') a par error: sets fn, index (unless 0) and kind,
** and the metatable whose __tostring names all three.
*/
void par_make_error(lua_State *L, const char *fn, lua_Integer index, const char *kind);

/* Pushes a new par error whose message is formatted as by lua_pushfstring. */
void par_push_error(lua_State *L, const char *fn, lua_Integer index, const char *kind,
                    const char *fmt, ...);

/*
** Pushes fn's error of 'kind' for the system call that just failed:
** message "cannot <syscall>: <strerror(errno)>", and the field syscall.
*/
void par_push_syscall_error(lua_State *L, const char *fn, const char *kind, const char *syscall);

/* Pushes fn's error of kind "interrupted": "got SIGINT while <doing>". */
void par_push_interrupted(lua_State *L, const char *fn, int sig, const char *doing);

/*
** Waits until fd is readable, or has an error or end of file for a read
** to find (1), or the deadline (-1: none) passes (0). A SIGINT or SIGTERM
** meanwhile raises fn's "interrupted" error.
*/
int par_wait_readable(lua_State *L, int fd, int64_t deadline, const char *fn, const char *doing);

/*
** Raises a clear error if this process has other threads (forking it could
** leave a worker stuck on a lock another thread held), unless the embedder
** allowed it with parlua_allow_threads.
*/
void par_check_fork_safe(lua_State *L, const char *fn);

/*
** Reads an optional time-out in seconds at arg and returns its deadline on
** the par_now_ns clock, or -1 for none (nil, or math.huge and the like).
*/
int64_t par_deadline(lua_State *L, int arg);

/* Raises a bad argument error unless the value at arg can be called. */
void par_check_callable(lua_State *L, int arg);

/*
** Gives the userdata on top of the stack the metatable 'name', made on
** first use: methods (or NULL) as __index, 'release' as __gc and, when
** 'closable', as __close too.
*/
void par_set_class(lua_State *L, const char *name, const luaL_Reg *methods,
                   lua_CFunction release, int closable);

/*
** Gives the userdata on top of the stack the metatable 'class', made on
** first use: the methods as __index, then the metamethods (or NULL), and
** 'release' as __gc and __close. Every method and metamethod has the
** metatable as upvalue 1, and the metatable has the methods as field
** "methods", for an __index among the metamethods.
*/
void par_set_bound_class(lua_State *L, const char *class, const luaL_Reg *methods,
                         const luaL_Reg *metamethods, lua_CFunction release);

/*
** The userdata at 1 if it has the metatable that is upvalue 1 of the
** running function (a method or metamethod of par_set_bound_class), else
** a bad argument error. luaL_checkudata looks the class up by name, which
** took half the time of a lock's acquire.
*/
void *par_check_bound(lua_State *L, const char *class);

/*
** Pushes math.randomseed as the math library was loaded (package.loaded's,
** whatever the global 'math' is now) and returns 1; pushes nothing and
** returns 0 when the script has no math library or no randomseed in it.
*/
int par_push_randomseed(lua_State *L);

/*
** proc_fork, and in the child math.random reseeded from fresh entropy: a
** child would otherwise draw the very numbers its parent and its siblings
** draw. Every process par forks to run Lua is forked here.
*/
pid_t par_fork(lua_State *L);

/* Pushes an empty Buffer marked to-be-closed: freed however the call ends. */
Buffer *par_push_buffer(lua_State *L);

#endif
