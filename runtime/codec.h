/*
** The wire codec: Lua values <-> JSON text, exact for every value that
** can cross a process boundary. See docs/wire.md for the format;
** encode.c and decode.c are the two directions, jsontext.c what they share.
*/
#ifndef PARLUA_CODEC_H
#define PARLUA_CODEC_H

#include <lua.h>

#include "buffer.h"

/* Tables nested deeper than this are refused by both directions. */
#define CODEC_MAX_DEPTH 1000

/*
** Appends the JSON text of the value at stack index 'idx' to 'b'.
** Returns 0, or -1 with a message in 'err' such as
** "cannot send a function (at result.handlers[2])"; 'root' names the
** value in such paths ("result", "item", "value"). Leaves the stack as
** it found it and raises no Lua error of its own.
*/
int codec_encode(lua_State *L, int idx, Buffer *b, const char *root,
                 char *err, size_t errsize);

/*
** Pushes a slice of the list at stack index 'list': its items first ..
** first + count - 1, which the encoder writes as the array of them, as a
** table holding them would be written but without making one (par.pool
** sends each range of a map so). A userdata that holds the list.
*/
void codec_push_slice(lua_State *L, int list, lua_Integer first, lua_Integer count);

/*
** Decodes the single JSON value in s[0..len) and pushes it. Raises a Lua
** error "bad message at byte N: ..." when the text is malformed.
*/
void codec_decode(lua_State *L, const char *s, size_t len);

/*
** Decodes the JSON array in s[0..len) straight into the table at stack
** index 't': element k goes to t[first + k - 1] (null leaves a hole).
** Returns the number of elements. Raises like codec_decode.
*/
lua_Integer codec_decode_into(lua_State *L, int t, lua_Integer first,
                              const char *s, size_t len);

/*
** Decodes the JSON text of a list of one object, [{...}], and pushes the
** object, but for its member 'name', a list: its item k goes to
** t[first + k - 1], as codec_decode_into's would (a list with more holes
** than items comes as an object; a member that is no table is dropped).
** par.pool takes in a range's results so, into the map's results list.
*/
void codec_decode_member_into(lua_State *L, const char *name, int t, lua_Integer first,
                              const char *s, size_t len);

#endif
