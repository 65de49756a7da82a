/*
** The text of single JSON values, shared by the encoder and the decoder:
** integers and floats written exactly (floats in the shortest form that
** reads back bit for bit, whatever the C locale), and which bytes of a
** string stand for themselves.
*/
#include <float.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsontext.h"

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

const uint64_t jsontext_powers_of_ten[20] = {
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
  return guess + (v >= jsontext_powers_of_ten[guess]);
}

/* Writes the four digits of r < 10^4, leading zeros included, at out. */
static void format_four_digits(char *out, uint32_t r) {
  uint32_t high = r / 100;
  memcpy(out, digit_pairs + 2 * high, 2);
  memcpy(out + 2, digit_pairs + 2 * (r - 100 * high), 2);
}

/* Writes the decimal digits of v to 'out' (no NUL); returns their count. */
static int format_uint(char *out, uint64_t v) {
  int len = decimal_length(v), i = len;
  uint32_t w;
  while (v > UINT32_MAX) { /* four digits at a time from the end */
    i -= 4;
    format_four_digits(out + i, (uint32_t)(v % 10000));
    v /= 10000;
  }
  w = (uint32_t)v; /* the rest in 32-bit arithmetic */
  while (w >= 10000) {
    uint32_t q = w / 10000;
    i -= 4;
    format_four_digits(out + i, w - 10000 * q);
    w = q;
  }
  if (w >= 100) {
    uint32_t q = w / 100;
    i -= 2;
    memcpy(out + i, digit_pairs + 2 * (w - 100 * q), 2);
    w = q;
  }
  if (w >= 10)
    memcpy(out, digit_pairs + 2 * w, 2);
  else
    out[0] = (char)('0' + w);
  return len;
}

int jsontext_integer(char *out, lua_Integer n) {
  if (n < 0) {
    /* negate in unsigned arithmetic so that the minimum integer works */
    out[0] = '-';
    return 1 + format_uint(out + 1, 0 - (uint64_t)n);
  }
  return format_uint(out, (uint64_t)n);
}

locale_t jsontext_c_locale(void) {
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
  locale_t old, c = jsontext_c_locale();
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


int jsontext_float(char *out, double d) {
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
const char jsontext_escape_of[256] = {
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

const char *jsontext_plain_run_end(const char *s, const char *end) {
  uint64_t x;
  while (end - s >= 8) {
    memcpy(&x, s, sizeof x);
    if (has_special_byte(x)) break;
    s += 8;
  }
  while (s < end && jsontext_escape_of[(unsigned char)*s] == 0) s++;
  return s;
}
