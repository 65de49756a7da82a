/*
** The text of single JSON values, shared by the encoder (encode.c) and
** the decoder (decode.c): exact numbers, and the bytes a string escapes.
*/
#ifndef PARLUA_JSONTEXT_H
#define PARLUA_JSONTEXT_H

#include <locale.h>
#include <stdint.h>

#include <lua.h>

/* The longest text jsontext_integer writes: "-9223372036854775808". */
#define JSONTEXT_INTEGER_MAX 20

/* The longest text of any number: "-d.dddddddddddddddde-XXX" and friends. */
#define JSONTEXT_NUMBER_MAX 32

/* 10^0 .. 10^19, every power of ten a uint64_t holds. */
extern const uint64_t jsontext_powers_of_ten[20];

/* Writes the decimal text of n (no NUL) to out; returns its length. */
int jsontext_integer(char *out, lua_Integer n);

/*
** Writes the shortest text that reads back as exactly d, with a '.' or an
** exponent (or Infinity, -Infinity, NaN). Returns its length, or -1 when
** out of memory.
*/
int jsontext_float(char *out, double d);

/* The C locale, so that '.' is the decimal point whatever LC_NUMERIC says; 0 if none. */
locale_t jsontext_c_locale(void);

/*
** How each byte goes into a JSON string: 0 as itself, 'u' as \u00XX,
** anything else as a backslash and that letter.
*/
extern const char jsontext_escape_of[256];

/* The end of the run from s of bytes that stand for themselves in a JSON string. */
const char *jsontext_plain_run_end(const char *s, const char *end);

#endif
