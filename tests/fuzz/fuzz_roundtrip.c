/*
** tests/fuzz/fuzz_roundtrip.c: libFuzzer target for encode -> decode.
**
** The input bytes are a little program that builds one Lua value (see
** build_value: each value starts with a byte choosing its kind). The
** value is encoded with codec_encode and decoded with codec_decode, and
** must come back equal: same types, integers equal, floats bit for bit
** (-0.0 and subnormals included, any NaN for a NaN), strings byte for
** byte, tables with the same keys of the same types; a table used twice
** comes back as two equal tables. A value nested deeper than
** CODEC_MAX_DEPTH, or holding a function, userdata, thread, table key or
** cycle (rare kinds of the builder), must instead be refused with one of
** the documented messages, leaving the output buffer as it was. Arrays
** are also read back with codec_decode_into. Any mismatch aborts.
*/
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "buffer.h"
#include "codec.h"
#include "fuzz_lua.h"

/* Tables built by recursion nest at most this deep; deeper values come
   from the chain kind, which builds them in a loop. */
#define BUILD_DEPTH 24
#define MAX_ITEMS 40      /* elements or members in one built table */
#define DEEP_BUDGET 1010  /* tables in all the chains of a deep input */
#define SHALLOW_BUDGET 60 /* ... and of the other inputs */

#define MAX_SHARES 4       /* uses of an earlier table: each may double the size */

static lua_State *L;
static unsigned chain_budget;  /* chain levels left for this input */
static unsigned shares_left;   /* table reuses left for this input */
static char last_table;        /* its address keys the last table built */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  L = fuzz_new_state();
  return 0;
}

/* ------------------------------------------------------------------ */
/* reading the input: past its end every byte reads as 0 */

typedef struct Input {
  const uint8_t *p, *end;
} Input;

static int more(const Input *in) {
  return in->p < in->end;
}

static unsigned byte(Input *in) {
  return more(in) ? *in->p++ : 0;
}

static unsigned u16(Input *in) {
  unsigned lo = byte(in);
  return lo | byte(in) << 8;
}

static uint64_t u64(Input *in) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < 8; i++) v |= (uint64_t)byte(in) << (8 * i);
  return v;
}

/* ------------------------------------------------------------------ */
/* interesting leaves */

static const lua_Integer special_integers[] = {
  0, 1, -1, LUA_MAXINTEGER, LUA_MININTEGER, LUA_MAXINTEGER - 1,
  LUA_MININTEGER + 1, (lua_Integer)1 << 53, ((lua_Integer)1 << 53) + 1,
  -((lua_Integer)1 << 53) - 1, 999999999999999999, 1000000000000000000,
  -1000000000000000000, 4294967296, -2147483648, 99, 100, 101,
};

#define COUNT(a) (sizeof (a) / sizeof (a)[0])

static lua_Integer special_integer(unsigned i) {
  return special_integers[i % COUNT(special_integers)];
}

static double from_bits(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

/* Floats where formatting is delicate; a few built from their bits. */
static double special_float(unsigned i) {
  static const double plain[] = {
    0.0, -0.0, 1.0, -1.0, 0.1, 0.2, 0.3, 1.0 / 3, 2.0 / 3, 0.5, 1.5, 100.0,
    1e16, 1e17, 9007199254740992.0, 9007199254740994.0, 18446744073709551616.0,
    9223372036854775808.0, -9223372036854775808.0, 1e21, 1e22, 1e23, 1e-4,
    1e-5, 0.0001234, 123456.789, 5e-324, -5e-324, 1e-323, DBL_MIN, -DBL_MIN,
    DBL_MAX, -DBL_MAX, 1e308, 2.2250738585072009e-308, 4.9406564584124654e-324,
    1.7976931348623157e308, 7e-40, 6.9e-40, 7e16, 6.9e16, 8.41e21, 5e-310,
    2.5e-308, 1e-7, 123e-20, 0.30000000000000004, 1e15, 1e-15,
  };
  size_t n = sizeof plain / sizeof plain[0];
  i %= n + 9;
  if (i < n) return plain[i];
  switch (i - n) {
    case 0: return HUGE_VAL;
    case 1: return -HUGE_VAL;
    case 2: return NAN;
    case 3: return -NAN;
    case 4: return from_bits(UINT64_C(0x7FF0000000000001));  /* signaling NaN */
    case 5: return from_bits(UINT64_C(0x000FFFFFFFFFFFFF));  /* top subnormal */
    case 6: return from_bits(UINT64_C(0x0010000000000001));
    case 7: return from_bits(UINT64_C(0x7FEFFFFFFFFFFFFE));
    default: return from_bits(UINT64_C(0x8000000000000001));  /* -5e-324 */
  }
}

static const char *const special_strings[] = {
  "", "a", "\"", "\\", "\\u0000", "\"\\\"", "/", "\b\f\n\r\t", "\x7f",
  "\x01\x02\x1f", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
  "\xed\xa0\x80", "\xed\xb0\x80", "\xed\xa0\xbd\xed\xb8\x80", "\xff\xfe\xfd",
  "\xc0\x80", "\x80", "null", "true", "NaN", "Infinity", "1", "1.5", "[]",
  "{}", "a b", "_x1", "1abc", "\xef\xbb\xbf", "}{][,:",
};

#define SPECIAL_STRINGS ((unsigned)COUNT(special_strings))

static void push_special_string(unsigned i) {
  lua_pushstring(L, special_strings[i % SPECIAL_STRINGS]);
}

/* A string of up to 31 bytes taken as they are from the input. */
static void push_raw_string(Input *in) {
  char s[32];
  unsigned n = byte(in) % 32, i;
  for (i = 0; i < n; i++) s[i] = (char)byte(in);
  lua_pushlstring(L, s, n);
}

/* A long string: a 1 to 4 byte pattern repeated to up to 8191 bytes. */
static void push_long_string(Input *in) {
  char pattern[4];
  luaL_Buffer b;
  unsigned n = u16(in) % 8192, k = 1 + byte(in) % 4, i;
  for (i = 0; i < k; i++) pattern[i] = (char)byte(in);
  luaL_buffinit(L, &b);
  for (i = 0; i < n; i++) luaL_addchar(&b, pattern[i % k]);
  luaL_pushresult(&b);
}

/* ------------------------------------------------------------------ */
/* building values */

static void build_value(Input *in, int level);

/* A boolean key, or rarely one codec_encode must refuse. */
static void push_boolean_or_unsendable(unsigned b) {
  switch (b < 252 ? 0 : b - 251) {
    case 0: lua_pushboolean(L, b & 1); break;
    case 1: lua_pushcfunction(L, fuzz_decode_fn); break;
    case 2: lua_pushlightuserdata(L, &last_table); break;
    case 3: lua_newtable(L); break;
    default: lua_newthread(L); break;
  }
}

/*
** Nil, or rarely: a value codec_encode must refuse (a function, userdata,
** thread, table with a table key, or a cycle), or a table built earlier in
** this input, which must be sent twice (it is not a cycle).
*/
static void push_nil_or_odd(unsigned b) {
  switch (b < 248 ? 0 : b - 247) {
    case 0: lua_pushnil(L); break;
    case 1: lua_pushcfunction(L, fuzz_decode_fn); break;
    case 2: lua_pushlightuserdata(L, &last_table); break;
    case 3: lua_newuserdatauv(L, 1, 0); break;
    case 4: lua_newthread(L); break;
    case 5:  /* {[{}] = true} */
      lua_newtable(L);
      lua_newtable(L);
      lua_pushboolean(L, 1);
      lua_rawset(L, -3);
      break;
    case 6:  /* t = {t} */
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_rawseti(L, -2, 1);
      break;
    case 7:  /* t = {x = {t}} */
      lua_newtable(L);
      lua_createtable(L, 1, 0);
      lua_pushvalue(L, -2);
      lua_rawseti(L, -2, 1);
      lua_setfield(L, -2, "x");
      break;
    default:
      lua_rawgetp(L, LUA_REGISTRYINDEX, &last_table);
      if (shares_left == 0) {
        lua_pop(L, 1);
        lua_pushnil(L);
      } else {
        shares_left--;
      }
  }
}

/* A table key: never nil or NaN, which Lua refuses as keys. */
static void push_key(Input *in) {
  double d;
  switch (byte(in) % 8) {
    case 0: lua_pushinteger(L, (lua_Integer)(int8_t)byte(in)); break;
    case 1: lua_pushinteger(L, special_integer(byte(in))); break;
    case 2: lua_pushinteger(L, (lua_Integer)u64(in)); break;
    case 3:
      d = special_float(byte(in));
      lua_pushnumber(L, isnan(d) ? 0.25 : d);
      break;
    case 4:
      d = from_bits(u64(in));
      lua_pushnumber(L, isnan(d) ? -0.75 : d);
      break;
    case 5: push_boolean_or_unsendable(byte(in)); break;
    case 6: push_special_string(byte(in)); break;
    default: push_raw_string(in); break;
  }
}

/*
** The key of level i of a chain in the given style: the chain is made of
** {v} tables (style 0) or {[key] = v} ones with string keys (1), or both
** in turn with keys of every type, which error paths spell differently.
** Keys come from the level rather than the input, so that a chain is a
** few bytes and the fuzzer has little reason to keep many variants of
** these slow inputs.
*/
static int push_chain_key(unsigned style, unsigned i) {
  if (style == 0 || (style >= 2 && i % 2 == 0)) return 0;
  switch (style == 1 ? 0 : i / 2 % 4) {
    case 0: push_special_string(i); break;
    case 1: lua_pushinteger(L, special_integer(i)); break;
    case 2: lua_pushnumber(L, i + 0.5); break;
    default: lua_pushboolean(L, i & 4); break;
  }
  return 1;
}

/*
** Wraps the value on top in 'levels' tables, so that a chain can pass
** CODEC_MAX_DEPTH without deep C recursion here.
*/
static void wrap(Input *in, unsigned levels) {
  unsigned style = byte(in) % 3, i;
  for (i = 0; i < levels; i++) {
    lua_createtable(L, 1, 1);
    lua_insert(L, -2);
    if (!push_chain_key(style, i)) {
      lua_rawseti(L, -2, 1);
    } else {
      lua_insert(L, -2);
      lua_rawset(L, -3);  /* a nil value leaves it empty: still a level */
    }
  }
}

/* Pushes a table; 'kind' chooses array, sparse array or object. */
static void build_table(Input *in, int level, unsigned kind) {
  unsigned n = byte(in) % (MAX_ITEMS + 1), i;
  lua_Integer k = 0;
  if (!lua_checkstack(L, 8)) abort();
  lua_newtable(L);
  for (i = 0; i < n && more(in); i++) {
    if (kind == 0) {
      lua_pushinteger(L, ++k);  /* 1, 2, 3, ... (nil values make holes) */
    } else if (kind == 1) {
      k += 1 + byte(in) % 4;  /* near the array/object line */
      lua_pushinteger(L, k);
    } else {
      push_key(in);
    }
    build_value(in, level + 1);
    lua_rawset(L, -3);  /* a nil value makes a hole; a repeated key replaces */
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &last_table);  /* finished: never an
                                                      ancestor of what follows */
}

/*
** How many tables a chain has: mostly a few; one chain in 256 has 998 to
** 1001, which the tables around it can take past CODEC_MAX_DEPTH, if the
** input's chain budget allows (see chain_budget_of).
*/
static unsigned chain_levels(Input *in) {
  unsigned sel = byte(in);
  if (sel < 255) return sel % 16;
  return CODEC_MAX_DEPTH - 2 + byte(in) % 4;
}

/* Pushes one value built from the input. */
static void build_value(Input *in, int level) {
  unsigned kind = byte(in) % 16;
  double m;
  int e;
  if (level >= BUILD_DEPTH && kind >= 12) kind = 3;
  switch (kind) {
    case 0: push_nil_or_odd(byte(in)); break;
    case 1: lua_pushboolean(L, byte(in) & 1); break;
    case 2: lua_pushinteger(L, (lua_Integer)(int8_t)byte(in)); break;
    case 3: lua_pushinteger(L, special_integer(byte(in))); break;
    case 4: lua_pushinteger(L, (lua_Integer)u64(in)); break;
    case 5: lua_pushnumber(L, special_float(byte(in))); break;
    case 6: lua_pushnumber(L, from_bits(u64(in))); break;  /* any double */
    case 7: lua_pushnumber(L, (int8_t)byte(in)); break;  /* 2.0, -7.0 */
    case 8:  /* m * 2^e or m / 10^e: decimals of every length */
      m = (double)(int16_t)u16(in);
      e = (int)(byte(in) % 64) - 32;
      lua_pushnumber(L, byte(in) & 1 ? ldexp(m, e * 32) : m / pow(10, e));
      break;
    case 9: push_raw_string(in); break;
    case 10: push_special_string(byte(in)); break;
    case 11: push_long_string(in); break;
    case 12: case 13: case 14: build_table(in, level, kind - 12); break;
    default: {  /* a chain of tables around a value */
      unsigned levels = chain_levels(in);
      build_value(in, BUILD_DEPTH);
      if (levels > chain_budget) levels = chain_budget;
      chain_budget -= levels;
      wrap(in, levels);
    }
  }
}

/*
** What the encoder should make of the value built, found by walking it
** (not by counting while building: a repeated key may replace a value).
*/
typedef struct Scan {
  int unsendable;  /* it holds something codec_encode must refuse */
  int depth;       /* of the deepest table path, the outermost table 1 */
  const void *path[CODEC_MAX_DEPTH + 64];  /* the tables being walked */
} Scan;

static int is_sendable_key(int type) {
  return type == LUA_TSTRING || type == LUA_TNUMBER || type == LUA_TBOOLEAN;
}

static void scan_value(Scan *s, int idx, int level) {
  const void *t;
  int i;
  if (lua_type(L, idx) != LUA_TTABLE) {
    if (lua_type(L, idx) > LUA_TTABLE || lua_type(L, idx) == LUA_TLIGHTUSERDATA)
      s->unsendable = 1;  /* function, userdata, thread */
    return;
  }
  t = lua_topointer(L, idx);
  for (i = 0; i < level; i++)
    if (s->path[i] == t) {
      s->unsendable = 1;  /* a cycle */
      return;
    }
  if (level + 1 > s->depth) s->depth = level + 1;
  if (level == CODEC_MAX_DEPTH + 63) return;  /* deep enough to be refused */
  s->path[level] = t;
  if (!lua_checkstack(L, 3)) abort();
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (!is_sendable_key(lua_type(L, -2))) s->unsendable = 1;
    scan_value(s, lua_gettop(L), level + 1);
    lua_pop(L, 1);
  }
}

/*
** The encoder's cycle check makes a value 1000 deep cost as much as a
** thousand small ones, and left alone libFuzzer keeps mutating such
** inputs, most of which stay deep: a fifth of the corpus was, and took
** nearly all the time. So only one input in 16, by a hash of all its
** bytes, may hold long chains; a mutant of a deep input is rarely deep.
*/
static unsigned chain_budget_of(const uint8_t *data, size_t size) {
  uint32_t h = 2166136261u;  /* FNV-1a */
  size_t i;
  for (i = 0; i < size; i++) h = (h ^ data[i]) * 16777619u;
  return (h >> 24) % 16 == 0 ? DEEP_BUDGET : SHALLOW_BUDGET;
}

/* ------------------------------------------------------------------ */
/* the checks */

#define PREFIX "prefix"  /* output already in the buffer must stay */

/*
** A refused value leaves the buffer as it was, with one of the documented
** messages, "<what> (at value<path>)", the path at most PATH_TEXT_MAX (60)
** characters and "...". Only the depth message if nothing else is wrong.
*/
static void check_refused(const Buffer *b, const char *err, const Scan *s) {
  char deep[64];
  const char *at = strstr(err, " (at value");
  snprintf(deep, sizeof deep, "table nested deeper than %d levels (at value",
           CODEC_MAX_DEPTH);
  FUZZ_CHECK(b->len == strlen(PREFIX) && memcmp(b->data, PREFIX, b->len) == 0,
             "a refused value left %zu bytes in the buffer", b->len);
  if (!s->unsendable)
    FUZZ_CHECK(strncmp(err, deep, strlen(deep)) == 0,
               "a value %d deep was refused with: %s", s->depth, err);
  FUZZ_CHECK(strncmp(err, "cannot send a ", 14) == 0 ||
                 strncmp(err, deep, strlen(deep)) == 0,
             "unexpected message: %s", err);
  FUZZ_CHECK(at != NULL && strlen(at) <= strlen(" (at ") + 63 + 1 &&
                 err[strlen(err) - 1] == ')',
             "bad path in the message: %s", err);
}

/* The text decodes, with both decoders for an array, to the value at 1. */
static void check_decodes(const char *text, size_t len) {
  FuzzText t = {text, len, 1, 0};
  if (fuzz_pcall(L, fuzz_decode_fn, &t) != LUA_OK)
    FUZZ_CHECK(0, "encoded text does not decode: %s\n  text: %.*s",
               lua_tostring(L, -1), (int)(len > 300 ? 300 : len), text);
  FUZZ_CHECK(fuzz_equal(L, 1, -1), "the value changed: %.*s",
             (int)(len > 300 ? 300 : len), text);
  lua_pop(L, 1);
  if (len == 0 || text[0] != '[') return;
  if (fuzz_pcall(L, fuzz_decode_into_fn, &t) != LUA_OK)
    FUZZ_CHECK(0, "codec_decode_into fails: %s", lua_tostring(L, -1));
  FUZZ_CHECK(fuzz_equal(L, 1, -1), "codec_decode_into made a different table:"
             " %.*s", (int)(len > 300 ? 300 : len), text);
  lua_pop(L, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Input in = {data, data + size};
  Buffer b = {NULL, 0, 0};
  char err[256] = "";
  Scan scan = {0, 0, {NULL}};
  int status;
  chain_budget = chain_budget_of(data, size);
  shares_left = MAX_SHARES;
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &last_table);
  build_value(&in, 0);
  FUZZ_CHECK(lua_gettop(L) == 1, "the builder left %d values", lua_gettop(L));
  scan_value(&scan, 1, 0);
  if (buffer_append(&b, PREFIX, strlen(PREFIX)) != 0) abort();
  status = codec_encode(L, 1, &b, "value", err, sizeof err);
  FUZZ_CHECK(lua_gettop(L) == 1, "codec_encode changed the stack");
  if (scan.unsendable || scan.depth > CODEC_MAX_DEPTH) {
    FUZZ_CHECK(status != 0, "a value %d deep%s was encoded", scan.depth,
               scan.unsendable ? " that cannot be sent" : "");
    check_refused(&b, err, &scan);
  } else {
    FUZZ_CHECK(status == 0, "a value %d deep was refused: %s", scan.depth, err);
    check_decodes(b.data + strlen(PREFIX), b.len - strlen(PREFIX));
  }
  buffer_free(&b);
  fuzz_reset_state(L);
  return 0;
}
