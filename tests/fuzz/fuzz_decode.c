/*
** tests/fuzz/fuzz_decode.c: libFuzzer target for the wire decoder.
**
** The input is a message. Whatever it holds, codec_decode must push one
** value or raise the documented "bad message at byte N: ..." error, never
** crash, leak or allocate out of proportion to the input. On top of that
** each input checks:
**   - a decoded value re-encodes and decodes back to an equal value, and
**     encoding that again gives text of the same length (same tokens, in
**     pairs order);
**   - a top-level number decodes like Lua's own lua_stringtonumber reads
**     it (type and bits), the oracle docs/wire.md points to;
**   - for text starting with '[', codec_decode_into agrees with
**     codec_decode (same value or the same error) and places element k at
**     first + k - 1, 'first' being 1 and then a value picked from the
**     input's length: 0, negative, LUA_MININTEGER, or the largest that
**     keeps the last index representable, in which case one more must be
**     refused with a clean error.
*/
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "buffer.h"
#include "codec.h"
#include "fuzz_lua.h"

/*
** The most a decode may allocate: a fixed part (the Lua stack grows to a
** few thousand slots at depth 1000) and a part per byte of input. The
** densest message, "[[],[],...", makes a 56-byte table and an array slot
** for every 3 bytes; 256 bytes per byte leaves room for table parts that
** double as they grow, while still catching anything out of proportion.
*/
#define DECODE_BASE_BYTES ((size_t)1 << 20)
#define DECODE_BYTES_PER_BYTE 256

static lua_State *L;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  L = fuzz_new_state();
  return 0;
}

/* Runs fn under pcall with the allocation budget for a message of t->len. */
static int decode_with_budget(lua_CFunction fn, FuzzText *t, const char *what) {
  int status;
  fuzz_heap.what = what;
  fuzz_heap.limit = fuzz_heap.live + DECODE_BASE_BYTES +
                    DECODE_BYTES_PER_BYTE * t->len;
  status = fuzz_pcall(L, fn, t);
  fuzz_heap.limit = SIZE_MAX;
  return status;
}

static int is_space(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static int starts_with(const FuzzText *t, char c) {
  size_t i = 0;
  while (i < t->len && is_space(t->s[i])) i++;
  return i < t->len && t->s[i] == c;
}

/* Encodes the value at idx, failing the run if the encoder refuses it. */
static void encode_or_die(int idx, Buffer *b) {
  char err[256] = "";
  int top = lua_gettop(L);
  FUZZ_CHECK(codec_encode(L, idx, b, "value", err, sizeof err) == 0,
             "a decoded value does not encode: %s", err);
  FUZZ_CHECK(lua_gettop(L) == top, "codec_encode changed the stack");
}

/* The decoded value at idx survives encode -> decode unchanged. */
static void check_reencode(int idx) {
  Buffer once = {NULL, 0, 0}, twice = {NULL, 0, 0};
  FuzzText t;
  encode_or_die(idx, &once);
  t.s = once.data;
  t.len = once.len;
  if (fuzz_pcall(L, fuzz_decode_fn, &t) != LUA_OK)
    FUZZ_CHECK(0, "re-encoded text does not decode: %s\n  text: %.*s",
               lua_tostring(L, -1), (int)(once.len > 200 ? 200 : once.len),
               once.data);
  FUZZ_CHECK(fuzz_equal(L, idx, -1), "the value changed through encode/decode:"
             " %.*s", (int)(once.len > 200 ? 200 : once.len), once.data);
  encode_or_die(-1, &twice);
  FUZZ_CHECK(twice.len == once.len, "re-encoding changed the length %zu -> %zu",
             once.len, twice.len);
  lua_pop(L, 1);
  buffer_free(&once);
  buffer_free(&twice);
}

/* A top-level number reads as Lua's own conversion reads the same text. */
static void check_number(int idx, const FuzzText *t) {
  int top = lua_gettop(L);
  const char *text;
  if (lua_type(L, idx) != LUA_TNUMBER) return;
  if (memchr(t->s, 'I', t->len) != NULL || memchr(t->s, 'N', t->len) != NULL)
    return;  /* Infinity and NaN are the wire's words, not Lua's */
  lua_pushlstring(L, t->s, t->len);  /* NUL-terminated copy */
  text = lua_tostring(L, -1);
  FUZZ_CHECK(lua_stringtonumber(L, text) == t->len + 1,
             "Lua does not read the number %s", text);
  FUZZ_CHECK(fuzz_same_number(L, idx, -1),
             "%s decoded as %s %.17g, Lua reads %s %.17g", text,
             lua_isinteger(L, idx) ? "integer" : "float", lua_tonumber(L, idx),
             lua_isinteger(L, -1) ? "integer" : "float", lua_tonumber(L, -1));
  lua_settop(L, top);
}

/*
** The first index for the second codec_decode_into call, from the input's
** length so that the fuzzer reaches every case. n is the element count.
*/
static lua_Integer pick_first(size_t len, lua_Integer n) {
  switch (len % 4) {
    case 0: return 0;
    case 1: return -n;
    case 2: return LUA_MININTEGER;
    default: return n > 0 ? LUA_MAXINTEGER - (n - 1) : LUA_MAXINTEGER;
  }
}

/* The table on top holds those of the table at idx1, from 'first' on. */
static void check_shifted(int idx1, lua_Integer first) {
  int t2 = lua_gettop(L);
  FUZZ_CHECK(fuzz_count_keys(L, idx1) == fuzz_count_keys(L, t2),
             "decode_into from %lld: different number of elements",
             (long long)first);
  lua_pushnil(L);
  while (lua_next(L, idx1)) {
    lua_Integer k = lua_tointeger(L, -2);
    lua_rawgeti(L, t2, first + (k - 1));
    FUZZ_CHECK(fuzz_equal(L, -1, -2),
               "decode_into from %lld: element %lld differs",
               (long long)first, (long long)k);
    lua_pop(L, 2);
  }
}

/* Every key of the table at idx is an integer in 1..n. */
static void check_indexes(int idx, lua_Integer n) {
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    FUZZ_CHECK(lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1 &&
                   lua_tointeger(L, -2) <= n,
               "decode_into returned %lld but filled a key outside 1..n",
               (long long)n);
    lua_pop(L, 1);
  }
}

/*
** An array whose last index would be one past LUA_MAXINTEGER is refused
** with a clean error (and not computed with an overflow).
*/
static void check_past_last_index(const FuzzText *text, lua_Integer n) {
  FuzzText t = *text;
  const char *msg;
  int status;
  t.first = LUA_MAXINTEGER - (n - 2);
  status = decode_with_budget(fuzz_decode_into_fn, &t, "codec_decode_into");
  FUZZ_CHECK(status != LUA_OK, "codec_decode_into from %lld accepted %lld"
             " elements", (long long)t.first, (long long)n);
  fuzz_check_decode_error(L, status, t.len);
  msg = lua_tostring(L, -1);
  FUZZ_CHECK(strstr(msg, "past the largest integer") != NULL,
             "unexpected error for indexes past the largest: %s", msg);
  lua_pop(L, 1);
}

/*
** codec_decode_into against codec_decode's outcome (value or error at
** stack index 1).
*/
static void check_decode_into(const FuzzText *text, int decoded) {
  FuzzText t = *text;
  int status;
  t.first = 1;
  status = decode_with_budget(fuzz_decode_into_fn, &t, "codec_decode_into");
  if (decoded != LUA_OK) {
    FUZZ_CHECK(status != LUA_OK, "codec_decode_into accepts what codec_decode"
               " refuses (%s)", lua_tostring(L, 1));
    FUZZ_CHECK(strcmp(lua_tostring(L, 1), lua_tostring(L, -1)) == 0,
               "different errors: codec_decode says %s, codec_decode_into %s",
               lua_tostring(L, 1), lua_tostring(L, -1));
    lua_pop(L, 1);
    return;
  }
  FUZZ_CHECK(status == LUA_OK, "codec_decode_into refuses what codec_decode"
             " accepts: %s", lua_tostring(L, -1));
  FUZZ_CHECK(fuzz_equal(L, 1, -1), "codec_decode_into made a different table");
  check_indexes(1, t.count);
  t.first = pick_first(t.len, t.count);
  status = decode_with_budget(fuzz_decode_into_fn, &t, "codec_decode_into");
  FUZZ_CHECK(status == LUA_OK, "codec_decode_into from %lld fails: %s",
             (long long)t.first, lua_tostring(L, -1));
  check_shifted(1, t.first);
  lua_pop(L, 2);
  if (t.len % 4 == 3 && t.count >= 2) check_past_last_index(&t, t.count);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzText t = {(const char *)data, size, 1, 0};
  int status;
  status = decode_with_budget(fuzz_decode_fn, &t, "codec_decode");
  if (status != LUA_OK) fuzz_check_decode_error(L, status, size);
  if (starts_with(&t, '[')) check_decode_into(&t, status);
  if (status == LUA_OK) {
    check_number(1, &t);
    check_reencode(1);
  }
  fuzz_reset_state(L);
  return 0;
}
