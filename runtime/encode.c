/*
** The encoder: a Lua value to JSON text (docs/wire.md).
**
** It never raises a Lua error: a value that cannot travel is reported as
** a message naming it by its path ("result.handlers[2]"), and the buffer
** is left as it was.
*/
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "codec.h"
#include "jsontext.h"

/*
** Where the encoder is: for each table being encoded, the table (to spot
** cycles) and the key being encoded in it. Object keys stay on the Lua
** stack while their value is encoded, so a step only records the key's
** stack slot; the path is spelled out only when an error happens.
*/
typedef struct PathStep {
  const void *table;
  int key_slot;       /* stack index of the key, or 0 in an array */
  lua_Integer index;  /* the array index when key_slot is 0 */
} PathStep;

typedef struct Encoder {
  lua_State *L;
  Buffer *b;
  const char *root;
  char *err;
  size_t errsize;
  int depth;  /* tables being encoded, and valid entries of 'path' */
  PathStep path[CODEC_MAX_DEPTH];
} Encoder;

#define PATH_TEXT_MAX 60  /* longer paths end with "..." */

#define SLICE_METATABLE "par.Slice"

typedef struct Slice {
  lua_Integer first, count;
} Slice;

static int is_identifier(const char *s, size_t len) {
  size_t i;
  if (len == 0 || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (i = 0; i < len; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_'))
      return 0;
  }
  return 1;
}

/* Writes ["key"] with the key escaped like %q; returns 0 if it does not fit. */
static int quote_key(const char *s, size_t len, char *out, size_t size) {
  size_t n = 0, i;
  char esc[8];
  out[n++] = '[';
  out[n++] = '"';
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    int k;
    if (c == '"' || c == '\\') k = snprintf(esc, sizeof esc, "\\%c", c);
    else if (c == '\n') k = snprintf(esc, sizeof esc, "\\n");
    else if (c == '\r') k = snprintf(esc, sizeof esc, "\\r");
    else if (c == '\t') k = snprintf(esc, sizeof esc, "\\t");
    else if (c < 0x20 || c == 0x7f) k = snprintf(esc, sizeof esc, "\\%03d", c);
    else k = snprintf(esc, sizeof esc, "%c", c);
    if (n + k + 3 > size) return 0;
    memcpy(out + n, esc, k);
    n += k;
  }
  memcpy(out + n, "\"]", 3);
  return 1;
}

/* Writes one step of a path, such as ".name" or "[2]"; 0 if it does not fit. */
static int format_step(lua_State *L, const PathStep *step, char *out,
                       size_t size) {
  char num[JSONTEXT_NUMBER_MAX];
  size_t len;
  const char *s;
  int n;
  if (step->key_slot == 0)
    return snprintf(out, size, "[" LUA_INTEGER_FMT "]", step->index) < (int)size;
  switch (lua_type(L, step->key_slot)) {
    case LUA_TSTRING:
      s = lua_tolstring(L, step->key_slot, &len);
      if (is_identifier(s, len))
        return snprintf(out, size, ".%s", s) < (int)size;
      return quote_key(s, len, out, size);
    case LUA_TNUMBER:
      if (lua_isinteger(L, step->key_slot))
        n = jsontext_integer(num, lua_tointeger(L, step->key_slot));
      else
        n = jsontext_float(num, lua_tonumber(L, step->key_slot));
      if (n < 0) return 0;
      return snprintf(out, size, "[%.*s]", n, num) < (int)size;
    default:  /* a boolean: keys of other types fail before a step is taken */
      return snprintf(out, size, "[%s]",
                      lua_toboolean(L, step->key_slot) ? "true" : "false") < (int)size;
  }
}

/*
** Records "<what> (at <path>)" in e->err, the path made of the root name
** and the keys of the first 'steps' steps. Returns -1, for the callers.
*/
static int fail(Encoder *e, int steps, const char *what) {
  char path[PATH_TEXT_MAX + 4];
  char step[PATH_TEXT_MAX + 1];
  size_t len;
  int i;
  len = (size_t)snprintf(path, sizeof path, "%s", e->root);
  for (i = 0; i < steps && len < sizeof path; i++) {
    size_t n;
    if (!format_step(e->L, &e->path[i], step, sizeof step) ||
        len + (n = strlen(step)) > PATH_TEXT_MAX) {
      snprintf(path + len, sizeof path - len, "...");
      break;
    }
    memcpy(path + len, step, n + 1);
    len += n;
  }
  if (e->err != NULL && e->errsize > 0)
    snprintf(e->err, e->errsize, "%s (at %s)", what, path);
  return -1;
}

/* Makes room for n more bytes in the output. */
static int reserve(Encoder *e, size_t n) {
  Buffer *b = e->b;
  if (b->cap - b->len >= n || buffer_reserve(b, n) == 0) return 0;
  return fail(e, e->depth, "out of memory");
}

static int put(Encoder *e, const char *s, size_t n) {
  if (reserve(e, n) != 0) return -1;
  memcpy(e->b->data + e->b->len, s, n);
  e->b->len += n;
  return 0;
}

static int put_char(Encoder *e, char c) {
  if (reserve(e, 1) != 0) return -1;
  e->b->data[e->b->len++] = c;
  return 0;
}

static int encode_string(Encoder *e, const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  const char *end = s + len;
  char *out;
  /* room for the plain case; each escape makes room for the rest again */
  if (reserve(e, len + 2) != 0) return -1;
  out = e->b->data + e->b->len;
  *out++ = '"';
  for (;;) {
    const char *run = s;
    char esc;
    s = jsontext_plain_run_end(s, end);
    memcpy(out, run, s - run);
    out += s - run;
    if (s == end) break;
    e->b->len = out - e->b->data;
    if (reserve(e, (size_t)(end - s) + 6 + 1) != 0) return -1;
    out = e->b->data + e->b->len;
    esc = jsontext_escape_of[(unsigned char)*s];
    *out++ = '\\';
    *out++ = esc;
    if (esc == 'u') {
      memcpy(out, "00", 2);
      out[2] = hex[(unsigned char)*s >> 4];
      out[3] = hex[*s & 0xf];
      out += 4;
    }
    s++;
  }
  *out++ = '"';
  e->b->len = out - e->b->data;
  return 0;
}

static int encode_number(Encoder *e, int idx) {
  char *out;
  int n;
  if (reserve(e, JSONTEXT_NUMBER_MAX) != 0) return -1;
  out = e->b->data + e->b->len;
  if (lua_isinteger(e->L, idx))
    n = jsontext_integer(out, lua_tointeger(e->L, idx));
  else if ((n = jsontext_float(out, lua_tonumber(e->L, idx))) < 0)
    return fail(e, e->depth, "out of memory");
  e->b->len += n;
  return 0;
}

static int encode_value(Encoder *e, int idx);

/* Object keys keep their type: strings quoted, numbers and booleans bare. */
static int encode_key(Encoder *e, int idx) {
  char what[64];
  switch (lua_type(e->L, idx)) {
    case LUA_TSTRING:
    case LUA_TNUMBER:
    case LUA_TBOOLEAN:
      return encode_value(e, idx);
    default:
      snprintf(what, sizeof what, "cannot send a %s key",
               luaL_typename(e->L, idx));
      return fail(e, e->depth - 1, what);
  }
}

/* The first key and its value are on the stack: encodes from there on. */
static int encode_object(Encoder *e, int idx, PathStep *step) {
  lua_State *L = e->L;
  int key = lua_gettop(L) - 1;
  step->key_slot = key;
  if (put_char(e, '{') != 0) return -1;
  for (;;) {
    if (encode_key(e, key) != 0 || put_char(e, ':') != 0 ||
        encode_value(e, key + 1) != 0)
      return -1;
    lua_pop(L, 1);
    if (!lua_next(L, idx)) break;
    if (put_char(e, ',') != 0) return -1;
  }
  return put_char(e, '}');
}

/*
** The array rule: a table is an array of length n when all its keys are
** positive integers, n is the largest, and n <= 2 * (number of keys), so
** holes cost at most half the output. Returns n, 0 for the empty table,
** or -1 for an object (found at its first key that is not an index).
*/
static lua_Integer array_length(lua_State *L, int idx) {
  lua_Integer max = 0, count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_Integer k;
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1) || (k = lua_tointeger(L, -1)) <= 0) {
      lua_pop(L, 1);
      return -1;
    }
    if (k > max) max = k;
    count++;
  }
  return max - count <= count ? max : -1;
}

/* Elements an array leaves on the stack before they are popped together. */
#define POP_BATCH 64

/* Writes the n items of the table at idx from 'first' on as an array. */
static int encode_array(Encoder *e, int idx, lua_Integer first, lua_Integer n, PathStep *step) {
  lua_State *L = e->L;
  int base = lua_gettop(L);
  lua_Integer i;
  step->key_slot = 0;
  if (!lua_checkstack(L, POP_BATCH)) return fail(e, e->depth, "Lua stack overflow");
  if (put_char(e, '[') != 0) return -1;
  for (i = 1; i <= n; i++) {
    step->index = i;
    if (i % POP_BATCH == 0) lua_settop(L, base); /* one pop for many elements */
    if (lua_rawgeti(L, idx, first + i - 1) == LUA_TNUMBER && lua_isinteger(L, -1)) {
      /* the common element of big results, kept short */
      if (reserve(e, JSONTEXT_NUMBER_MAX + 1) != 0) return -1;
      if (i > 1) e->b->data[e->b->len++] = ',';
      e->b->len += jsontext_integer(e->b->data + e->b->len, lua_tointeger(L, -1));
    } else {
      if (i > 1 && put_char(e, ',') != 0) return -1;
      if (encode_value(e, lua_gettop(L)) != 0) return -1;
    }
  }
  lua_settop(L, base);
  return put_char(e, ']');
}

/*
** The most common table, a sequence of scalars, in one lua_next pass:
** when every element sits in the table's array part, the keys come back
** as 1, 2, 3... Returns 1 when the table was written, 0 when it is not
** such a sequence (no elements, a hole, another key, a table element),
** with the output left as it was, or -1 on failure. Stopping at the first
** table element means that nothing nested is ever written twice.
*/
static int encode_scalar_sequence(Encoder *e, int idx, PathStep *step) {
  lua_State *L = e->L;
  size_t mark = e->b->len;
  lua_Integer i = 0;
  step->key_slot = 0;
  if (put_char(e, '[') != 0) return -1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int type = lua_type(L, -1);
    step->index = ++i;
    if (type == LUA_TTABLE || !lua_isinteger(L, -2) || lua_tointeger(L, -2) != i) {
      lua_pop(L, 2);
      e->b->len = mark;
      return 0;
    }
    if (type == LUA_TNUMBER && lua_isinteger(L, -1)) {
      if (reserve(e, JSONTEXT_NUMBER_MAX + 1) != 0) return -1;
      if (i > 1) e->b->data[e->b->len++] = ',';
      e->b->len += jsontext_integer(e->b->data + e->b->len, lua_tointeger(L, -1));
    } else if ((i > 1 && put_char(e, ',') != 0) || encode_value(e, lua_gettop(L)) != 0) {
      return -1;
    }
    lua_pop(L, 1);
  }
  if (i == 0) {
    e->b->len = mark;
    return 0;
  }
  return put_char(e, ']') == 0 ? 1 : -1;
}

/*
** Other arrays are checked first and then written with rawgeti, rather
** than written while checked: undoing a wrong guess would encode the
** values again, at every level of nesting.
*/
static int encode_table_contents(Encoder *e, int idx, PathStep *step) {
  int written = lua_rawlen(e->L, idx) > 0 ? encode_scalar_sequence(e, idx, step) : 0;
  lua_Integer n;
  if (written != 0) return written > 0 ? 0 : -1;
  n = array_length(e->L, idx);
  if (n == 0) return put(e, "{}", 2);
  if (n > 0) return encode_array(e, idx, 1, n, step);
  lua_pushnil(e->L);
  lua_next(e->L, idx);
  return encode_object(e, idx, step);
}

/* The table at idx: whole (count < 0), or as the array of its count items from 'first' on. */
static int encode_table(Encoder *e, int idx, lua_Integer first, lua_Integer count) {
  const void *table = lua_topointer(e->L, idx);
  int i, status;
  for (i = 0; i < e->depth; i++)
    if (e->path[i].table == table) return fail(e, e->depth, "cannot send a cycle");
  if (e->depth == CODEC_MAX_DEPTH) {
    char what[64];
    snprintf(what, sizeof what, "table nested deeper than %d levels",
             CODEC_MAX_DEPTH);
    return fail(e, e->depth, what);
  }
  if (!lua_checkstack(e->L, 2))  /* a key and its value */
    return fail(e, e->depth, "Lua stack overflow");
  e->path[e->depth].table = table;
  e->depth++;
  if (count < 0) status = encode_table_contents(e, idx, &e->path[e->depth - 1]);
  else status = encode_array(e, idx, first, count, &e->path[e->depth - 1]);
  e->depth--;
  return status;
}

void codec_push_slice(lua_State *L, int list, lua_Integer first, lua_Integer count) {
  Slice *s;
  list = lua_absindex(L, list);
  s = lua_newuserdatauv(L, sizeof *s, 1);
  s->first = first;
  s->count = count;
  lua_pushvalue(L, list);
  lua_setiuservalue(L, -2, 1);
  if (luaL_newmetatable(L, SLICE_METATABLE)) {
    lua_pushliteral(L, "a slice of a list");
    lua_setfield(L, -2, "__metatable"); /* not one of the user's */
  }
  lua_setmetatable(L, -2);
}

static int encode_userdata(Encoder *e, int idx) {
  const Slice *s = luaL_testudata(e->L, idx, SLICE_METATABLE);
  int status;
  if (s == NULL) return fail(e, e->depth, "cannot send a userdata");
  lua_getiuservalue(e->L, idx, 1);
  status = encode_table(e, lua_gettop(e->L), s->first, s->count);
  lua_pop(e->L, 1);
  return status;
}

static int encode_value(Encoder *e, int idx) {
  lua_State *L = e->L;
  size_t len;
  const char *s;
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      return put(e, "null", 4);
    case LUA_TBOOLEAN:
      return lua_toboolean(L, idx) ? put(e, "true", 4) : put(e, "false", 5);
    case LUA_TNUMBER:
      return encode_number(e, idx);
    case LUA_TSTRING:
      s = lua_tolstring(L, idx, &len);
      return encode_string(e, s, len);
    case LUA_TTABLE:
      return encode_table(e, idx, 1, -1);
    case LUA_TFUNCTION:
      return fail(e, e->depth, "cannot send a function");
    case LUA_TTHREAD:
      return fail(e, e->depth, "cannot send a thread");
    default:  /* full and light userdata */
      return encode_userdata(e, idx);
  }
}

int codec_encode(lua_State *L, int idx, Buffer *b, const char *root,
                 char *err, size_t errsize) {
  Encoder e;
  size_t mark = b->len;
  int top, status;
  e.L = L;
  e.b = b;
  e.root = root != NULL ? root : "value";
  e.err = err;
  e.errsize = errsize;
  e.depth = 0;
  if (lua_type(L, idx) != LUA_TTABLE) /* a scalar uses no stack: skip the bookkeeping */
    return encode_value(&e, idx);
  top = lua_gettop(L);
  status = encode_value(&e, lua_absindex(L, idx));
  lua_settop(L, top);
  if (status != 0) b->len = mark;
  return status;
}
