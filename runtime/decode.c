/*
** The decoder: JSON text to a Lua value (docs/wire.md).
**
** It raises "bad message at byte N: ..." for malformed text and only ever
** allocates Lua objects, so an error cannot leak memory.
*/
#include <float.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "codec.h"
#include "jsontext.h"

typedef struct Decoder {
  lua_State *L;
  const char *start;  /* the message, for byte positions in errors */
  const char *p;      /* the next byte to read */
  const char *end;
  int depth;
} Decoder;

/*
** Containers keep their first values on the Lua stack, so that the table
** can be created at its final size; longer ones go on in the table.
*/
#define BATCH 16

/* Raises "bad message at byte N: <what>", N counting from 1. */
static void fail_at(Decoder *D, const char *at, const char *what) {
  luaL_error(D->L, "bad message at byte %I: %s",
             (lua_Integer)(at - D->start) + 1, what);
}

/* Raises "... expected <expected>, found <the byte at 'at'>". */
static void fail_expected(Decoder *D, const char *at, const char *expected) {
  char what[128];
  unsigned char c = at < D->end ? (unsigned char)*at : 0;
  if (at >= D->end)
    snprintf(what, sizeof what, "expected %s, found end of message", expected);
  else if (c > 0x20 && c < 0x7f)
    snprintf(what, sizeof what, "expected %s, found '%c'", expected, c);
  else
    snprintf(what, sizeof what, "expected %s, found byte 0x%02X", expected, c);
  fail_at(D, at, what);
}

static int is_digit(const char *p, const char *end) {
  return p < end && *p >= '0' && *p <= '9';
}

static void skip_space(Decoder *D) {
  const char *p = D->p;
  while (p < D->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    p++;
  D->p = p;
}

/* Consumes 'word' (true, false, null, NaN, Infinity) at D->p. */
static void match_word(Decoder *D, const char *word) {
  size_t i, len = strlen(word);
  for (i = 0; i < len; i++) {
    if (D->p + i >= D->end || D->p[i] != word[i]) {
      char expected[16];
      snprintf(expected, sizeof expected, "'%s'", word);
      fail_expected(D, D->p + i, expected);
    }
  }
  D->p += len;
}

static const double exact_pow10[] = {
  1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* The correctly rounded value of the valid number text [s, e). */
static double slow_strtod(Decoder *D, const char *s, const char *e) {
  char text[64];
  size_t len = (size_t)(e - s);
  locale_t c = jsontext_c_locale();
  double d;
  if (c == (locale_t)0) fail_at(D, s, "out of memory");
  if (len < sizeof text) {
    memcpy(text, s, len);
    text[len] = '\0';
    return strtod_l(text, NULL, c);
  }
  lua_pushlstring(D->L, s, len);  /* Lua strings end with a '\0' */
  d = strtod_l(lua_tostring(D->L, -1), NULL, c);
  lua_pop(D->L, 1);
  return d;
}

/*
** JSON numbers, plus Infinity and -Infinity. Without '.' or exponent a
** number that fits is an integer, "-0" included; one that does not fit
** becomes a float, like in Lua's own lexer.
*/
static void decode_number(Decoder *D) {
  const char *start = D->p, *p = D->p, *end = D->end;
  uint64_t mantissa = 0;
  int digits = 0, fraction_digits = 0, exponent = 0, negative = 0, is_float = 0;
  double d;
  if (*p == '-') {
    negative = 1;
    p++;
  }
  if (p < end && *p == 'I') {
    D->p = p;
    match_word(D, "Infinity");
    lua_pushnumber(D->L, negative ? -HUGE_VAL : HUGE_VAL);
    return;
  }
  if (!is_digit(p, end)) fail_expected(D, p, "a digit");
  if (*p == '0') {  /* no leading zeros */
    p++;
    digits = 1;
  } else {
    for (; is_digit(p, end); p++, digits++)
      mantissa = mantissa * 10 + (uint64_t)(*p - '0');  /* wraps past 19 digits */
  }
  if (p < end && *p == '.') {
    is_float = 1;
    if (!is_digit(++p, end)) fail_expected(D, p, "a digit after '.'");
    for (; is_digit(p, end); p++, fraction_digits++)
      mantissa = mantissa * 10 + (uint64_t)(*p - '0');
    digits += fraction_digits;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    int sign = 1;
    is_float = 1;
    p++;
    if (p < end && (*p == '+' || *p == '-')) sign = *p++ == '-' ? -1 : 1;
    if (!is_digit(p, end)) fail_expected(D, p, "a digit in the exponent");
    for (; is_digit(p, end); p++)
      if (exponent < 100000) exponent = exponent * 10 + (*p - '0');
    exponent *= sign;
  }
  D->p = p;
  if (!is_float && digits <= 19) {
    if (!negative && mantissa <= (uint64_t)LUA_MAXINTEGER) {
      lua_pushinteger(D->L, (lua_Integer)mantissa);
      return;
    }
    if (negative && mantissa <= (uint64_t)LUA_MAXINTEGER + 1) {
      lua_pushinteger(D->L, mantissa == (uint64_t)LUA_MAXINTEGER + 1
                                ? LUA_MININTEGER : -(lua_Integer)mantissa);
      return;
    }
  }
  exponent -= fraction_digits;
  if (FLT_EVAL_METHOD == 0 && digits <= 19 && mantissa <= (UINT64_C(1) << 53) &&
      exponent >= -22 && exponent <= 22) {
    /* Clinger's fast path: both operands are exact doubles, so the one
       rounding gives the right answer (x87 arithmetic would round twice) */
    d = (double)mantissa;
    d = exponent < 0 ? d / exact_pow10[-exponent] : d * exact_pow10[exponent];
    lua_pushnumber(D->L, negative ? -d : d);
  } else {
    lua_pushnumber(D->L, slow_strtod(D, start, p));
  }
}

/* The value of the 4 hex digits at p, or -1. */
static long hex4(const char *p, const char *end) {
  long v = 0;
  int i;
  if (end - p < 4) return -1;
  for (i = 0; i < 4; i++) {
    char c = p[i];
    int digit = c >= '0' && c <= '9' ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (digit < 0) return -1;
    v = v * 16 + digit;
  }
  return v;
}

static int utf8_encode(char *out, unsigned long cp) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/*
** \uXXXX at D->p (after the backslash and 'u'). A surrogate pair becomes
** one code point; a lone surrogate is kept as its 3-byte encoding.
*/
static void decode_unicode(Decoder *D, luaL_Buffer *B) {
  char utf8[4];
  long cp = hex4(D->p, D->end), low;
  if (cp < 0) fail_at(D, D->p - 2, "bad \\u escape, expected 4 hex digits");
  D->p += 4;
  if (cp >= 0xD800 && cp < 0xDC00 && D->end - D->p >= 6 &&
      D->p[0] == '\\' && D->p[1] == 'u' &&
      (low = hex4(D->p + 2, D->end)) >= 0xDC00 && low < 0xE000) {
    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    D->p += 6;
  }
  luaL_addlstring(B, utf8, utf8_encode(utf8, (unsigned long)cp));
}

static void decode_escape(Decoder *D, luaL_Buffer *B) {
  const char *at = ++D->p;  /* the byte after the backslash */
  if (at == D->end) fail_expected(D, at, "an escape after '\\'");
  D->p++;
  switch (*at) {
    case '"': case '\\': case '/': luaL_addchar(B, *at); break;
    case 'b': luaL_addchar(B, '\b'); break;
    case 'f': luaL_addchar(B, '\f'); break;
    case 'n': luaL_addchar(B, '\n'); break;
    case 'r': luaL_addchar(B, '\r'); break;
    case 't': luaL_addchar(B, '\t'); break;
    case 'u': decode_unicode(D, B); break;
    default: fail_expected(D, at, "an escape (one of \"\\/bfnrtu) after '\\'");
  }
}

/* The slow path of decode_string, for strings with escapes. */
static void decode_escaped_string(Decoder *D, const char *s) {
  luaL_Buffer B;
  luaL_buffinit(D->L, &B);
  for (;;) {
    const char *p = jsontext_plain_run_end(D->p, D->end);
    luaL_addlstring(&B, s, p - s);
    D->p = p;
    if (p == D->end) fail_at(D, p, "unterminated string, expected '\"'");
    if (*p == '"') break;
    if (*p != '\\') {
      char what[48];
      snprintf(what, sizeof what, "raw control byte 0x%02X in a string",
               (unsigned char)*p);
      fail_at(D, p, what);
    }
    decode_escape(D, &B);
    s = D->p;
  }
  D->p++;
  luaL_pushresult(&B);
}

static void decode_string(Decoder *D) {
  const char *s = ++D->p, *p = jsontext_plain_run_end(s, D->end);
  if (p < D->end && *p == '"') {  /* no escapes: the common case */
    lua_pushlstring(D->L, s, p - s);
    D->p = p + 1;
    return;
  }
  D->p = p;
  decode_escaped_string(D, s);
}

static void decode_value(Decoder *D);

static void enter_container(Decoder *D) {
  if (++D->depth > CODEC_MAX_DEPTH) {
    char what[48];
    snprintf(what, sizeof what, "nested deeper than %d levels", CODEC_MAX_DEPTH);
    fail_at(D, D->p, what);
  }
  /* a batch of pairs, the table, and the string buffer of a key */
  if (!lua_checkstack(D->L, 2 * BATCH + 8)) fail_at(D, D->p, "Lua stack overflow");
  D->p++;
  skip_space(D);
}

/* After an element: 1 after a ',', 0 after 'close'. */
static int next_item(Decoder *D, char close) {
  skip_space(D);
  if (D->p < D->end && *D->p == ',') {
    D->p++;
    return 1;
  }
  if (D->p < D->end && *D->p == close) {
    D->p++;
    return 0;
  }
  fail_expected(D, D->p, close == ']' ? "',' or ']'" : "',' or '}'");
  return 0;
}

/*
** Eight bytes at a time for the digits of integers: the value of the
** first n digits of the little-endian word x (n in 1..8), and the number
** of digits x starts with. Bytes past a non-digit are never trusted.
*/
static uint64_t leading_digits_value(uint64_t x, int n) {
  x <<= 8 * (8 - n); /* the digits move to the top; the bytes shifted in read as 0 */
  x = ((x & 0x0F0F0F0F0F0F0F0Full) * 2561) >> 8;
  x = ((x & 0x00FF00FF00FF00FFull) * 6553601) >> 16;
  return ((x & 0x0000FFFF0000FFFFull) * 42949672960001ull) >> 32;
}

static int leading_digit_count(uint64_t x) {
  uint64_t below = x - 0x3030303030303030ull; /* bytes under '0' set their top bit */
  uint64_t above = x + 0x4646464646464646ull; /* so do bytes over '9' */
  uint64_t other = (below | above) & 0x8080808080808080ull;
  return other == 0 ? 8 : __builtin_ctzll(other) / 8;
}

/*
** The digits at *pp, at most 18 of them, with 24 bytes readable from *pp:
** returns how many there were and advances *pp past them.
*/
static int scan_digits_fast(const char **pp, uint64_t *value) {
  const char *p = *pp;
  uint64_t v = 0;
  int total = 0;
  for (;;) {
    uint64_t x;
    int n;
    memcpy(&x, p, 8);
    n = leading_digit_count(x);
    if (n == 0) break;
    total += n;
    if (total > 18) break;
    v = v * jsontext_powers_of_ten[n] + leading_digits_value(x, n);
    p += n;
    if (n < 8) break;
  }
  *pp = p;
  *value = v;
  return total;
}

/*
** Stores a short plain integer (at most 18 digits, then ',' or ']') at
** t[k] without the general number path: big result arrays are mostly
** these. Returns 0, having read nothing, for anything else.
*/
static int take_short_integer(Decoder *D, int t, lua_Integer k) {
  const char *p = D->p, *end = D->end, *digits;
  int negative = p < end && *p == '-', count = 0;
  uint64_t v = 0;
  unsigned d;
  p += negative;
  digits = p;
  if (end - p >= 24) {
    count = scan_digits_fast(&p, &v);
  } else {
    while (p < end && (d = (unsigned)(unsigned char)*p - '0') < 10 && count < 19) {
      v = v * 10 + d;
      p++;
      count++;
    }
  }
  if (count == 0 || count > 18) return 0;
  if (*digits == '0' && count > 1) return 0; /* leading zeros are malformed */
  if (p == end || (*p != ',' && *p != ']')) return 0;
  lua_pushinteger(D->L, negative ? -(lua_Integer)v : (lua_Integer)v);
  lua_rawseti(D->L, t, k);
  D->p = p;
  return 1;
}

/* Stores the elements at t[first], t[first + 1], ...; returns how many. */
static lua_Integer decode_elements(Decoder *D, int t, lua_Integer first) {
  lua_Integer n = 0;
  for (;;) {
    lua_Integer k;
    if (first > LUA_MAXINTEGER - n) fail_at(D, D->p, "array index past the largest integer");
    k = first + n;
    if (!take_short_integer(D, t, k)) {
      decode_value(D);
      if (lua_isnil(D->L, -1))  /* a hole */
        lua_pop(D->L, 1);
      else
        lua_rawseti(D->L, t, k);
    }
    n++;
    if (D->p < D->end && *D->p == ',') D->p++; /* the usual case, before next_item's */
    else if (!next_item(D, ']')) return n;
  }
}

/* How many bytes of s[0..len) are ',', eight at a time. */
static lua_Integer count_commas(const char *s, size_t len) {
  const uint64_t ones = 0x0101010101010101ull, low7 = 0x7F7F7F7F7F7F7F7Full;
  lua_Integer count = 0;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t x, t;
    memcpy(&x, s + i, 8);
    t = x ^ (',' * ones); /* a comma becomes a zero byte */
    t = ~(((t & low7) + low7) | t | low7) >> 7; /* 1 in each byte that was a comma */
    count += (lua_Integer)((t * ones) >> 56);
  }
  for (; i < len; i++) count += s[i] == ',';
  return count;
}

/*
** How many more elements a long array holds, when up to its ']' it holds
** only numbers and words: one more than its commas. 'guess' when a
** string or container comes first, whose commas are not the array's.
** Long flat arrays of numbers are so made at their final size, not
** grown and copied many times.
*/
static lua_Integer elements_ahead(Decoder *D, lua_Integer guess) {
  size_t len = (size_t)(D->end - D->p);
  const char *close = memchr(D->p, ']', len);
  if (close == NULL) return guess;
  len = (size_t)(close - D->p);
  if (memchr(D->p, '"', len) || memchr(D->p, '[', len) || memchr(D->p, '{', len))
    return guess;
  return count_commas(D->p, len) + 1;
}

/* Replaces the n values on top of the stack by a table t[1..n] of them. */
static void collect_array(lua_State *L, int n, int size) {
  int t, i;
  lua_createtable(L, size, 0);
  lua_insert(L, -(n + 1));
  t = lua_gettop(L) - n;
  for (i = n; i >= 1; i--) {
    if (lua_isnil(L, -1))
      lua_pop(L, 1);
    else
      lua_rawseti(L, t, i);
  }
}

/*
** The values that may also be keys: strings, numbers (not NaN), true and
** false. Returns 0, having read nothing, for any other first character.
*/
static int decode_scalar(Decoder *D) {
  switch (*D->p) {
    case '"':
      decode_string(D);
      return 1;
    case 't':
      match_word(D, "true");
      lua_pushboolean(D->L, 1);
      return 1;
    case 'f':
      match_word(D, "false");
      lua_pushboolean(D->L, 0);
      return 1;
    case '-': case 'I':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
      decode_number(D);
      return 1;
    default:
      return 0;
  }
}

/* Keys keep their type. */
static void decode_key(Decoder *D) {
  skip_space(D);
  if (D->p == D->end || !decode_scalar(D)) fail_expected(D, D->p, "a key");
  skip_space(D);
  if (D->p == D->end || *D->p != ':') fail_expected(D, D->p, "':'");
  D->p++;
}

/* Replaces the n key-value pairs on top of the stack by a table of them. */
static void collect_object(lua_State *L, int n, int size) {
  int t, i;
  lua_createtable(L, 0, size);
  lua_insert(L, -(2 * n + 1));
  t = lua_gettop(L) - 2 * n;
  for (i = 0; i < n; i++) {  /* in order, so a repeated key keeps its last value */
    lua_pushvalue(L, t + 1 + 2 * i);
    lua_pushvalue(L, t + 2 + 2 * i);
    lua_rawset(L, t);
  }
  lua_settop(L, t);
}

static void decode_members(Decoder *D, int t) {
  do {
    decode_key(D);
    decode_value(D);
    lua_rawset(D->L, t);
  } while (next_item(D, '}'));
}

/*
** Replaces the n elements (or key-value pairs) on top of the stack by a
** table, sized for 'size' of them, then decodes the rest straight into it.
*/
static void collect_and_go_on(Decoder *D, int object, int n) {
  lua_Integer size;
  if (object) {
    collect_object(D->L, n, 2 * n);
    decode_members(D, lua_gettop(D->L));
    return;
  }
  size = n + elements_ahead(D, 3 * n);
  collect_array(D->L, n, size < INT_MAX ? (int)size : INT_MAX);
  decode_elements(D, lua_gettop(D->L), n + 1);
}

/*
** An array or, when 'close' is '}', an object. The first BATCH entries
** wait on the stack, so a small table is made at its exact size.
*/
static void decode_container(Decoder *D, char close) {
  int object = close == '}', n = 0;
  enter_container(D);
  if (D->p < D->end && *D->p == close) {
    D->p++;
    lua_createtable(D->L, 0, 0);
  } else {
    for (;;) {
      if (object) decode_key(D);
      decode_value(D);
      n++;
      if (!next_item(D, close)) {
        if (object) collect_object(D->L, n, n);
        else collect_array(D->L, n, n);
        break;
      }
      if (n == BATCH) {
        collect_and_go_on(D, object, n);
        break;
      }
    }
  }
  D->depth--;
}

static void decode_value(Decoder *D) {
  lua_State *L = D->L;
  skip_space(D);
  if (D->p == D->end) fail_expected(D, D->p, "a value");
  switch (*D->p) {
    case '[':
      decode_container(D, ']');
      break;
    case '{':
      decode_container(D, '}');
      break;
    case 'n':
      match_word(D, "null");
      lua_pushnil(L);
      break;
    case 'N':
      match_word(D, "NaN");
      lua_pushnumber(L, NAN);
      break;
    default:
      if (!decode_scalar(D)) fail_expected(D, D->p, "a value");
  }
}

static void expect_end(Decoder *D) {
  skip_space(D);
  if (D->p != D->end) fail_expected(D, D->p, "end of message");
}

void codec_decode(lua_State *L, const char *s, size_t len) {
  Decoder D = {L, s, s, s + len, 0};
  luaL_checkstack(L, 8, "cannot decode a message");
  decode_value(&D);
  expect_end(&D);
}

/*
** Moves the integer keys k of the table on top to t[first + k - 1], and
** pops it: a list with more holes than values comes as an object.
*/
static void move_indexed(lua_State *L, int t, lua_Integer first) {
  int from = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, from)) {
    if (lua_isinteger(L, -2)) lua_rawseti(L, t, first + lua_tointeger(L, -2) - 1);
    else lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/*
** The object's members go into the table on top, but the elements of the
** list member 'name' go into t from 'first' on.
*/
static void decode_members_into(Decoder *D, const char *name, int t, lua_Integer first) {
  int object = lua_gettop(D->L);
  do {
    decode_key(D);
    if (lua_type(D->L, -1) != LUA_TSTRING || strcmp(lua_tostring(D->L, -1), name) != 0) {
      decode_value(D);
      lua_rawset(D->L, object);
    } else if (D->p < D->end && *D->p == '[') {
      lua_pop(D->L, 1);
      enter_container(D);
      if (D->p < D->end && *D->p == ']') D->p++;
      else decode_elements(D, t, first);
      D->depth--;
    } else {
      lua_pop(D->L, 1);
      decode_value(D);
      if (lua_istable(D->L, -1)) move_indexed(D->L, t, first);
      else lua_pop(D->L, 1);
    }
  } while (next_item(D, '}'));
}

void codec_decode_member_into(lua_State *L, const char *name, int t, lua_Integer first,
                              const char *s, size_t len) {
  Decoder D = {L, s, s, s + len, 0};
  t = lua_absindex(L, t);
  luaL_checkstack(L, 8, "cannot decode a message");
  skip_space(&D);
  if (D.p == D.end || *D.p != '[') fail_expected(&D, D.p, "'['");
  enter_container(&D);
  skip_space(&D);
  if (D.p == D.end || *D.p != '{') fail_expected(&D, D.p, "'{'");
  enter_container(&D);
  lua_newtable(L);
  if (D.p < D.end && *D.p == '}') D.p++;
  else decode_members_into(&D, name, t, first);
  D.depth--;
  if (next_item(&D, ']')) fail_expected(&D, D.p, "']'"); /* a list of one */
  expect_end(&D);
}

lua_Integer codec_decode_into(lua_State *L, int t, lua_Integer first,
                              const char *s, size_t len) {
  Decoder D = {L, s, s, s + len, 0};
  lua_Integer n = 0;
  t = lua_absindex(L, t);
  skip_space(&D);
  if (D.p == D.end || *D.p != '[') fail_expected(&D, D.p, "'['");
  enter_container(&D);
  if (D.p < D.end && *D.p == ']')
    D.p++;
  else
    n = decode_elements(&D, t, first);
  expect_end(&D);
  return n;
}
