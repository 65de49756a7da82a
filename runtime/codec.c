/*
** The wire codec: Lua values <-> JSON text (docs/wire.md).
**
** Exact for every value that can cross a process boundary: integers stay
** integers, floats come back bit for bit, strings byte for byte, and keys
** keep their type. Neither direction depends on the C locale.
**
** Encoding never raises a Lua error: it reports problems as a message
** naming the offending value by its path ("result.handlers[2]").
** Decoding raises "bad message at byte N: ..." and only ever allocates
** Lua objects, so an error cannot leak memory.
*/
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "codec.h"

/* ======================================================================
** Numbers
** ====================================================================== */

static const char digit_pairs[] =
  "00010203040506070809"
  "10111213141516171819"
  "20212223242526272829"
  "30313233343536373839"
  "40414243444546474849"
  "50515253545556575859"
  "60616263646566676869"
  "70717273747576777879"
  "80818283848586878889"
  "90919293949596979899";

static const uint64_t powers_of_ten[20] = {
  1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull,
  100000000ull, 1000000000ull, 10000000000ull, 100000000000ull,
  1000000000000ull, 10000000000000ull, 100000000000000ull,
  1000000000000000ull, 10000000000000000ull, 100000000000000000ull,
  1000000000000000000ull, 10000000000000000000ull,
};

/* The number of decimal digits of v: log10 from its bit length, then one compare. */
static int decimal_length(uint64_t v) {
  int bits = 64 - __builtin_clzll(v | 1), guess;
  if (v < 10) return 1;
  guess = (bits * 1233) >> 12; /* 1233 / 4096 is just over log10(2) */
  return guess + (v >= powers_of_ten[guess]);
}

/* The digits of w < 2^32 written backwards from out + end, two at a time. */
static void format_uint32_backwards(char *out, int end, uint32_t w) {
  while (w >= 100) {
    uint32_t q = w / 100;
    end -= 2;
    memcpy(out + end, digit_pairs + 2 * (w - 100 * q), 2);
    w = q;
  }
  if (w >= 10)
    memcpy(out + end - 2, digit_pairs + 2 * w, 2);
  else
    out[end - 1] = (char)('0' + w);
}

/* The eight digits of w < 10^8, leading zeros included, ending at out + end. */
static void format_eight_digits(char *out, int end, uint32_t w) {
  int i;
  for (i = 0; i < 4; i++) {
    uint32_t q = w / 100;
    end -= 2;
    memcpy(out + end, digit_pairs + 2 * (w - 100 * q), 2);
    w = q;
  }
}

/* Writes the decimal digits of v to 'out' (no NUL); returns their count. */
static int format_uint(char *out, uint64_t v) {
  int len = decimal_length(v), end = len;
  while (v > UINT32_MAX) { /* eight digits per 64-bit division, the rest in 32 bits */
    format_eight_digits(out, end, (uint32_t)(v % 100000000));
    v /= 100000000;
    end -= 8;
  }
  format_uint32_backwards(out, end, (uint32_t)v);
  return len;
}

int codec_format_integer(char *out, lua_Integer n) {
  if (n < 0) {
    /* negate in unsigned arithmetic so that the minimum integer works */
    out[0] = '-';
    return 1 + format_uint(out + 1, 0 - (uint64_t)n);
  }
  return format_uint(out, (uint64_t)n);
}

/* The C locale, so that '.' is the decimal point whatever LC_NUMERIC says. */
static locale_t c_locale(void) {
  static _Atomic(locale_t) cached = (locale_t)0;
  locale_t loc = atomic_load(&cached);
  if (loc == (locale_t)0) {
    locale_t fresh = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (fresh == (locale_t)0) return (locale_t)0;
    if (atomic_compare_exchange_strong(&cached, &loc, fresh))
      loc = fresh;
    else
      freelocale(fresh);  /* another thread got there first */
  }
  return loc;
}

typedef struct U128 {
  uint64_t hi, lo;
} U128;

/*
** 10^k scaled into [2^127, 2^128), for k = 0..55. These are exact (5^55 is
** the last power of 5 below 2^128), which is what Schubfach's proof asks
** of its table; doubles needing other powers take the printf path.
*/
static const U128 pow10_128[] = {
  {0x8000000000000000, 0x0000000000000000},
  {0xA000000000000000, 0x0000000000000000},
  {0xC800000000000000, 0x0000000000000000},
  {0xFA00000000000000, 0x0000000000000000},
  {0x9C40000000000000, 0x0000000000000000},
  {0xC350000000000000, 0x0000000000000000},
  {0xF424000000000000, 0x0000000000000000},
  {0x9896800000000000, 0x0000000000000000},
  {0xBEBC200000000000, 0x0000000000000000},
  {0xEE6B280000000000, 0x0000000000000000},
  {0x9502F90000000000, 0x0000000000000000},
  {0xBA43B74000000000, 0x0000000000000000},
  {0xE8D4A51000000000, 0x0000000000000000},
  {0x9184E72A00000000, 0x0000000000000000},
  {0xB5E620F480000000, 0x0000000000000000},
  {0xE35FA931A0000000, 0x0000000000000000},
  {0x8E1BC9BF04000000, 0x0000000000000000},
  {0xB1A2BC2EC5000000, 0x0000000000000000},
  {0xDE0B6B3A76400000, 0x0000000000000000},
  {0x8AC7230489E80000, 0x0000000000000000},
  {0xAD78EBC5AC620000, 0x0000000000000000},
  {0xD8D726B7177A8000, 0x0000000000000000},
  {0x878678326EAC9000, 0x0000000000000000},
  {0xA968163F0A57B400, 0x0000000000000000},
  {0xD3C21BCECCEDA100, 0x0000000000000000},
  {0x84595161401484A0, 0x0000000000000000},
  {0xA56FA5B99019A5C8, 0x0000000000000000},
  {0xCECB8F27F4200F3A, 0x0000000000000000},
  {0x813F3978F8940984, 0x4000000000000000},
  {0xA18F07D736B90BE5, 0x5000000000000000},
  {0xC9F2C9CD04674EDE, 0xA400000000000000},
  {0xFC6F7C4045812296, 0x4D00000000000000},
  {0x9DC5ADA82B70B59D, 0xF020000000000000},
  {0xC5371912364CE305, 0x6C28000000000000},
  {0xF684DF56C3E01BC6, 0xC732000000000000},
  {0x9A130B963A6C115C, 0x3C7F400000000000},
  {0xC097CE7BC90715B3, 0x4B9F100000000000},
  {0xF0BDC21ABB48DB20, 0x1E86D40000000000},
  {0x96769950B50D88F4, 0x1314448000000000},
  {0xBC143FA4E250EB31, 0x17D955A000000000},
  {0xEB194F8E1AE525FD, 0x5DCFAB0800000000},
  {0x92EFD1B8D0CF37BE, 0x5AA1CAE500000000},
  {0xB7ABC627050305AD, 0xF14A3D9E40000000},
  {0xE596B7B0C643C719, 0x6D9CCD05D0000000},
  {0x8F7E32CE7BEA5C6F, 0xE4820023A2000000},
  {0xB35DBF821AE4F38B, 0xDDA2802C8A800000},
  {0xE0352F62A19E306E, 0xD50B2037AD200000},
  {0x8C213D9DA502DE45, 0x4526F422CC340000},
  {0xAF298D050E4395D6, 0x9670B12B7F410000},
  {0xDAF3F04651D47B4C, 0x3C0CDD765F114000},
  {0x88D8762BF324CD0F, 0xA5880A69FB6AC800},
  {0xAB0E93B6EFEE0053, 0x8EEA0D047A457A00},
  {0xD5D238A4ABE98068, 0x72A4904598D6D880},
  {0x85A36366EB71F041, 0x47A6DA2B7F864750},
  {0xA70C3C40A64E6C51, 0x999090B65F67D924},
  {0xD0CF4B50CFE20765, 0xFFF4B4E3F741CF6D},
};

#define POW10_128_MAX ((int)(sizeof pow10_128 / sizeof pow10_128[0]) - 1)

/* The 128-bit product a * b, split in halves. */
static U128 mul_64x64(uint64_t a, uint64_t b) {
  U128 r;
#if defined(__SIZEOF_INT128__)
  unsigned __int128 p = (unsigned __int128)a * b;
  r.hi = (uint64_t)(p >> 64);
  r.lo = (uint64_t)p;
#else
  uint64_t a0 = (uint32_t)a, a1 = a >> 32, b0 = (uint32_t)b, b1 = b >> 32;
  uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
  uint64_t mid = p10 + (p00 >> 32) + (uint32_t)p01;
  r.hi = p11 + (mid >> 32) + (p01 >> 32);
  r.lo = (mid << 32) | (uint32_t)p00;
#endif
  return r;
}

/* (g * cp) >> 127, rounded to odd: the low bit is set if any bit was lost. */
static uint64_t round_to_odd(U128 g, uint64_t cp) {
  uint64_t x = mul_64x64(g.lo, cp).hi;
  U128 y = mul_64x64(g.hi, cp);
  y.lo += x;
  y.hi += y.lo < x;
  return (y.hi << 1) | (y.lo >> 63) | (y.lo != 0);
}

/*
** Schubfach (R. Giulietti, "The Schubfach way to render doubles"): sets
** digits * 10^exponent to the shortest decimal that reads back as the
** positive normal double d, the closest one when there are several.
** Returns 0 when d is outside what pow10_128 covers (about 7e-40 to 7e16).
*/
static int schubfach(double d, uint64_t *digits, int *exponent) {
  uint64_t bits, fraction, c, s;
  uint64_t vbl, vb, vbr, lower, upper;
  int biased, q, k, h, closer, even, u_inside, w_inside;
  memcpy(&bits, &d, sizeof bits);
  fraction = bits & ((UINT64_C(1) << 52) - 1);
  biased = (int)(bits >> 52);
  c = fraction | (UINT64_C(1) << 52);
  q = biased - 1075;  /* d = c * 2^q */
  /* at a power of two the gap below d is half the gap above it */
  closer = fraction == 0 && biased > 1;
  /* k = floor(log10(2^q)), or floor(log10(3/4 * 2^q)) when 'closer' */
  k = (q * 1262611 - (closer ? 524031 : 0)) >> 22;
  if (k > 0 || -k > POW10_128_MAX) return 0;
  h = q + ((-k * 1741647) >> 19);  /* q + floor(log2(10^-k)): 0..3 */
  vbl = round_to_odd(pow10_128[-k], (4 * c - 2 + closer) << h);
  vb = round_to_odd(pow10_128[-k], (4 * c) << h);
  vbr = round_to_odd(pow10_128[-k], (4 * c + 2) << h);
  even = (c & 1) == 0;  /* round-half-even reads the bounds back as d */
  lower = vbl + !even;
  upper = vbr - !even;
  s = vb / 4;
  if (s >= 10) {  /* at most one multiple of 10^(k+1) fits: the shortest */
    uint64_t sp = s / 10;
    int up_inside = lower <= 40 * sp, wp_inside = 40 * sp + 40 <= upper;
    if (up_inside != wp_inside) {
      *digits = sp + wp_inside;
      *exponent = k + 1;
      return 1;
    }
  }
  u_inside = lower <= 4 * s;
  w_inside = 4 * s + 4 <= upper;
  if (u_inside != w_inside) {
    *digits = s + w_inside;
    *exponent = k;
    return 1;
  }
  *digits = s + (vb > 4 * s + 2 || (vb == 4 * s + 2 && (s & 1)));
  *exponent = k;
  return 1;
}

/*
** The slow path, for doubles Schubfach's table does not reach: the first
** of printf's correctly rounded 15, 16, 17 digit forms that reads back as
** d (from 1 digit for subnormals, whose precision is lower), or the next
** decimal up from it (see 'closer'). Sets 'point' and returns the number
** of digits, or -1 when out of memory.
*/
static int printf_digits(double d, char *digits, int *point) {
  char text[40];
  const char *p;
  uint64_t bits, m;
  int n, exp10, closer, precision = d < DBL_MIN ? 1 : 15;
  locale_t old, c = c_locale();
  if (c == (locale_t)0) return -1;
  memcpy(&bits, &d, sizeof bits);
  closer = (bits & ((UINT64_C(1) << 52) - 1)) == 0 && (bits >> 52) > 1;
  old = uselocale(c);
  for (;; precision++) {
    snprintf(text, sizeof text, "%.*e", precision - 1, d);  /* "d.ddde+XX" */
    for (m = 0, p = text; *p != 'e'; p++)
      if (*p != '.') m = m * 10 + (uint64_t)(*p - '0');
    exp10 = atoi(p + 1) - (precision - 1);  /* of the last digit */
    if (precision == 17 || strtod_l(text, NULL, c) == d) break;
    if (closer) {
      /* at a power of two the gap above d is twice the gap below, so the
         next decimal up may read back as d when the closest one does not */
      snprintf(text, sizeof text, "%" PRIu64 "e%d", m + 1, exp10);
      if (strtod_l(text, NULL, c) == d) {
        m++;
        break;
      }
    }
  }
  uselocale(old);
  while (m % 10 == 0) {
    m /= 10;
    exp10++;
  }
  n = format_uint(digits, m);
  *point = n + exp10;
  return n;
}

/*
** Writes digits[0..n) with the decimal point after 'point' of them,
** choosing like %.17g between fixed and exponent notation, but always
** with a '.' or an exponent so that the text reads back as a float.
*/
static int place_point(char *out, const char *digits, int n, int point) {
  char *p = out;
  int exp10 = point - 1;
  if (exp10 < -4 || exp10 >= 17) {  /* d.ddde+XX */
    *p++ = digits[0];
    if (n > 1) {
      *p++ = '.';
      memcpy(p, digits + 1, n - 1);
      p += n - 1;
    }
    *p++ = 'e';
    *p++ = exp10 < 0 ? '-' : '+';
    if (exp10 < 0) exp10 = -exp10;
    if (exp10 < 10) *p++ = '0';
    p += format_uint(p, (uint64_t)exp10);
  } else if (point <= 0) {  /* 0.000ddd */
    *p++ = '0';
    *p++ = '.';
    memset(p, '0', -point);
    p += -point;
    memcpy(p, digits, n);
    p += n;
  } else if (point >= n) {  /* ddd000.0 */
    memcpy(p, digits, n);
    p += n;
    memset(p, '0', point - n);
    p += point - n;
    *p++ = '.';
    *p++ = '0';
  } else {  /* ddd.ddd */
    memcpy(p, digits, point);
    p += point;
    *p++ = '.';
    memcpy(p, digits + point, n - point);
    p += n - point;
  }
  return (int)(p - out);
}

#define FLOAT_TEXT_MAX 32  /* "-d.dddddddddddddddde-XXX" and friends */

/*
** Writes the shortest text that reads back as exactly d, with a '.' or an
** exponent (or Infinity, -Infinity, NaN). Returns its length, or -1 when
** out of memory.
*/
static int format_float(char *out, double d) {
  char digits[24];
  char *p = out;
  uint64_t m;
  int n, e, point;
  if (isnan(d)) {
    memcpy(out, "NaN", 3);
    return 3;
  }
  if (signbit(d)) {
    *p++ = '-';
    d = -d;
  }
  if (isinf(d)) {
    memcpy(p, "Infinity", 8);
    return (int)(p - out) + 8;
  }
  if (d < 9007199254740992.0 && d == (double)(uint64_t)d) {
    /* integral and exact as an integer: the common fast case, and 0 */
    p += format_uint(p, (uint64_t)d);
    memcpy(p, ".0", 2);
    return (int)(p - out) + 2;
  }
  if (schubfach(d, &m, &e)) {
    while (m % 10 == 0) {
      m /= 10;
      e++;
    }
    n = format_uint(digits, m);
    point = n + e;
  } else {
    n = printf_digits(d, digits, &point);
    if (n < 0) return -1;
  }
  return (int)(p - out) + place_point(p, digits, n, point);
}

/* ======================================================================
** Strings
** ====================================================================== */

/*
** How each byte goes into a JSON string: 0 as itself, 'u' as \u00XX,
** anything else as a backslash and that letter. Bytes >= 0x80 pass raw, so
** any byte string survives (and valid UTF-8 stays plain JSON).
*/
static const char escape_of[256] = {
  'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
  'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
  0, 0, '"', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '\\', 0, 0, 0,
};

/*
** Whether any of the 8 bytes in x is below 0x20, a '"' or a '\\'. For
** n <= 0x80, (x - n * 0x0101..) & ~x & 0x8080.. is nonzero exactly when
** some byte of x is below n; a byte equal to c is a zero byte, below 1, of
** x ^ (c * 0x0101..).
*/
static int has_special_byte(uint64_t x) {
  const uint64_t ones = UINT64_C(0x0101010101010101);
  const uint64_t highs = UINT64_C(0x8080808080808080);
  uint64_t quote = x ^ (ones * '"'), backslash = x ^ (ones * '\\');
  uint64_t found = ((x - ones * 0x20) & ~x) | ((quote - ones) & ~quote) |
                   ((backslash - ones) & ~backslash);
  return (found & highs) != 0;
}

/* The end of the run from s of bytes that stand for themselves in a JSON string. */
static const char *plain_run_end(const char *s, const char *end) {
  uint64_t x;
  while (end - s >= 8) {
    memcpy(&x, s, sizeof x);
    if (has_special_byte(x)) break;
    s += 8;
  }
  while (s < end && escape_of[(unsigned char)*s] == 0) s++;
  return s;
}

/* ======================================================================
** Encoder
** ====================================================================== */

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
  char num[FLOAT_TEXT_MAX];
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
        n = codec_format_integer(num, lua_tointeger(L, step->key_slot));
      else
        n = format_float(num, lua_tonumber(L, step->key_slot));
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
    s = plain_run_end(s, end);
    memcpy(out, run, s - run);
    out += s - run;
    if (s == end) break;
    e->b->len = out - e->b->data;
    if (reserve(e, (size_t)(end - s) + 6 + 1) != 0) return -1;
    out = e->b->data + e->b->len;
    esc = escape_of[(unsigned char)*s];
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
  if (reserve(e, FLOAT_TEXT_MAX) != 0) return -1;
  out = e->b->data + e->b->len;
  if (lua_isinteger(e->L, idx))
    n = codec_format_integer(out, lua_tointeger(e->L, idx));
  else if ((n = format_float(out, lua_tonumber(e->L, idx))) < 0)
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

static int encode_array(Encoder *e, int idx, lua_Integer n, PathStep *step) {
  lua_State *L = e->L;
  int base = lua_gettop(L);
  lua_Integer i;
  step->key_slot = 0;
  if (!lua_checkstack(L, POP_BATCH)) return fail(e, e->depth, "Lua stack overflow");
  if (put_char(e, '[') != 0) return -1;
  for (i = 1; i <= n; i++) {
    step->index = i;
    if (i % POP_BATCH == 0) lua_settop(L, base); /* one pop for many elements */
    if (lua_rawgeti(L, idx, i) == LUA_TNUMBER && lua_isinteger(L, -1)) {
      /* the common element of big results, kept short */
      if (reserve(e, FLOAT_TEXT_MAX + 1) != 0) return -1;
      if (i > 1) e->b->data[e->b->len++] = ',';
      e->b->len += codec_format_integer(e->b->data + e->b->len, lua_tointeger(L, -1));
    } else {
      if (i > 1 && put_char(e, ',') != 0) return -1;
      if (encode_value(e, lua_gettop(L)) != 0) return -1;
    }
  }
  lua_settop(L, base);
  return put_char(e, ']');
}

/*
** Arrays are checked first and then written with rawgeti, rather than
** written while checked: undoing a wrong guess would encode the values
** again, at every level of nesting.
*/
static int encode_table_contents(Encoder *e, int idx, PathStep *step) {
  lua_Integer n = array_length(e->L, idx);
  if (n == 0) return put(e, "{}", 2);
  if (n > 0) return encode_array(e, idx, n, step);
  lua_pushnil(e->L);
  lua_next(e->L, idx);
  return encode_object(e, idx, step);
}

static int encode_table(Encoder *e, int idx) {
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
  status = encode_table_contents(e, idx, &e->path[e->depth - 1]);
  e->depth--;
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
      return encode_table(e, idx);
    case LUA_TFUNCTION:
      return fail(e, e->depth, "cannot send a function");
    case LUA_TTHREAD:
      return fail(e, e->depth, "cannot send a thread");
    default:  /* full and light userdata */
      return fail(e, e->depth, "cannot send a userdata");
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

/* ======================================================================
** Decoder
** ====================================================================== */

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
  locale_t c = c_locale();
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
    const char *p = plain_run_end(D->p, D->end);
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
  const char *s = ++D->p, *p = plain_run_end(s, D->end);
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
    v = v * powers_of_ten[n] + leading_digits_value(x, n);
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

static void decode_array(Decoder *D) {
  int n = 0;
  enter_container(D);
  if (D->p < D->end && *D->p == ']') {
    D->p++;
    lua_createtable(D->L, 0, 0);
  } else {
    for (;;) {
      decode_value(D);
      n++;
      if (!next_item(D, ']')) {
        collect_array(D->L, n, n);
        break;
      }
      if (n == BATCH) {
        lua_Integer size = n + elements_ahead(D, 3 * n);
        collect_array(D->L, n, size < INT_MAX ? (int)size : INT_MAX);
        decode_elements(D, lua_gettop(D->L), n + 1);
        break;
      }
    }
  }
  D->depth--;
}

/* Keys keep their type: strings, numbers (not NaN), true and false. */
static void decode_key(Decoder *D) {
  skip_space(D);
  if (D->p == D->end) fail_expected(D, D->p, "a key");
  switch (*D->p) {
    case '"':
      decode_string(D);
      break;
    case 't':
      match_word(D, "true");
      lua_pushboolean(D->L, 1);
      break;
    case 'f':
      match_word(D, "false");
      lua_pushboolean(D->L, 0);
      break;
    case '-': case 'I':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
      decode_number(D);
      break;
    default:
      fail_expected(D, D->p, "a key");
  }
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

static void decode_object(Decoder *D) {
  int n = 0;
  enter_container(D);
  if (D->p < D->end && *D->p == '}') {
    D->p++;
    lua_createtable(D->L, 0, 0);
  } else {
    for (;;) {
      decode_key(D);
      decode_value(D);
      n++;
      if (!next_item(D, '}')) {
        collect_object(D->L, n, n);
        break;
      }
      if (n == BATCH) {
        collect_object(D->L, n, 2 * n);
        decode_members(D, lua_gettop(D->L));
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
    case '"':
      decode_string(D);
      break;
    case '[':
      decode_array(D);
      break;
    case '{':
      decode_object(D);
      break;
    case 't':
      match_word(D, "true");
      lua_pushboolean(L, 1);
      break;
    case 'f':
      match_word(D, "false");
      lua_pushboolean(L, 0);
      break;
    case 'n':
      match_word(D, "null");
      lua_pushnil(L);
      break;
    case 'N':
      match_word(D, "NaN");
      lua_pushnumber(L, NAN);
      break;
    case '-': case 'I':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
      decode_number(D);
      break;
    default:
      fail_expected(D, D->p, "a value");
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
