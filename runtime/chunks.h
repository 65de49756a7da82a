/* The Lua parts of the module (the .lua files in lualib/), compiled into the binary. */
#ifndef PARLUA_CHUNKS_H
#define PARLUA_CHUNKS_H

#include <stddef.h>

typedef struct LualibChunk {
  const char *name;      /* file name without .lua, e.g. "par" */
  const char *chunkname; /* for error messages and tracebacks */
  const char *source;
  size_t size;
} LualibChunk;

extern const LualibChunk lualib_chunks[]; /* ends with a NULL name */

#endif
