/*
** A resumable par.map: the results of finished items are appended to a
** file as they arrive, in the wire text the workers sent, one write each;
** a rerun over the same list reads them back and runs only the rest.
** The file starts with a line naming the list it was made for (its length
** and a hash of its items' wire text); a record torn by a kill is ignored.
*/
#ifndef PARLUA_CHECKPOINT_H
#define PARLUA_CHECKPOINT_H

#include <stddef.h>

#include <lua.h>

typedef struct Checkpoint Checkpoint;

/*
** For fn ("par.map") over the n items of the list at stack index 'list'
** with options at 'opts' (argument number 'arg'): pushes nil and returns
** NULL when opts.checkpoint is not given. Else opens that file (made when
** missing), refuses one made for another list, puts the results it holds
** into the table at stack index 'results' (made there when nil), and pushes
** the checkpoint, a userdata that closes the file when closed or collected.
*/
Checkpoint *checkpoint_open(lua_State *L, const char *fn, int opts, int arg,
                            int list, lua_Integer n, int results);

/* How many items have their results in the file (0 without a checkpoint). */
lua_Integer checkpoint_done(const Checkpoint *c);

/* The first item from i on whose result is not in the file (n + 1: none); i without a checkpoint. */
lua_Integer checkpoint_next_missing(const Checkpoint *c, lua_Integer i);

/* The last of items lo .. hi before the first one in the file; hi without a checkpoint. */
lua_Integer checkpoint_missing_until(const Checkpoint *c, lua_Integer lo, lua_Integer hi);

/*
** Appends the results of items lo .. lo + count - 1, the JSON array in
** text[0 .. len), in one write; nothing without a checkpoint. Raises when
** the write fails.
*/
void checkpoint_add(lua_State *L, Checkpoint *c, lua_Integer lo, lua_Integer count,
                    const char *text, size_t len);

#endif
