/*
** tests/fuzz/fuzz_lua.h: helpers shared by the codec fuzz targets.
**
** Header-only (static inline, so a target need not use them all): each
** target still builds from a single .c file plus the runtime sources.
** Every check that fails prints what it saw and calls abort(), which
** libFuzzer reports as a crash with the input saved as an artifact.
*/
#ifndef PARLUA_FUZZ_LUA_H
#define PARLUA_FUZZ_LUA_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "codec.h"

#include "fuzz_check.h"

/* ------------------------------------------------------------------ */
/* a Lua state whose allocator counts the bytes it holds */

typedef struct FuzzHeap {
  size_t live;   /* bytes currently allocated by the state */
  size_t limit;  /* abort when live would pass this (SIZE_MAX: no limit) */
  const char *what;
} FuzzHeap;

static FuzzHeap fuzz_heap = {0, SIZE_MAX, ""};

/*
** Lua passes the old size of every block it frees or resizes, so the
** live count is exact. Going over the limit aborts right here, so that
** the report's stack trace shows who asked for the memory.
*/
static inline void *fuzz_alloc(void *ud, void *ptr, size_t osize,
                               size_t nsize) {
  FuzzHeap *h = ud;
  size_t old = ptr != NULL ? osize : 0;
  if (nsize == 0) {
    free(ptr);
    h->live -= old;
    return NULL;
  }
  if (nsize > old && h->live + (nsize - old) > h->limit) {
    fprintf(stderr, "fuzz: %s holds more than %zu bytes (asked for %zu more)\n",
            h->what, h->limit, nsize - old);
    abort();
  }
  ptr = realloc(ptr, nsize);
  if (ptr != NULL) h->live = h->live - old + nsize;
  return ptr;
}

/*
** A state with no libraries and its collector stopped: the harness runs
** a full collection after each input instead, so the live count during
** a decode is everything that decode allocated (garbage included).
*/
static inline lua_State *fuzz_new_state(void) {
  lua_State *L = lua_newstate(fuzz_alloc, &fuzz_heap);
  if (L == NULL) abort();
  lua_gc(L, LUA_GCSTOP);
  return L;
}

/*
** Frees what an input made, at its end: libFuzzer runs a (slow) leak
** check after every input that freed fewer blocks than it allocated.
*/
static inline void fuzz_reset_state(lua_State *L) {
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT);
}

/* ------------------------------------------------------------------ */
/* deep equality, exact about numbers */

static inline uint64_t fuzz_bits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}

/*
** Floats must come back bit for bit, -0.0 included. NaN is the exception:
** the wire has one word for all of them, so any NaN matches any NaN.
*/
static inline int fuzz_same_number(lua_State *L, int a, int b) {
  if (lua_isinteger(L, a) != lua_isinteger(L, b)) return 0;
  if (lua_isinteger(L, a)) return lua_tointeger(L, a) == lua_tointeger(L, b);
  if (isnan(lua_tonumber(L, a))) return isnan(lua_tonumber(L, b));
  return fuzz_bits(lua_tonumber(L, a)) == fuzz_bits(lua_tonumber(L, b));
}

static inline size_t fuzz_count_keys(lua_State *L, int t) {
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    n++;
  }
  return n;
}

static inline int fuzz_equal(lua_State *L, int a, int b);

/* Same keys (by raw equality, so of the same type) and equal values. */
static inline int fuzz_equal_tables(lua_State *L, int a, int b) {
  if (!lua_checkstack(L, 4)) abort();
  if (fuzz_count_keys(L, a) != fuzz_count_keys(L, b)) return 0;
  lua_pushnil(L);
  while (lua_next(L, a)) {
    int top = lua_gettop(L), same;
    lua_pushvalue(L, top - 1);
    lua_rawget(L, b);
    /* integer and float keys never compare equal across types in a
       table: integral floats are stored as integers on both sides */
    same = fuzz_equal(L, top, top + 1);
    lua_settop(L, top - 1);
    if (!same) {
      lua_pop(L, 1);
      return 0;
    }
  }
  return 1;
}

static inline int fuzz_equal(lua_State *L, int a, int b) {
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  if (lua_type(L, a) != lua_type(L, b)) return 0;
  switch (lua_type(L, a)) {
    case LUA_TNIL:
      return 1;
    case LUA_TBOOLEAN:
      return lua_toboolean(L, a) == lua_toboolean(L, b);
    case LUA_TNUMBER:
      return fuzz_same_number(L, a, b);
    case LUA_TSTRING: {
      size_t la, lb;
      const char *sa = lua_tolstring(L, a, &la), *sb = lua_tolstring(L, b, &lb);
      return la == lb && memcmp(sa, sb, la) == 0;
    }
    case LUA_TTABLE:
      return fuzz_equal_tables(L, a, b);
    default:
      return 0;  /* the codec never makes other types */
  }
}

/* ------------------------------------------------------------------ */
/* calling the decoder under lua_pcall */

typedef struct FuzzText {
  const char *s;
  size_t len;
  lua_Integer first;  /* for codec_decode_into */
  lua_Integer count;  /* what codec_decode_into returned */
} FuzzText;

/* [text] -> value; checks that exactly one value was pushed. */
static inline int fuzz_decode_fn(lua_State *L) {
  FuzzText *t = lua_touserdata(L, 1);
  int top = lua_gettop(L);
  codec_decode(L, t->s, t->len);
  FUZZ_CHECK(lua_gettop(L) == top + 1, "codec_decode pushed %d values",
             lua_gettop(L) - top);
  return 1;
}

/* [text] -> a new table with the array's elements from t->first on. */
static inline int fuzz_decode_into_fn(lua_State *L) {
  FuzzText *t = lua_touserdata(L, 1);
  int top;
  lua_newtable(L);
  top = lua_gettop(L);
  t->count = codec_decode_into(L, top, t->first, t->s, t->len);
  FUZZ_CHECK(lua_gettop(L) == top, "codec_decode_into changed the stack by %d",
             lua_gettop(L) - top);
  FUZZ_CHECK(t->count >= 0, "codec_decode_into returned %lld",
             (long long)t->count);
  return 1;
}

/*
** Runs fn on t under lua_pcall; leaves its result or error message on the
** stack and returns the status.
*/
static inline int fuzz_pcall(lua_State *L, lua_CFunction fn, FuzzText *t) {
  int top = lua_gettop(L), status;
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, t);
  status = lua_pcall(L, 1, 1, 0);
  FUZZ_CHECK(lua_gettop(L) == top + 1, "pcall left %d values",
             lua_gettop(L) - top);
  return status;
}

/*
** A decoding error must be the documented clean one,
** "bad message at byte N: ..." with N within the text or just after it.
*/
static inline void fuzz_check_decode_error(lua_State *L, int status,
                                           size_t len) {
  const char *msg = lua_tostring(L, -1);
  long long at = 0;
  int used = 0;
  FUZZ_CHECK(status == LUA_ERRRUN, "decoding failed with status %d (%s)",
             status, msg != NULL ? msg : "no message");
  FUZZ_CHECK(msg != NULL, "the error is a %s, not a string",
             luaL_typename(L, -1));
  FUZZ_CHECK(sscanf(msg, "bad message at byte %lld: %n", &at, &used) == 1 &&
                 used > 0 && msg[used] != '\0',
             "unexpected error message: %s", msg);
  FUZZ_CHECK(at >= 1 && (size_t)at <= len + 1,
             "error at byte %lld of a %zu-byte message: %s", at, len, msg);
}

#endif
