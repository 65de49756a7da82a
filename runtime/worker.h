/*
** The worker's side: run init once, then take jobs from the command
** socket, run fn on each item and send the results back.
*/
#ifndef PARLUA_WORKER_H
#define PARLUA_WORKER_H

#include <lua.h>

#include "pool.h"

typedef struct WorkerTask {
  int fn;   /* absolute stack indices in the forked state */
  int list; /* 0 when items arrive encoded (a queue) */
  int init; /* 0 when there is no init */
  int stamp; /* write each item's start time to its Progress (for time-outs) */
  lua_Integer first_lo, first_hi; /* a first range given through the fork, or 0 */
  int first_is_last;              /* ... and nothing after it: exit once it is sent */
  int seeded;       /* before each item: math.randomseed(seed, the item's index or id) */
  lua_Integer seed;
} WorkerTask;

/*
** Message handler for code run in a child: turns any error value into a
** table with the message as a string, the traceback and, when the value
** was not a string, the value itself.
*/
int worker_capture_error(lua_State *L);

/*
** Sends the error table on top of the stack as a frame of 'type' for item
** 'index', dropping its 'value' if that cannot travel. Ends the process if
** the parent is gone.
*/
void worker_send_error(lua_State *L, int res, char type, lua_Integer index);

/* Sends 'why' (a value that could not be encoded) as item index's error. */
void worker_send_encode_error(lua_State *L, int res, lua_Integer index, const char *why);

/*
** Lua function, for a queue worker (par.pool's max_tasks): once the item
** it runs is done, the worker sends its outcomes and exits; the items it
** holds go to others and the queue forks a replacement.
*/
int worker_retire(lua_State *L);

/* A WorkerMain for pool_start; the task is a WorkerTask. */
void worker_main(lua_State *L, int cmd, int res, Progress *progress, void *task);

#endif
