/*
** The parent's side of an item's outcome, shared by par.map and
** par.queue: attempts and retries, the error a worker sent, and the error
** of a worker that died or was killed, with the item it is blamed for.
*/
#ifndef PARLUA_DISPATCH_H
#define PARLUA_DISPATCH_H

#include <lua.h>

#include "pool.h"

/* How many times 'key' has been started, as counted in the table at 'attempts'. */
lua_Integer dispatch_attempts(lua_State *L, int attempts, lua_Integer key);

/* Whether failed 'key' runs again within 'retries'; if so the attempt is counted. */
int dispatch_may_retry(lua_State *L, int attempts, lua_Integer key, lua_Integer retries);

/* Notes on the error on top how many times 'key' ran, when more than once. */
void dispatch_note_attempts(lua_State *L, int attempts, lua_Integer key);

/*
** Decodes an error frame's payload and pushes the error table it holds;
** returns the index the worker gave it. Raises for a short frame.
*/
lua_Integer dispatch_decode_error(lua_State *L, const char *fn, const char *payload, size_t len);

/*
** When the dead worker k had not finished init (and there is one),
** pushes fn's "init" error and returns 1.
*/
int dispatch_init_died(lua_State *L, Pool *p, int k, int has_init);

/*
** What dead worker k is blamed for: the item it was killed for or said it
** ran, if 'holds' says it had it; else, unless it was killed or retired,
** 'oldest'. 0 for none.
*/
lua_Integer dispatch_blame(Pool *p, int k, int (*holds)(void *ctx, lua_Integer item),
                           void *ctx, lua_Integer oldest);

/*
** Pushes fn's error for item 'index', which dead worker k ran as 'item':
** kind "timeout" when it was killed for overstaying, else "crash".
*/
void dispatch_push_death(lua_State *L, Pool *p, int k, lua_Integer item, lua_Integer index);

#endif
