/*
** tests/codec_test.c: tests of the wire codec (runtime/encode.c,
** runtime/decode.c and runtime/jsontext.c).
**
** A standalone program with its own small harness: each test is a C
** function, many of them running Lua snippets against encode/decode
** wrappers registered in a fresh state. It prints a FAIL line per failed
** check and closes with "N passed, M failed" (a test passes when all its
** checks do); the exit status is 1 if any test failed.
**
** cjson (Debian's lua-cjson) serves as an oracle for plain JSON values.
*/
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>  /* Lua's: its include directory comes before runtime/ */

#include "codec.h"

/* ------------------------------------------------------------------ */
/* harness */

static const char *current_test;
static int current_failures;

#define MAX_REPORTS 12  /* failures printed per test */

static void failf(const char *fmt, ...) {
  va_list ap;
  if (++current_failures > MAX_REPORTS) return;
  printf("FAIL %s: ", current_test);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
}

static void check_at(int ok, const char *what, const char *file, int line) {
  if (!ok) failf("%s (%s:%d)", what, file, line);
}

#define CHECK(cond) check_at((cond) != 0, #cond, __FILE__, __LINE__)

/* ------------------------------------------------------------------ */
/* a Lua state with encode, decode, decode_into, check and helpers */

/* encode(v [, root]) -> text | nil, message; checks the stack is balanced. */
static int l_encode(lua_State *L) {
  Buffer b = {NULL, 0, 0};
  char err[256] = "";
  const char *root = luaL_optstring(L, 2, "value");
  int top, status;
  lua_settop(L, 2);
  top = lua_gettop(L);
  status = codec_encode(L, 1, &b, root, err, sizeof err);
  if (lua_gettop(L) != top) failf("codec_encode left %d values on the stack", lua_gettop(L) - top);
  if (status == 0) {
    lua_pushlstring(L, b.data != NULL ? b.data : "", b.len);
  } else {
    if (b.len != 0) failf("codec_encode left output after an error");
    lua_pushnil(L);
    lua_pushstring(L, err);
  }
  buffer_free(&b);
  return status == 0 ? 1 : 2;
}

/* decode(text) -> value; raises on a bad message. */
static int l_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_settop(L, 1);
  codec_decode(L, s, len);
  if (lua_gettop(L) != 2) failf("codec_decode pushed %d values", lua_gettop(L) - 1);
  return 1;
}

/* decode_into(t, first, text) -> count */
static int l_decode_into(lua_State *L) {
  size_t len;
  const char *s;
  lua_Integer n;
  luaL_checktype(L, 1, LUA_TTABLE);
  s = luaL_checklstring(L, 3, &len);
  lua_settop(L, 3);
  n = codec_decode_into(L, 1, luaL_checkinteger(L, 2), s, len);
  if (lua_gettop(L) != 3) failf("codec_decode_into left %d values", lua_gettop(L) - 3);
  lua_pushinteger(L, n);
  return 1;
}

/* member_into(name, t, first, text) -> the object without its member; checks the stack. */
static int l_member_into(lua_State *L) {
  size_t len;
  const char *s;
  const char *name = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  s = luaL_checklstring(L, 4, &len);
  lua_settop(L, 4);
  codec_decode_member_into(L, name, 2, luaL_checkinteger(L, 3), s, len);
  if (lua_gettop(L) != 5) failf("codec_decode_member_into left %d values", lua_gettop(L) - 4);
  return 1;
}

/* check(cond, message) records a failure of the current test. */
static int l_check(lua_State *L) {
  if (!lua_toboolean(L, 1)) failf("%s", luaL_optstring(L, 2, "check failed"));
  return 0;
}

/* slice(list, first, count): codec_push_slice, as par.pool sends a map's ranges. */
static int l_slice(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  codec_push_slice(L, 1, luaL_checkinteger(L, 2), luaL_checkinteger(L, 3));
  return 1;
}

static const char *prelude =
  /* exact equality: types, math.type, floats bit for bit (NaN == NaN) */
  "function same(a, b)\n"
  "  if type(a) ~= type(b) then return false end\n"
  "  if type(a) == 'number' then\n"
  "    if math.type(a) ~= math.type(b) then return false end\n"
  "    if a ~= a then return b ~= b end\n"
  "    return string.pack('<n', a) == string.pack('<n', b)\n"
  "  end\n"
  "  if type(a) ~= 'table' then return a == b end\n"
  "  for k, v in pairs(a) do if not same(v, rawget(b, k)) then return false end end\n"
  "  for k in pairs(b) do if rawget(a, k) == nil then return false end end\n"
  "  return true\n"
  "end\n"
  "function roundtrip(v, label)\n"
  "  local s, err = encode(v)\n"
  "  if not s then check(false, label .. ': encode failed: ' .. tostring(err)) return end\n"
  "  local ok, back = pcall(decode, s)\n"
  "  if not ok then check(false, label .. ': decode failed: ' .. tostring(back) .. ' in ' .. s) return end\n"
  "  check(same(v, back), label .. ': round trip changed the value, text ' .. s)\n"
  "  return s\n"
  "end\n"
  "function expect_text(v, want, label)\n"
  "  local s, err = encode(v)\n"
  "  check(s == want, (label or want) .. ': got ' .. tostring(s or err))\n"
  "end\n"
  "function expect_encode_error(v, root, want)\n"
  "  local s, err = encode(v, root)\n"
  "  check(s == nil and err == want, 'want error ' .. want .. ', got ' .. tostring(s or err))\n"
  "end\n"
  "function expect_decode_error(text, want)\n"
  "  local ok, err = pcall(decode, text)\n"
  "  check(not ok and type(err) == 'string' and err:find(want, 1, true) ~= nil,\n"
  "        string.format('decode %q: want error containing %q, got %s', text, want,\n"
  "                      ok and 'success' or tostring(err)))\n"
  "end\n";

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_register(L, "encode", l_encode);
  lua_register(L, "decode", l_decode);
  lua_register(L, "decode_into", l_decode_into);
  lua_register(L, "slice", l_slice);
  lua_register(L, "member_into", l_member_into);
  lua_register(L, "check", l_check);
  if (luaL_dostring(L, prelude) != LUA_OK) {
    failf("prelude: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return L;
}

/* Runs Lua code in a fresh state; an error in the code fails the test. */
static void run_lua(const char *code) {
  lua_State *L = new_state();
  if (luaL_dostring(L, code) != LUA_OK) failf("Lua error: %s", lua_tostring(L, -1));
  lua_close(L);
}

/* Encodes the value at idx with root "value" into a NUL-terminated text. */
static int encode_text(lua_State *L, int idx, char *out, size_t size) {
  Buffer b = {NULL, 0, 0};
  char err[160];
  int status = codec_encode(L, idx, &b, "value", err, sizeof err);
  if (status == 0 && b.len < size) {
    memcpy(out, b.data, b.len);
    out[b.len] = '\0';
  } else {
    snprintf(out, size, "<error: %s>", status == 0 ? "too long" : err);
    status = -1;
  }
  buffer_free(&b);
  return status;
}

/* ------------------------------------------------------------------ */
/* a small deterministic PRNG (xorshift64*) */

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rng(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1Du;
}

static double double_of_bits(uint64_t bits) {
  double d;
  memcpy(&d, &bits, sizeof d);
  return d;
}

static uint64_t bits_of_double(double d) {
  uint64_t bits;
  memcpy(&bits, &d, sizeof bits);
  return bits;
}

/* ------------------------------------------------------------------ */
/* floats: exact and shortest */

/*
** Sets out to the closest p-digit decimal that reads back as d, if any:
** printf's correctly rounded one, or else a neighbour one unit away (at a
** power of two the gap below d is half the gap above, so the closest can
** fall outside while the next one up is inside). Returns 0 if none does.
*/
static int decimal_with_digits(double d, int p, char *out, size_t size) {
  char text[40];
  unsigned long long m = 0;
  int exp10, i;
  const char *c;
  static const int deltas[] = {0, -1, 1};
  snprintf(text, sizeof text, "%.*e", p - 1, d);
  for (c = text; *c != 'e'; c++)
    if (*c != '.') m = m * 10 + (unsigned long long)(*c - '0');
  exp10 = atoi(c + 1) - (p - 1);
  for (i = 0; i < 3; i++) {
    snprintf(out, size, "%llue%d", m + deltas[i], exp10);
    if (strtod(out, NULL) == d) return 1;
  }
  return 0;
}

/*
** The reference shortest form of a positive d: the fewest digits that can
** read back as d (this is monotone in the number of digits, so a binary
** search finds it), and the closest decimal with that many.
*/
static void shortest_reference(double d, char *out, size_t size) {
  int lo = 1, hi = 17;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (decimal_with_digits(d, mid, out, size)) hi = mid;
    else lo = mid + 1;
  }
  decimal_with_digits(d, lo, out, size);
}

/* The significant digits of a number's text (no leading or trailing zeros) and the exponent of the first one. */
static void significant_digits(const char *text, char *digits, int *exp10) {
  int n = 0, point = -1, seen_nonzero = 0, lead_zeros = 0, count = 0;
  const char *p = text;
  if (*p == '-') p++;
  for (; *p != '\0' && *p != 'e' && *p != 'E'; p++) {
    if (*p == '.') {
      point = count;
      continue;
    }
    count++;
    if (!seen_nonzero && *p == '0') {
      lead_zeros++;
      continue;
    }
    seen_nonzero = 1;
    digits[n++] = *p;
  }
  if (point < 0) point = count;
  while (n > 0 && digits[n - 1] == '0') n--;
  digits[n] = '\0';
  *exp10 = point - lead_zeros - 1 + (*p != '\0' ? atoi(p + 1) : 0);
}

/* Checks that d's text reads back bit for bit, is the shortest and the closest, and decodes to the same float. */
static void check_float_text(lua_State *L, double d) {
  char text[64], ref[64], digits[32], ref_digits[32];
  int exp10, ref_exp10;
  if (d == 0) return;  /* the reference has no digits for it */
  lua_pushnumber(L, d);
  if (encode_text(L, -1, text, sizeof text) != 0) {
    failf("%.17g: %s", d, text);
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  if (bits_of_double(strtod(text, NULL)) != bits_of_double(d)) {
    failf("%.17g (bits %016llx) encoded as %s, which reads back differently", d,
          (unsigned long long)bits_of_double(d), text);
    return;
  }
  if (strpbrk(text, ".e") == NULL) failf("%.17g encoded as %s: no '.' or exponent", d, text);
  shortest_reference(fabs(d), ref, sizeof ref);
  significant_digits(text, digits, &exp10);
  significant_digits(ref, ref_digits, &ref_exp10);
  if (strcmp(digits, ref_digits) != 0 || exp10 != ref_exp10)
    failf("%.17g encoded as %s, the shortest closest is %s", d, text, ref);
  codec_decode(L, text, strlen(text));
  if (!lua_isnumber(L, -1) || lua_isinteger(L, -1) ||
      bits_of_double(lua_tonumber(L, -1)) != bits_of_double(d))
    failf("%s decoded to a different value", text);
  lua_pop(L, 1);
}

static void test_float_texts(void) {
  run_lua(
    "expect_text(2.0, '2.0') expect_text(-0.0, '-0.0') expect_text(0.0, '0.0')\n"
    "expect_text(0.1, '0.1') expect_text(math.pi, '3.141592653589793')\n"
    "expect_text(1e308, '1e+308') expect_text(5e-324, '5e-324')\n"
    "expect_text(math.huge, 'Infinity') expect_text(-math.huge, '-Infinity')\n"
    "expect_text(0/0, 'NaN') expect_text(-(0/0), 'NaN')\n"
    "expect_text(100.0, '100.0') expect_text(1/3, '0.3333333333333333')\n"
    "expect_text(1e-05, '1e-05') expect_text(0.0001, '0.0001') expect_text(1.5e-7, '1.5e-07')\n"
    "expect_text(2^53, '9007199254740992.0') expect_text(1e16, '10000000000000000.0')\n"
    "expect_text(1e17, '1e+17') expect_text(2^63, '9.223372036854776e+18')\n"
    "expect_text(123456789.125, '123456789.125') expect_text(-2.5, '-2.5')\n"
    "expect_text(1.7976931348623157e308, '1.7976931348623157e+308')\n"
    "expect_text(2.2250738585072014e-308, '2.2250738585072014e-308')\n"
    "expect_text(0.30000000000000004, '0.30000000000000004')\n");
}

static void test_float_edge_round_trips(void) {
  run_lua(
    "for _, v in ipairs{0.0, -0.0, 0.1, math.pi, 1e308, 5e-324, -5e-324, math.huge,\n"
    "                   -math.huge, 2.0, -2.0, 2^53, 2^63, -2^63, 1e16, 1e17, 1e22, 1e23,\n"
    "                   1.7976931348623157e308, 2.2250738585072014e-308, 2.225073858507201e-308,\n"
    "                   4.9406564584124654e-324 * 3, 0.1 + 0.2, 1/3, 2/3, 1e-7, 123.456} do\n"
    "  roundtrip(v, string.format('%.17g', v))\n"
    "  roundtrip({v}, string.format('{%.17g}', v))\n"
    "end\n"
    "local nan = decode(encode(0/0))\n"
    "check(math.type(nan) == 'float' and nan ~= nan, 'NaN comes back as NaN')\n"
    "local t = decode(encode({1, 0/0, 3}))\n"
    "check(t[2] ~= t[2] and t[3] == 3, 'NaN inside an array')\n"
    "local z = decode(encode(-0.0))\n"
    "check(math.type(z) == 'float' and 1/z == -math.huge, '-0.0 keeps its sign')\n");
}

/* Many doubles, against the reference: every range and the fast path's. */
static void test_float_shortest(void) {
  lua_State *L = new_state();
  int i, e;
  for (i = 0; i < 40000; i++) {  /* any finite bit pattern */
    double d = double_of_bits(rng());
    if (isfinite(d)) check_float_text(L, d);
  }
  for (i = 0; i < 150000; i++) {  /* 2^-140 .. 2^60: Schubfach's table */
    uint64_t exponent = 1023 - 140 + rng() % 200;
    check_float_text(L, double_of_bits((exponent << 52) | (rng() >> 12)));
  }
  for (i = 1; i <= 100000; i++) {  /* typical data */
    check_float_text(L, i * 0.37);
    check_float_text(L, i / 7.0);
  }
  for (i = 0; i < 30000; i++) {  /* short decimals */
    double m = (double)(rng() % 10000000);
    check_float_text(L, m / 1000.0);
    check_float_text(L, m * 1e-9);
  }
  for (e = -1074; e <= 1023; e++) {  /* powers of two and their neighbours */
    double d = ldexp(1.0, e);
    check_float_text(L, d);
    check_float_text(L, nextafter(d, 0.0));
    check_float_text(L, nextafter(d, INFINITY));
  }
  check_float_text(L, DBL_MAX);
  check_float_text(L, DBL_MIN);
  check_float_text(L, DBL_TRUE_MIN);
  lua_close(L);
}

/* Numbers with many digits and big exponents decode like strtod. */
static void test_float_decode_exact(void) {
  lua_State *L = new_state();
  char text[80];
  int i;
  for (i = 0; i < 100000; i++) {
    int ndigits = 1 + (int)(rng() % 25), j, n = 0;
    int exp10 = (int)(rng() % 70) - 35;
    if (rng() % 2) text[n++] = '-';
    for (j = 0; j < ndigits; j++) {
      text[n++] = (char)((j == 0 ? '1' : '0') + rng() % (j == 0 ? 9 : 10));
      if (j == 0 && ndigits > 1 && rng() % 2) text[n++] = '.';
    }
    n += snprintf(text + n, sizeof text - n, "e%d", exp10);
    codec_decode(L, text, (size_t)n);
    if (lua_isinteger(L, -1) ||
        bits_of_double(lua_tonumber(L, -1)) != bits_of_double(strtod(text, NULL)))
      failf("%s decoded to %.17g, strtod says %.17g", text, lua_tonumber(L, -1),
            strtod(text, NULL));
    lua_pop(L, 1);
  }
  lua_close(L);
}

/* ------------------------------------------------------------------ */
/* integers and number types */

static void test_integers(void) {
  run_lua(
    "expect_text(math.maxinteger, '9223372036854775807')\n"
    "expect_text(math.mininteger, '-9223372036854775808')\n"
    "expect_text(0, '0') expect_text(-1, '-1') expect_text(10, '10') expect_text(99, '99')\n"
    "for _, v in ipairs{0, 1, -1, 9, 10, 99, 100, 12345, 2^53 // 1, 2^53 // 1 + 1,\n"
    "                   math.maxinteger, math.mininteger, math.mininteger + 1} do\n"
    "  roundtrip(v, tostring(v))\n"
    "end\n"
    "local p = 1\n"
    "for k = 0, 18 do -- each side of every power of ten, where the digit count changes\n"
    "  for _, v in ipairs{p - 1, p, p + 1, -(p - 1), -p, -(p + 1)} do\n"
    "    check(encode(v) == string.format('%d', v), 'integer text ' .. tostring(encode(v)) .. ' for ' .. v)\n"
    "  end\n"
    "  p = p * 10\n"
    "end\n"
    "math.randomseed(7)\n"
    "for i = 1, 20000 do\n"
    "  local v = math.random(math.mininteger, math.maxinteger) >> math.random(0, 63)\n"
    "  local s = roundtrip(v, tostring(v))\n"
    "  check(s == tostring(v), 'integer text ' .. tostring(s) .. ' for ' .. tostring(v))\n"
    "end\n");
}

static void test_number_types(void) {
  run_lua(
    "local v = {1, 1.0, 0, -0.0, 2^63, 3, 3.5, math.maxinteger, -2.0, 1e100}\n"
    "local back = decode(encode(v))\n"
    "local want = {'integer', 'float', 'integer', 'float', 'float', 'integer', 'float',\n"
    "              'integer', 'float', 'float'}\n"
    "for i = 1, #want do\n"
    "  check(math.type(back[i]) == want[i], 'element ' .. i .. ' is ' .. tostring(math.type(back[i])))\n"
    "end\n"
    "check(math.type(decode('-0')) == 'integer' and decode('-0') == 0, '-0 is integer 0')\n"
    "check(math.type(decode('-0.0')) == 'float' and 1/decode('-0.0') < 0, '-0.0 is float -0.0')\n"
    "check(math.type(decode('2.0')) == 'float', '2.0 is a float')\n"
    "check(math.type(decode('2')) == 'integer', '2 is an integer')\n"
    "check(math.type(decode('1e2')) == 'float' and decode('1e2') == 100, '1e2 is float 100')\n"
    "check(math.type(decode('1E+2')) == 'float' and decode('1E+2') == 100, '1E+2')\n"
    "check(decode('1.5e3') == 1500.0 and decode('-12.5E-1') == -1.25, 'exponents')\n"
    "check(decode('9223372036854775807') == math.maxinteger, 'max integer')\n"
    "check(decode('-9223372036854775808') == math.mininteger, 'min integer')\n"
    "local big = decode('9223372036854775808')\n"
    "check(math.type(big) == 'float' and big == 2^63, 'past max integer: float')\n"
    "local small = decode('-9223372036854775809')\n"
    "check(math.type(small) == 'float' and small == -2^63, 'past min integer: float')\n"
    "local huge = decode('123456789012345678901234567890')\n"
    "check(math.type(huge) == 'float' and huge == 1.2345678901234568e29, 'huge digits: float')\n"
    "local long = decode(string.rep('9', 400))\n"
    "check(long == math.huge, '400 nines overflow to inf')\n"
    "check(decode('1e999999') == math.huge and decode('-1e999999') == -math.huge, '1e999999 is inf')\n"
    "local tiny = decode('1e-999999')\n"
    "check(math.type(tiny) == 'float' and tiny == 0, '1e-999999 is 0.0')\n"
    "check(decode('0.' .. string.rep('0', 300) .. '1e300') == 0.1, 'long fraction')\n"
    "check(decode('Infinity') == math.huge and decode('-Infinity') == -math.huge, 'Infinity words')\n"
    "check(decode('NaN') ~= decode('NaN'), 'NaN word')\n");
}

/*
** Long arrays of integers take a short path: eight digits at a time, and
** the table made at the size its commas announce. Every digit count,
** both signs, the 18/19-digit border and bad leading zeros go through it.
*/
static void test_long_integer_arrays(void) {
  run_lua(
    "math.randomseed(11)\n"
    "local xs = {}\n"
    "for i = 1, 5000 do\n"
    "  local digits = i % 19 + 1\n"
    "  local v = math.random(0, math.maxinteger) % math.tointeger(10 ^ math.min(digits, 18))\n"
    "  if i % 3 == 0 then v = -v end\n"
    "  xs[i] = v\n"
    "end\n"
    "xs[#xs + 1] = math.maxinteger xs[#xs + 1] = math.mininteger\n"
    "xs[#xs + 1] = 123456789012345678 xs[#xs + 1] = 1234567890123456789\n"
    "local text = encode(xs)\n"
    "local back = decode(text)\n"
    "check(#back == #xs, 'length ' .. #back)\n"
    "for i = 1, #xs do\n"
    "  if back[i] ~= xs[i] or math.type(back[i]) ~= 'integer' then\n"
    "    check(false, 'element ' .. i .. ': ' .. tostring(back[i]) .. ' for ' .. xs[i]) break\n"
    "  end\n"
    "end\n"
    "local into = {}\n"
    "check(decode_into(into, 1, text) == #xs and same(into, xs), 'decode_into the same')\n"
    "local spaced = decode('[' .. string.rep('12345678 , ', 40) .. '9 ]')\n"
    "check(#spaced == 41 and spaced[40] == 12345678 and spaced[41] == 9, 'spaces between')\n"
    "local long = string.rep('1,', 30)\n"
    "for _, bad in ipairs{'[' .. long .. '01]', '[' .. long .. '00]', '[' .. long .. '-01]',\n"
    "                     '[' .. long .. '1-]', '[' .. long .. '1a]', '[' .. long .. '-]'} do\n"
    "  local ok, err = pcall(decode, bad)\n"
    "  check(not ok and err:find('bad message at byte', 1, true), bad:sub(60) .. ': ' .. tostring(err))\n"
    "end\n"
    "check(same(decode('[' .. long .. '-0]'), decode('[' .. long .. '0]')), '-0 is 0')\n"
    "local mixed = '[' .. long .. '\"a,b\",[1,2],{\"c\":3},true,null,2.5]'\n"
    "check(same(decode(mixed), {1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,\n"
    "                            'a,b', {1, 2}, {c = 3}, true, nil, 2.5}), 'commas inside strings and containers')\n"
    "local nested = decode('[[' .. long .. '7],[' .. long .. '8]]')\n"
    "check(#nested == 2 and #nested[1] == 31 and nested[2][31] == 8, 'nested long arrays')\n");
}

/* ------------------------------------------------------------------ */
/* strings */

static void test_strings(void) {
  run_lua(
    "expect_text('a\\0b', '\"a\\\\u0000b\"')\n"
    "expect_text('\\n\\t\\r\\b\\f', '\"\\\\n\\\\t\\\\r\\\\b\\\\f\"')\n"
    "expect_text('\\1\\31', '\"\\\\u0001\\\\u001f\"')\n"
    "expect_text('q\"b\\\\s/', '\"q\\\\\"b\\\\\\\\s/\"')\n"
    "expect_text('\\127\\128\\255', '\"\\127\\128\\255\"', 'DEL and high bytes raw')\n"
    "expect_text('', '\"\"')\n"
    "local all = {} for b = 0, 255 do all[#all + 1] = string.char(b) end\n"
    "all = table.concat(all)\n"
    "roundtrip(all, 'every byte')\n"
    "roundtrip(all:rep(3):reverse(), 'every byte reversed')\n"
    "roundtrip('\\xff\\xfe\\xc0\\x80\\xed\\xa0\\x80 invalid UTF-8', 'invalid UTF-8')\n"
    "roundtrip('h\\u{e9}llo \\u{65e5}\\u{672c} \\u{1F600}', 'UTF-8')\n"
    "roundtrip(('x'):rep(1000000), 'a long string')\n"
    "math.randomseed(3)\n"
    "local parts = {} for i = 1, 200000 do parts[i] = string.char(math.random(0, 255)) end\n"
    "roundtrip(table.concat(parts), 'random bytes')\n"
    "check(decode('\"\\\\u00e9\\\\u65E5\"') == '\\u{e9}\\u{65e5}', '\\\\u escapes')\n"
    "check(decode('\"\\\\ud83d\\\\ude00\"') == '\\u{1F600}', 'surrogate pair')\n"
    "check(decode('\"\\\\ud800x\"') == '\\xed\\xa0\\x80x', 'lone high surrogate')\n"
    "check(decode('\"\\\\udc00\"') == '\\xed\\xb0\\x80', 'lone low surrogate')\n"
    "check(decode('\"\\\\ud800\\\\u0041\"') == '\\xed\\xa0\\x80A', 'high surrogate then not a low one')\n"
    "check(decode('\"\\\\u0000\"') == '\\0', '\\\\u0000')\n"
    "check(decode('\"\\\\/\\\\\\\\\\\\\"\"') == '/\\\\\"', 'simple escapes')\n"
    "check(decode('\"\\127\\200\\255\"') == '\\127\\200\\255', 'raw bytes >= 0x7f accepted')\n");
}

/* The JSON text of a string, the slow and obvious way. */
static size_t reference_string_text(const char *s, size_t len, char *out) {
  size_t i, n = 0;
  out[n++] = '"';
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n"
                    : c == '\t' ? "\\t" : c == '\r' ? "\\r" : c == '\b' ? "\\b"
                    : c == '\f' ? "\\f" : NULL;
    if (esc != NULL) n += (size_t)sprintf(out + n, "%s", esc);
    else if (c < 0x20) n += (size_t)sprintf(out + n, "\\u%04x", c);
    else out[n++] = (char)c;
  }
  out[n++] = '"';
  return n;
}

/* One special byte at every position of strings of every length up to 40
   (the scanner looks at 8 bytes at a time). */
static void test_string_scanning(void) {
  static const unsigned char specials[] = {0, 1, 0x1f, '"', '\\', '\n', 0x20, '!', '#',
                                           '[', ']', 0x5b, 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xff};
  lua_State *L = new_state();
  char s[48], want[48 * 6 + 2], got[48 * 6 + 8];
  size_t len, pos, k;
  for (len = 1; len <= 40; len++) {
    for (pos = 0; pos < len; pos++) {
      for (k = 0; k < sizeof specials; k++) {
        size_t n;
        memset(s, 'a' + (int)(len % 26), len);
        s[pos] = (char)specials[k];
        n = reference_string_text(s, len, want);
        want[n] = '\0';
        lua_pushlstring(L, s, len);
        encode_text(L, -1, got, sizeof got);
        if (strcmp(got, want) != 0) failf("byte 0x%02x at %zu of %zu: %s", specials[k], pos, len, got);
        codec_decode(L, got, strlen(got));
        if (!lua_isstring(L, -1) || lua_rawlen(L, -1) != len || memcmp(lua_tostring(L, -1), s, len) != 0)
          failf("byte 0x%02x at %zu of %zu: decodes differently", specials[k], pos, len);
        lua_pop(L, 2);
      }
    }
  }
  lua_close(L);
}

/* ------------------------------------------------------------------ */
/* tables */

static void test_tables(void) {
  run_lua(
    "expect_text({}, '{}') expect_text({1, 2, 3}, '[1,2,3]')\n"
    "expect_text({{}, {{}}}, '[{},[{}]]')\n"
    "expect_text({1, nil, 3}, '[1,null,3]')\n"
    "expect_text({[1] = 1, [3] = 3}, '[1,null,3]')\n"
    "expect_text({[1] = 1, [4] = 4}, '[1,null,null,4]')\n"
    "expect_text({[2] = 'x'}, '[null,\"x\"]')\n"
    "expect_text({[5] = 'x'}, '{5:\"x\"}')\n"
    "expect_text({[1] = 1, [5] = 5}, '{1:1,5:5}')\n"
    "expect_text({[0] = 'z'}, '{0:\"z\"}')\n"
    "expect_text({[-1] = 'z'}, '{-1:\"z\"}')\n"
    "expect_text({a = 1}, '{\"a\":1}')\n"
    "local t = {} t[3] = 'c' t[2] = 'b' t[1] = 'a'\n"
    "expect_text(t, '[\"a\",\"b\",\"c\"]', 'built backwards')\n"
    "local u = {1, 2, 3} u.x = true\n"
    "roundtrip(u, 'array part and a string key')\n"
    "local s = encode(u)\n"
    "check(s:sub(1, 1) == '{', 'mixed table is an object: ' .. s)\n"
    "expect_text({1, 2, ['3'] = 3}, '{1:1,2:2,\"3\":3}', 'a string key that reads as the next index')\n"
    "expect_text({1, 2, [2.5] = 'x'}, '{1:1,2:2,2.5:\"x\"}', 'a float key after the elements')\n"
    "expect_text({1, 2, [4] = 4}, '[1,2,null,4]', 'an index past a hole')\n"
    "expect_text({1, 'two', true, {3}}, '[1,\"two\",true,[3]]', 'scalars, then a table')\n"
    "expect_text({1.5, -0.0, 'x'}, '[1.5,-0.0,\"x\"]', 'scalars that are not integers')\n"
    "local w = {} for i = 1, 100 do w[i] = i end w[50] = nil\n"
    "roundtrip(w, 'a hole in a long array')\n"
    "check(encode(w):find(',null,', 1, true), 'hole written as null')\n"
    "roundtrip({1, {2, {3, {4, {5}}}}, x = {y = {z = 'deep'}}}, 'nested')\n"
    "roundtrip({list = {1, 2.5, 'three', true, false}, map = {a = {}, b = {1}}}, 'mixed')\n"
    "local big = {} for i = 1, 5000 do big[i] = {id = i, name = 'n' .. i, v = i * 0.5} end\n"
    "roundtrip(big, 'many records')\n"
    "local wide = {} for i = 1, 300 do wide['k' .. i] = i end\n"
    "roundtrip(wide, 'a wide object')\n"
    "local shared = {1, 2}\n"
    "expect_text({shared, shared}, '[[1,2],[1,2]]', 'shared, not a cycle')\n"
    "local mt = setmetatable({}, {__index = function() return 1 end, __len = function() return 9 end})\n"
    "expect_text(mt, '{}', 'metatables are ignored')\n"
    "check(encode(nil) == 'null' and decode('null') == nil, 'top-level nil')\n"
    "expect_text(true, 'true') expect_text(false, 'false')\n"
    "check(decode('true') == true and decode('false') == false, 'booleans')\n"
    "check(same(decode(' [ 1 , { \"a\" : [ ] } ] \\n\\t\\r '), {1, {a = {}}}), 'whitespace')\n"
    "local d = decode('{\"a\":1,\"a\":2}')\n"
    "check(d.a == 2, 'a repeated key keeps its last value')\n"
    "local n = decode('{\"a\":null,\"b\":1}')\n"
    "check(n.a == nil and n.b == 1 and next(n, next(n)) == nil, 'null member is absent')\n"
    "local holes = decode('[null,2,null,null,5,null]')\n"
    "check(holes[1] == nil and holes[2] == 2 and holes[5] == 5 and holes[6] == nil, 'nulls are holes')\n");
}

static void test_typed_keys(void) {
  run_lua(
    "local t = {[1] = 'a', [2.5] = 'b', [true] = 'c', x = 1}\n"
    "roundtrip(t, 'typed keys')\n"
    "local s = encode(t)\n"
    "for _, part in ipairs{'1:\"a\"', '2.5:\"b\"', 'true:\"c\"', '\"x\":1'} do\n"
    "  check(s:find(part, 1, true), 'key text ' .. part .. ' in ' .. s)\n"
    "end\n"
    "roundtrip({[false] = 0, [-7] = 1, [math.huge] = 2, [-math.huge] = 3, [0.1] = 4,\n"
    "          [math.mininteger] = 5, [-0.5] = 6, ['1'] = 7, [1] = 8}, 'more typed keys')\n"
    "local back = decode(encode({['1'] = 'string', [1] = 'integer', [3] = 'x'}))\n"
    "check(back['1'] == 'string' and back[1] == 'integer', 'string \"1\" and integer 1 stay apart')\n"
    "check(same(decode('{1:\"a\",2.5:\"b\",true:\"c\",\"x\":1}'), {[1] = 'a', [2.5] = 'b', [true] = 'c', x = 1}), 'typed keys decode')\n"
    "check(decode('{2.0:1}')[2] == 1, 'an integral float key is an integer key, as in Lua')\n"
    "check(decode('{Infinity:1,-Infinity:2}')[math.huge] == 1, 'Infinity key')\n"
    "local q = {['a\"b'] = 1, ['\\0'] = 2, ['new\\nline'] = 3, [''] = 4, ['\\u{65e5}'] = 5}\n"
    "roundtrip(q, 'keys that need quoting')\n");
}

/* ------------------------------------------------------------------ */
/* encode errors */

static void test_encode_errors(void) {
  run_lua(
    "expect_encode_error({handlers = {1, print}}, 'result',\n"
    "  'cannot send a function (at result.handlers[2])')\n"
    "expect_encode_error(print, 'result', 'cannot send a function (at result)')\n"
    "expect_encode_error({f = io.stdout}, 'item', 'cannot send a userdata (at item.f)')\n"
    "expect_encode_error({co = coroutine.create(print)}, 'value',\n"
    "  'cannot send a thread (at value.co)')\n"
    "local a = {} a.self = a\n"
    "expect_encode_error({a = a}, 'result', 'cannot send a cycle (at result.a.self)')\n"
    "local r = {} r[1] = r\n"
    "expect_encode_error(r, 'result', 'cannot send a cycle (at result[1])')\n"
    "local x, y = {}, {} x.y = y y.list = {1, x}\n"
    "expect_encode_error(x, 'v', 'cannot send a cycle (at v.y.list[2])')\n"
    "expect_encode_error({['a b'] = {[1.5] = {[true] = {[-2] = print}}}}, 'result',\n"
    "  'cannot send a function (at result[\"a b\"][1.5][true][-2])')\n"
    "expect_encode_error({['q\"\\n'] = print}, 'r', 'cannot send a function (at r[\"q\\\\\"\\\\n\"])')\n"
    "expect_encode_error({['\\1'] = print}, 'r', 'cannot send a function (at r[\"\\\\001\"])')\n"
    "expect_encode_error({[math.huge] = print}, 'r', 'cannot send a function (at r[Infinity])')\n"
    "expect_encode_error({[false] = {_ok9 = print}}, 'r', 'cannot send a function (at r[false]._ok9)')\n"
    "expect_encode_error({[1] = 1, [3] = print}, 'r', 'cannot send a function (at r[3])')\n"
    "expect_encode_error({1, 2, print, 4}, 'r', 'cannot send a function (at r[3])')\n"
    "expect_encode_error({[{}] = 1}, 'r', 'cannot send a table key (at r)')\n"
    "expect_encode_error({k = {[print] = 1}}, 'r', 'cannot send a function key (at r.k)')\n"
    "expect_encode_error({[('k'):rep(100)] = print}, 'r', 'cannot send a function (at r...)')\n"
    "local long = {} local cur = long\n"
    "for i = 1, 40 do cur.abc = {} cur = cur.abc end cur.f = print\n"
    "local s, err = encode(long, 'result')\n"
    "check(s == nil and err:match('^cannot send a function %(at result%.abc%.abc.*%.%.%.%)$')\n"
    "      and #err < 100, 'a long path is cut: ' .. tostring(err))\n");
}

/* A slice is written as the array of its items, as a table of them would be. */
static void test_slices(void) {
  run_lua(
    "local list = {10, 20.5, 'x', {y = 1}, true, 60}\n"
    "expect_text(slice(list, 2, 3), '[20.5,\"x\",{\"y\":1}]')\n"
    "expect_text({a = slice(list, 5, 2)}, '{\"a\":[true,60]}', 'a slice inside a table')\n"
    "expect_text(slice(list, 1, 0), '[]', 'an empty slice')\n"
    "expect_text(slice({1, nil, 3}, 1, 3), '[1,null,3]', 'a hole is null')\n"
    "check(same(decode(encode(slice(list, 1, 6))), list), 'a whole slice round-trips as its list')\n"
    "expect_encode_error({a = slice({1, print, 3}, 2, 2)}, 'item',\n"
    "  'cannot send a function (at item.a[1])')\n"
    "local loop = {} loop[1] = {a = slice(loop, 1, 1)}\n"
    "expect_encode_error(loop, 'v', 'cannot send a cycle (at v[1].a)')\n"
    "check(getmetatable(slice(list, 1, 1)) == 'a slice of a list', 'its metatable is not handed out')\n");
}

static void test_encode_light_userdata(void) {
  lua_State *L = new_state();
  char text[200];
  lua_createtable(L, 1, 0);
  lua_pushlightuserdata(L, (void *)L);
  lua_rawseti(L, -2, 1);
  CHECK(encode_text(L, -1, text, sizeof text) != 0);
  CHECK(strcmp(text, "<error: cannot send a userdata (at value[1])>") == 0);
  lua_pop(L, 1);
  CHECK(lua_gettop(L) == 0);
  lua_close(L);
}

static void test_depth_limit(void) {
  run_lua(
    "local function nest(n) local t = {} local cur = t\n"
    "  for i = 2, n do cur[1] = {} cur = cur[1] end return t end\n"
    "local ok = nest(1000)\n"
    "local s = encode(ok)\n"
    "check(s ~= nil, '1000 levels can be sent')\n"
    "check(s and same(decode(s), ok), '1000 levels round trip')\n"
    "local text, err = encode(nest(1001), 'item')\n"
    "check(text == nil and err:match('^table nested deeper than 1000 levels %(at item%[1%]%[1%].*%.%.%.%)$')\n"
    "      and #err < 120, 'too deep: ' .. tostring(err))\n"
    "expect_decode_error(('['):rep(1001) .. (']'):rep(1001), 'nested deeper than 1000 levels')\n"
    "expect_decode_error(('['):rep(100000), 'bad message at byte 1001: nested deeper than 1000 levels')\n"
    "expect_decode_error(('{\"a\":'):rep(100000), 'nested deeper than 1000 levels')\n"
    "local deep = decode(('['):rep(1000) .. (']'):rep(1000))\n"
    "for i = 1, 999 do deep = deep[1] end\n"
    "check(type(deep) == 'table' and next(deep) == nil, '1000 levels decode')\n");
}

/* The stack and the buffer are left as they were, on success and on error. */
static void test_stack_and_buffer(void) {
  lua_State *L = new_state();
  Buffer b = {NULL, 0, 0};
  char err[128];
  int top;
  CHECK(luaL_dostring(L, "return {a = {1, 2, {b = 'c'}}, [2.5] = true}, "
                         "{ok = 1, bad = {print}}, 'x'") == LUA_OK);
  top = lua_gettop(L);
  CHECK(top == 3);
  CHECK(buffer_append(&b, "prefix:", 7) == 0);
  CHECK(codec_encode(L, -3, &b, "value", err, sizeof err) == 0);
  CHECK(lua_gettop(L) == top);
  CHECK(b.len > 7 && memcmp(b.data, "prefix:{", 8) == 0);
  {
    size_t len = b.len;
    CHECK(codec_encode(L, -2, &b, "result", err, sizeof err) == -1);
    CHECK(strcmp(err, "cannot send a function (at result.bad[1])") == 0);
    CHECK(lua_gettop(L) == top);
    CHECK(b.len == len);  /* nothing half-written */
    CHECK(codec_encode(L, 2, &b, "result", NULL, 0) == -1);  /* no room for a message */
    CHECK(codec_encode(L, 3, &b, "value", err, 8) == 0);
    CHECK(b.len == len + 3 && memcmp(b.data + len, "\"x\"", 3) == 0);
    CHECK(codec_encode(L, 2, &b, "result", err, 8) == -1);
    CHECK(strcmp(err, "cannot ") == 0);  /* truncated to errsize */
  }
  CHECK(lua_gettop(L) == top);
  buffer_free(&b);
  lua_close(L);
}

/* ------------------------------------------------------------------ */
/* decode errors */

static void test_decode_errors(void) {
  run_lua(
    "expect_decode_error('', 'bad message at byte 1: expected a value, found end of message')\n"
    "expect_decode_error('   ', 'bad message at byte 4: expected a value')\n"
    "expect_decode_error('[1,]', 'bad message at byte 4: expected a value, found \\']\\'')\n"
    "expect_decode_error('[1 2]', 'bad message at byte 4: expected \\',\\' or \\']\\', found \\'2\\'')\n"
    "expect_decode_error('{\"a\" 1}', 'bad message at byte 6: expected \\':\\'')\n"
    "expect_decode_error('{\"a\":1 \"b\":2}', 'expected \\',\\' or \\'}\\'')\n"
    "expect_decode_error('{,}', 'bad message at byte 2: expected a key')\n"
    "expect_decode_error('{null:1}', 'expected a key')\n"
    "expect_decode_error('{NaN:1}', 'expected a key')\n"
    "expect_decode_error('{[]:1}', 'expected a key')\n"
    "expect_decode_error('[,]', 'expected a value')\n"
    "expect_decode_error('1 2', 'bad message at byte 3: expected end of message, found \\'2\\'')\n"
    "expect_decode_error('[] []', 'expected end of message')\n"
    "expect_decode_error('nulll', 'expected end of message')\n"
    "expect_decode_error('truex', 'expected end of message')\n"
    "expect_decode_error('tru', 'bad message at byte 4: expected \\'true\\', found end of message')\n"
    "expect_decode_error('fals', 'expected \\'false\\'')\n"
    "expect_decode_error('nul', 'expected \\'null\\'')\n"
    "expect_decode_error('Inf', 'expected \\'Infinity\\'')\n"
    "expect_decode_error('-Inf', 'expected \\'Infinity\\'')\n"
    "expect_decode_error('nan', 'expected \\'null\\'')\n"
    "expect_decode_error('\\255', 'bad message at byte 1: expected a value, found byte 0xFF')\n"
    "expect_decode_error('@', 'expected a value, found \\'@\\'')\n"
    "expect_decode_error('\\0', 'found byte 0x00')\n"
    "expect_decode_error('[1]\\0', 'expected end of message, found byte 0x00')\n"
    /* numbers */
    "expect_decode_error('01', 'expected end of message')\n"
    "expect_decode_error('-01', 'expected end of message')\n"
    "expect_decode_error('1.', 'expected a digit after \\'.\\'')\n"
    "expect_decode_error('1.e5', 'expected a digit after \\'.\\'')\n"
    "expect_decode_error('.5', 'expected a value')\n"
    "expect_decode_error('+1', 'expected a value')\n"
    "expect_decode_error('-', 'expected a digit')\n"
    "expect_decode_error('--1', 'expected a digit')\n"
    "expect_decode_error('1e', 'expected a digit in the exponent')\n"
    "expect_decode_error('1e+', 'expected a digit in the exponent')\n"
    "expect_decode_error('0x10', 'expected end of message')\n"
    "expect_decode_error('1.5.5', 'expected end of message')\n"
    /* strings */
    "expect_decode_error('\"abc', 'bad message at byte 5: unterminated string')\n"
    "expect_decode_error('\"a\\\\', 'expected an escape')\n"
    "expect_decode_error('\"\\\\x\"', 'bad message at byte 3: expected an escape')\n"
    "expect_decode_error('\"\\\\U0041\"', 'expected an escape')\n"
    "expect_decode_error('\"\\\\u12\"', 'bad message at byte 2: bad \\\\u escape')\n"
    "expect_decode_error('\"\\\\u12G4\"', 'bad \\\\u escape')\n"
    "expect_decode_error('\"\\\\u', 'bad \\\\u escape')\n"
    "expect_decode_error('\"\\\\ud800\\\\u12\"', 'bad \\\\u escape')\n"
    "expect_decode_error('\"a\\nb\"', 'bad message at byte 3: raw control byte 0x0A in a string')\n"
    "expect_decode_error('\"\\1\"', 'raw control byte 0x01')\n"
    "expect_decode_error('\"\\31\"', 'raw control byte 0x1F')\n"
    "expect_decode_error('\"ab\\\\n\\t\"', 'raw control byte 0x09')\n"
    "expect_decode_error('{\"a\\0\":1}', 'raw control byte 0x00')\n");
}

/* Every proper prefix of a valid message is an error, never a crash. */
static void test_decode_truncated(void) {
  static const char *documents[] = {
    "[1,-2.5e-3,\"a\\u00e9\\ud83d\\ude00\\n\",true,false,null,{}]",
    "{\"a\":{\"b\":[1,2,{\"c\":null}]},1:\"x\",2.5:-Infinity,true:NaN,\"d\":-0.0}",
    "\"plain string\"",
    "[[[[[]]]],{\"k\":[\"v\",{\"w\":1e300}]}]",
    "{\"records\":[{\"id\":1,\"name\":\"user1\",\"score\":1.5,\"tags\":[\"a\",\"b\"]}]}",
  };
  lua_State *L = new_state();
  size_t d, cut;
  for (d = 0; d < sizeof documents / sizeof documents[0]; d++) {
    const char *doc = documents[d];
    size_t len = strlen(doc);
    lua_getglobal(L, "decode");
    lua_pushlstring(L, doc, len);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) failf("valid %s: %s", doc, lua_tostring(L, -1));
    lua_pop(L, 1);
    for (cut = 0; cut < len; cut++) {
      long at;
      lua_getglobal(L, "decode");
      lua_pushlstring(L, doc, cut);
      if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
        failf("%.*s (cut at %zu) decoded", (int)cut, doc, cut);
      } else if (sscanf(lua_tostring(L, -1), "bad message at byte %ld:", &at) != 1 ||
                 at < 1 || at > (long)cut + 1) {
        failf("%.*s: bad error %s", (int)cut, doc, lua_tostring(L, -1));
      }
      lua_pop(L, 1);
    }
  }
  CHECK(lua_gettop(L) == 0);
  lua_close(L);
}

/* Random damage to valid messages: a value or a "bad message" error. */
static void test_decode_mutations(void) {
  static const char doc[] =
    "{\"a\":[1,2.5,-3e7,\"s\\u0041\\n\"],\"b\":{\"c\":true,\"d\":null},7:false,\"e\":\"\\ud83d\\ude00\"}";
  static const char bytes[] = "[]{}\",:\\u0123456789.eE+-tfnaIN \n\x01\xff";
  lua_State *L = new_state();
  char text[sizeof doc + 4];
  int i;
  for (i = 0; i < 30000; i++) {
    size_t len = sizeof doc - 1;
    int k, edits = 1 + (int)(rng() % 3);
    memcpy(text, doc, len);
    for (k = 0; k < edits && len > 0; k++) {
      size_t at = rng() % len;
      switch (rng() % 3) {
        case 0: text[at] = bytes[rng() % (sizeof bytes - 1)]; break;
        case 1: memmove(text + at, text + at + 1, len - at - 1); len--; break;
        default: len = at; break;
      }
    }
    lua_getglobal(L, "decode");
    lua_pushlstring(L, text, len);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK &&
        strncmp(lua_tostring(L, -1), "bad message at byte ", 20) != 0)
      failf("%.*s: unexpected error %s", (int)len, text, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_close(L);
}

/* ------------------------------------------------------------------ */
/* decode_into */

/* A list of one object whose array member goes into a table: par.pool's ranges. */
static void test_decode_member_into(void) {
  run_lua(
    "local t = {'keep'}\n"
    "local rest = member_into('r', t, 3, '[{\"ns\":12,\"r\":[1,null,\"x\",{\"y\":[2]}],\"e\":{\"2\":1}}]')\n"
    "check(same(t, {'keep', nil, 1, nil, 'x', {y = {2}}}), 'elements at first.., t[1] untouched')\n"
    "check(same(rest, {ns = 12, e = {['2'] = 1}}), 'the other members, without r')\n"
    "check(same(member_into('r', t, 1, ' [ { } ] '), {}), 'an empty object')\n"
    "local u = {} check(same(member_into('r', u, 1, '[{\"r\":[]}]'), {}) and next(u) == nil, 'an empty array')\n"
    "check(same(member_into('r', u, 1, '[{\"r\":7}]'), {}) and next(u) == nil, 'a member that is no list is dropped')\n"
    "local h = {} check(same(member_into('r', h, 10, '[{\"r\":{1:5,8:6},\"ns\":1}]'), {ns = 1})\n"
    "      and same(h, {[10] = 5, [17] = 6}), 'a list sent as an object goes into place')\n"
    "for _, bad in ipairs{'', '[]', '{\"r\":[1]}', '[{\"r\":[1]},1]', '[{\"r\":[1]}', '[{\"r\":[1,]}]', '[1]'} do\n"
    "  local ok, err = pcall(member_into, 'r', {}, 1, bad)\n"
    "  check(not ok and err:find('bad message at byte', 1, true), 'member_into ' .. bad .. ': ' .. tostring(err))\n"
    "end\n");
}

static void test_decode_into(void) {
  run_lua(
    "local t = {}\n"
    "check(decode_into(t, 5, '[1,null,3]') == 3, 'count')\n"
    "check(t[5] == 1 and t[6] == nil and t[7] == 3 and next(t, next(t, next(t))) == nil,\n"
    "      'elements at first.. with a hole')\n"
    "local e = {keep = true}\n"
    "check(decode_into(e, 1, ' [ ] ') == 0 and e.keep and next(e, next(e)) == nil, 'empty array')\n"
    "local n = {'keep'}\n"
    "check(decode_into(n, 2, '[\"a\", {\"b\":[1,2.0]}, [], 7]') == 4, 'nested count')\n"
    "check(same(n, {'keep', 'a', {b = {1, 2.0}}, {}, 7}), 'nested values, t[1] untouched')\n"
    "local big, parts = {}, {} for i = 1, 1000 do parts[i] = tostring(i * 3) end\n"
    "check(decode_into(big, 1, '[' .. table.concat(parts, ',') .. ']') == 1000, 'long')\n"
    "check(#big == 1000 and big[1000] == 3000 and math.type(big[1]) == 'integer', 'long values')\n"
    "local far = {}\n"
    "check(decode_into(far, 2^40, '[true]') == 1 and far[2^40] == true, 'first far away')\n"
    "for _, bad in ipairs{'', '{}', '1', '[1,2', '[1] x', '[1,]', '\"[1]\"'} do\n"
    "  local ok, err = pcall(decode_into, {}, 1, bad)\n"
    "  check(not ok and err:find('bad message at byte', 1, true), 'decode_into ' .. bad .. ': ' .. tostring(err))\n"
    "end\n"
    "local ok, err = pcall(decode_into, {}, 1, ('['):rep(2000))\n"
    "check(not ok and err:find('nested deeper than 1000 levels', 1, true), 'decode_into depth')\n");
}

/* ------------------------------------------------------------------ */
/* cjson as an oracle for plain JSON */

static void test_cjson_oracle(void) {
  run_lua(
    "package.cpath = '/usr/lib/x86_64-linux-gnu/lua/5.4/?.so;' .. package.cpath\n"
    "local found, cjson = pcall(require, 'cjson')\n"
    "if not found then check(false, 'cjson is needed (apt-get install lua-cjson): ' .. tostring(cjson)) return end\n"
    /* equal by value: numbers by ==, cjson.null as nil */
    "local function same_value(a, b)\n"
    "  if a == cjson.null then a = nil end\n"
    "  if b == cjson.null then b = nil end\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  for k, v in pairs(a) do if not same_value(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "math.randomseed(11)\n"
    "local function random_string()\n"
    "  local n, c = math.random(0, 12), {}\n"
    "  for i = 1, n do c[i] = string.char(math.random(0, 255)) end\n"
    "  return table.concat(c)\n"
    "end\n"
    /* plain values: integers within 2^53, 14-digit floats, any bytes */
    "local function random_value(depth)\n"
    "  local kind = math.random(depth > 3 and 5 or 7)\n"
    "  if kind == 1 then return math.random(-2^53, 2^53)\n"
    "  elseif kind == 2 then return tonumber(string.format('%.14g', (math.random() - 0.5) * 10.0^math.random(-20, 20)))\n"
    "  elseif kind == 3 then return random_string()\n"
    "  elseif kind == 4 then return math.random(2) == 1\n"
    "  elseif kind == 5 then return math.random(-1000, 1000) + 0.0\n"
    "  elseif kind == 6 then local t = {} for i = 1, math.random(0, 5) do t[i] = random_value(depth + 1) end return t\n"
    "  else local t = {} for i = 1, math.random(0, 5) do t[random_string() .. 'k'] = random_value(depth + 1) end return t end\n"
    "end\n"
    "for i = 1, 3000 do\n"
    "  local v = random_value(0)\n"
    "  local ours = encode(v)\n"
    "  local ok, theirs = pcall(cjson.decode, ours)\n"
    "  check(ok and same_value(v, theirs), 'cjson reads our ' .. string.format('%q', ours) .. ': ' .. tostring(theirs))\n"
    /* cjson writes 14 digits: compare with what cjson reads, and with v when cjson is exact */
    "  local text = cjson.encode(v)\n"
    "  local ok2, back = pcall(decode, text)\n"
    "  local exact = same_value(cjson.decode(text), v)\n"
    "  check(ok2 and same_value(back, cjson.decode(text)) and (not exact or same_value(back, v)),\n"
    "        'we read cjson ' .. string.format('%q', text) .. ': ' .. tostring(back))\n"
    "end\n"
    /* exact floats: cjson parses our 17 digits back exactly */
    "for _, f in ipairs{0.1, math.pi, 1/3, 1e308, 5e-324, 2^-1074 * 12345, 1.7976931348623157e308, 0.1 + 0.2} do\n"
    "  check(cjson.decode(encode({f}))[1] == f, 'cjson reads our float ' .. encode(f))\n"
    "end\n"
    "local all = {} for b = 0, 255 do all[#all + 1] = string.char(b) end\n"
    "all = table.concat(all)\n"
    "check(cjson.decode(encode(all)) == all, 'cjson reads our every-byte string')\n"
    "check(decode(cjson.encode(all)) == all, 'we read cjson\\'s every-byte string')\n"
    "local recs = {} for i = 1, 1000 do recs[i] = {id = i, name = 'user' .. i, score = i * 1.5, tags = {'a', 'b'}} end\n"
    "check(same_value(cjson.decode(encode(recs)), recs), 'cjson reads our records')\n"
    "check(same_value(decode(cjson.encode(recs)), recs), 'we read cjson records')\n");
}

/* ------------------------------------------------------------------ */
/* locale */

/* Writes 'text' to dir/name; 0 on failure. */
static int write_file(const char *dir, const char *name, const char *text) {
  char path[256];
  FILE *f;
  int ok;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  if ((f = fopen(path, "w")) == NULL) return 0;
  ok = fputs(text, f) >= 0;
  return fclose(f) == 0 && ok;
}

/*
** Sets LC_NUMERIC to a locale with a decimal comma, built by localedef
** (from libc-bin) in 'dir' from a minimal definition, so no installed
** locale is needed. Returns 0 on failure.
*/
static int set_comma_locale(const char *dir) {
  char command[512];
  if (!write_file(dir, "comma.def",
                  "LC_NUMERIC\ndecimal_point \"<U002C>\"\nthousands_sep \"\"\n"
                  "grouping -1\nEND LC_NUMERIC\n") ||
      !write_file(dir, "comma.charmap",
                  "<code_set_name> COMMA\n<escape_char> /\n<mb_cur_min> 1\n"
                  "<mb_cur_max> 1\nCHARMAP\n<U002C> /x2c COMMA\n"
                  "<U002E> /x2e FULL STOP\nEND CHARMAP\n"))
    return 0;
  /* -c: the definition has no other categories, which localedef warns about */
  snprintf(command, sizeof command,
           "localedef -c -f %s/comma.charmap -i %s/comma.def %s/comma >/dev/null 2>&1",
           dir, dir, dir);
  if (system(command) == -1) return 0;
  setenv("LOCPATH", dir, 1);
  return setlocale(LC_NUMERIC, "comma") != NULL;
}

static void test_locale(void) {
  char dir[] = "/tmp/codec_test_locale.XXXXXX";
  char text[32], command[128];
  if (mkdtemp(dir) == NULL) {
    failf("cannot make a temporary directory");
    return;
  }
  if (set_comma_locale(dir)) {
    snprintf(text, sizeof text, "%.1f", 1.5);
    CHECK(strcmp(text, "1,5") == 0);  /* the locale is in force */
    run_lua(
      "expect_text(0.5, '0.5') expect_text(1e300, '1e+300') expect_text(5e-324, '5e-324')\n"
      "expect_text(math.pi, '3.141592653589793') expect_text(2.0, '2.0')\n"
      "check(tostring(1.5) == '1,5', 'Lua itself sees the decimal comma')\n"
      "for _, v in ipairs{0.1, math.pi, 1e300, 1.1099999999999999, 5e-324, 1e-300, 2^70} do\n"
      "  roundtrip(v, 'in a comma locale')\n"
      "end\n"
      "check(decode('1.1099999999999999') == 1.1099999999999999, 'slow decode path')\n"
      "check(decode('123456789012345678901234567890.5') == 1.2345678901234568e29, 'long')\n"
      "check(decode('0.5') == 0.5 and decode('2.5e-3') == 0.0025, 'fast decode path')\n");
    setlocale(LC_NUMERIC, "C");
  } else {
    failf("could not build a locale with a decimal comma (localedef)");
  }
  snprintf(command, sizeof command, "rm -rf %s", dir);
  if (system(command) != 0) failf("could not remove %s", dir);
}

/* ------------------------------------------------------------------ */

typedef struct Test {
  const char *name;
  void (*run)(void);
} Test;

static const Test tests[] = {
  {"float texts", test_float_texts},
  {"float edge round trips", test_float_edge_round_trips},
  {"floats are shortest and exact", test_float_shortest},
  {"float decoding is correctly rounded", test_float_decode_exact},
  {"integers", test_integers},
  {"number types", test_number_types},
  {"long integer arrays", test_long_integer_arrays},
  {"strings", test_strings},
  {"string scanning", test_string_scanning},
  {"tables", test_tables},
  {"typed keys", test_typed_keys},
  {"encode errors", test_encode_errors},
  {"light userdata", test_encode_light_userdata},
  {"slices of a list", test_slices},
  {"a member into a table", test_decode_member_into},
  {"depth limit", test_depth_limit},
  {"stack and buffer", test_stack_and_buffer},
  {"decode errors", test_decode_errors},
  {"truncated messages", test_decode_truncated},
  {"damaged messages", test_decode_mutations},
  {"decode_into", test_decode_into},
  {"cjson oracle", test_cjson_oracle},
  {"locale", test_locale},
};

int main(void) {
  int passed = 0, failed = 0;
  size_t i;
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    current_test = tests[i].name;
    current_failures = 0;
    tests[i].run();
    if (current_failures > MAX_REPORTS)
      printf("FAIL %s: ... %d failures in all\n", current_test, current_failures);
    if (current_failures == 0) passed++;
    else failed++;
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
