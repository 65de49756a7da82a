/*
** parlua: parallel map for Lua 5.4 over forked workers.
** Public interface for applications that embed Lua.
*/
#ifndef PARLUA_H
#define PARLUA_H

#include <lua.h>

#define PARLUA_VERSION "parlua 0.2.0"

/* Opens the module and returns it on the stack, like any luaopen_ function. */
int luaopen_par(lua_State *L);

/* Opens par as require "par" would (package.loaded.par) and sets the global 'par'. */
void parlua_openlib(lua_State *L);

/*
** par refuses to fork a process that has more than one thread: a lock held
** by another thread at the fork stays locked forever in the worker. An
** embedder that knows its threads hold no such lock may allow it (1).
*/
void parlua_allow_threads(int allow);

/*
** A lua_Alloc that puts blocks of 4 MiB and more (big tables, strings) on
** transparent huge pages, so a big result costs far fewer page faults.
** build/parlua uses it; an embedder may too:
** lua_setallocf(L, parlua_alloc, NULL) right after luaL_newstate(), before
** the state holds any block of 4 MiB or more.
*/
void *parlua_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

#endif
