/* The fuzz targets' check: a failed property prints where and why, then aborts,
   so libFuzzer saves the input. */
#ifndef FUZZ_CHECK_H
#define FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond, ...)                                       \
  do {                                                              \
    if (!(cond)) {                                                  \
      fprintf(stderr, "fuzz check failed at %s:%d: %s\n  ", __FILE__, \
              __LINE__, #cond);                                     \
      fprintf(stderr, __VA_ARGS__);                                 \
      fprintf(stderr, "\n");                                        \
      abort();                                                      \
    }                                                               \
  } while (0)

#endif
