/* The module's Lua-facing entry points, each in the file that owns it. */
#ifndef PARLUA_LPAR_H
#define PARLUA_LPAR_H

#include <lua.h>

int par_map(lua_State *L);     /* map.c */
int par_queue(lua_State *L);   /* queue.c */
/*
** push_raw(q, item): q:push, but the pop gives the item's outcome as the
** JSON text of a list of it, for take_range (par.pool's alone).
*/
int par_queue_push_raw(lua_State *L);
int par_spawn(lua_State *L);   /* spawn.c */
int par_channel(lua_State *L); /* channel.c */
int par_lock(lua_State *L);      /* lsync.c */
int par_semaphore(lua_State *L); /* lsync.c */
int par_event(lua_State *L);     /* lsync.c */
int par_barrier(lua_State *L);   /* lsync.c */
int par_value(lua_State *L);     /* lsync.c */
int par_array(lua_State *L);     /* lsync.c */
int par_pipe(lua_State *L);    /* pipe.c */
int par_dict(lua_State *L);    /* ldict.c */
int par_list(lua_State *L);    /* ldict.c */

#endif
