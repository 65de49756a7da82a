#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "buffer.h"

int buffer_reserve(Buffer *b, size_t extra) {
  size_t want, cap;
  char *p;
  if (b->cap - b->len >= extra) return 0;
  if (extra > ((size_t)-1) / 2 - b->len) return -1;
  want = b->len + extra;
  cap = b->cap ? b->cap : 256;
  while (cap < want) cap *= 2;
  p = par_realloc(b->data, b->cap, cap);
  if (p == NULL) return -1;
  b->data = p;
  b->cap = cap;
  return 0;
}

int buffer_append(Buffer *b, const void *p, size_t n) {
  if (buffer_reserve(b, n) != 0) return -1;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

void buffer_free(Buffer *b) {
  par_realloc(b->data, b->cap, 0);
  b->data = NULL;
  b->len = b->cap = 0;
}
