/*
** The progress of a long map, counted in the parent as outcomes arrive
** (workers send nothing extra): a line on a terminal's standard error,
** plain lines for a log, and the script's own on_progress callback.
** par.map, par.imap and par.pipeline use it; any loop over results can.
*/
#ifndef PARLUA_PROGRESS_H
#define PARLUA_PROGRESS_H

#include <stdint.h>

#include <lua.h>

typedef struct ProgressMeter ProgressMeter;

/*
** Pushes a meter for the function 'fn' ("par.map") over 'total' items
** (-1: not known), 'done' of them done before it starts. Reads the options
** progress and on_progress from the table at stack index 'opts' (0 for
** none) and PARLUA_PROGRESS; a bad value raises "bad argument #arg to ...",
** or for arg 0 the bare "option 'progress' must be ...".
** The meter is a userdata whose collection or closing ends the line it
** drew; the caller may mark it to-be-closed.
*/
ProgressMeter *progress_new(lua_State *L, int opts, int arg, const char *fn,
                            lua_Integer total, lua_Integer done);

/* Counts 'count' more items done: may redraw, may call on_progress (errors propagate). */
void progress_add(lua_State *L, ProgressMeter *p, lua_Integer count);

/*
** For a loop that waits between outcomes, so that the line shows the
** time passing: when the meter is next due to be drawn on the
** par_now_ns clock (-1: never), and the drawing, if it is due.
*/
int64_t progress_due_ns(const ProgressMeter *p);
void progress_tick(ProgressMeter *p);

/* The end: a last on_progress call if the last did not see it all, and a summary line if one was drawn. */
void progress_end(lua_State *L, ProgressMeter *p);

/* The meter for Lua code: new(fn, total|nil, opts|nil) -> meter with add([n]) and close(). */
int progress_lua_new(lua_State *L);

#endif
