/* A growable byte buffer, the unit every encoder writes into. */
#ifndef PARLUA_BUFFER_H
#define PARLUA_BUFFER_H

#include <stddef.h>

typedef struct Buffer {
  char *data;
  size_t len;
  size_t cap;
} Buffer;

/* Make room for 'extra' more bytes; returns 0, or -1 when out of memory. */
int buffer_reserve(Buffer *b, size_t extra);
int buffer_append(Buffer *b, const void *p, size_t n);
void buffer_free(Buffer *b);

#endif
