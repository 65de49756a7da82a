/*
** A hash table or a list of byte strings in one shared mapping (shm.h),
** for par.dict and par.list. No Lua here.
**
** The mapping is reserved at its full size and its pages are taken only
** as they are first written, so the table grows on demand up to that size
** without ever moving. One robust mutex guards it. Every write publishes
** its change with one 8-byte store, after which it frees what it replaced;
** a process killed in the middle leaves a mark that makes the next locker
** rebuild the counts and the free lists from what was published.
*/
#ifndef PARLUA_SHMTABLE_H
#define PARLUA_SHMTABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct ShmTable ShmTable;

/* Keys and values are at most this long. */
#define SHMTABLE_MAX_BYTES ((size_t)UINT32_MAX)

/* The least size a table's mapping may have. */
#define SHMTABLE_MIN_SIZE ((size_t)4096)

typedef struct ShmBytes {
  const char *data;
  size_t len;
} ShmBytes;

/* Reserves a mapping of size bytes and makes an empty table in it; NULL with errno set. */
ShmTable *shmtable_new(size_t size);
void shmtable_free(ShmTable *t, size_t size);

/*
** Returns 0 once this process holds t, repaired if a holder died in a
** write; EDEADLK when this process holds it already; EINTR with *sig on
** SIGINT or SIGTERM.
*/
int shmtable_lock(ShmTable *t, int *sig);
void shmtable_unlock(ShmTable *t);

/* All below with the lock held. ENOSPC means the table is full (and unchanged). */

/* A dict's keys; a list's elements. */
uint64_t shmtable_count(ShmTable *t);
uint64_t shmtable_length(ShmTable *t);

/* 1 and the value of key (valid until the next write), or 0. */
int shmtable_get(ShmTable *t, ShmBytes key, ShmBytes *value);

/* Stores value under key; 0 or ENOSPC. */
int shmtable_put(ShmTable *t, ShmBytes key, ShmBytes value);

/* 1 if key was there, 0 if not. */
int shmtable_remove(ShmTable *t, ShmBytes key);

/*
** The entry after the one at *cursor (0 to start): 1 with key and value,
** or 0 once there is none.
*/
int shmtable_next(ShmTable *t, uint64_t *cursor, ShmBytes *key, ShmBytes *value);

/* Removes every key, or every element. */
void shmtable_clear(ShmTable *t);

/* Lists: element i, 0-based, i < count. */
ShmBytes shmtable_item(ShmTable *t, uint64_t i);
int shmtable_set_item(ShmTable *t, uint64_t i, ShmBytes value);
int shmtable_append(ShmTable *t, ShmBytes value);

/* Drops the last element; there must be one. */
void shmtable_drop_last(ShmTable *t);

#endif
