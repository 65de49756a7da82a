/*
** Memory for Lua states and par's buffers: ordinary malloc for small
** blocks; blocks of 4 MiB and more are mapped on their own and marked for
** transparent huge pages; parlua_alloc also puts malloc's heap on huge
** pages (see alloc.c).
*/
#ifndef PARLUA_ALLOC_H
#define PARLUA_ALLOC_H

#include <stddef.h>

/*
** Like realloc, given the block's current size (ignored when ptr is NULL);
** new_size 0 frees it and returns NULL. Returns NULL when out of memory,
** leaving the block as it was.
*/
void *par_realloc(void *ptr, size_t old_size, size_t new_size);

#endif
