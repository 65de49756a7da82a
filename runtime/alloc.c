/*
** Big blocks on huge pages. Each fresh 4 KiB page costs a fault, and
** big results are mostly fresh memory: a decoded list of a million
** integers is a 16 MiB table, the text it came in one more buffer. Blocks
** of BIG_BLOCK and more are mapped on their own, rounded up to 2 MiB, and
** marked for transparent huge pages, which the kernel fills 2 MiB per
** fault. Tables and buffers grow in powers of two, so the rounding costs
** them nothing; a string just past a multiple of 2 MiB may hold up to
** 2 MiB more once its last page is touched.
**
** Small blocks stay in malloc's heap, and parlua_alloc puts that heap on
** huge pages too: fork copies one page-table entry per 4 KiB page but one
** per 2 MiB huge page, so with the heap on huge pages par.map's start-up
** no longer grows with the parent's data. Only a 2 MiB-aligned stretch
** inside one mapping can be a huge page: the heap is grown 64 MiB at a
** time and marked in whole huge pages, so its mappings merge into one.
*/
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "alloc.h"
#include "parlua.h"

#define BIG_BLOCK ((size_t)4 << 20)
#define HUGE_PAGE ((size_t)2 << 20)
#define HEAP_STEP (32 * HUGE_PAGE)
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25 /* Linux 6.1; glibc's headers name it from 2.37 */
#endif

static size_t mapped_length(size_t size) {
  return (size + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
}

/*
** Freed big mappings are kept, up to KEPT_BYTES in all, for the next big
** blocks: a map's results table is one, and a fresh mapping for each map
** cost the faults and the zeroing of all its pages, 15% of the parent's
** time in a pool:map of 10^6 items here. glibc's malloc keeps such blocks
** too, by raising its mmap threshold, which parlua_alloc fixes.
*/
#define KEPT_BLOCKS 4
#define KEPT_BYTES ((size_t)64 << 20)

typedef struct KeptBlock {
  void *p;
  size_t length;
} KeptBlock;

static KeptBlock kept[KEPT_BLOCKS];
static size_t kept_bytes;

/* The smallest kept mapping of at least 'length' bytes, cut to it; or NULL. */
static void *take_kept(size_t length) {
  KeptBlock *best = NULL;
  void *p;
  int i;
  for (i = 0; i < KEPT_BLOCKS; i++)
    if (kept[i].p != NULL && kept[i].length >= length && (best == NULL || kept[i].length < best->length))
      best = &kept[i];
  if (best == NULL) return NULL;
  p = best->p;
  if (best->length > length) munmap((char *)p + length, best->length - length);
  kept_bytes -= best->length;
  best->p = NULL;
  return p;
}

/* Keeps a freed mapping if there is room; returns whether it did. */
static int keep(void *p, size_t length) {
  int i;
  if (length > KEPT_BYTES - kept_bytes) return 0;
  for (i = 0; i < KEPT_BLOCKS; i++) {
    if (kept[i].p != NULL) continue;
    kept[i].p = p;
    kept[i].length = length;
    kept_bytes += length;
    return 1;
  }
  return 0;
}

/*
** Only the 2 MiB-aligned stretches of a mapping can be huge pages; recent
** kernels align big anonymous mappings, and on others all but the ends are.
*/
static void *map_big(size_t size) {
  void *p = take_kept(mapped_length(size));
  if (p != NULL) return p;
  p = mmap(NULL, mapped_length(size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  madvise(p, mapped_length(size), MADV_HUGEPAGE); /* a hint: the block works without it */
  return p;
}

static void *remap_big(void *ptr, size_t old_size, size_t new_size) {
  void *p = mremap(ptr, mapped_length(old_size), mapped_length(new_size), MREMAP_MAYMOVE);
  if (p == MAP_FAILED) return NULL;
  madvise(p, mapped_length(new_size), MADV_HUGEPAGE);
  return p;
}

static void release(void *ptr, size_t size) {
  if (size < BIG_BLOCK) free(ptr);
  else if (!keep(ptr, mapped_length(size))) munmap(ptr, mapped_length(size));
}

/* Moves a block between the two kinds of memory. */
static void *move_block(void *ptr, size_t old_size, size_t new_size) {
  void *p = new_size >= BIG_BLOCK ? map_big(new_size) : malloc(new_size);
  if (p == NULL) return NULL;
  memcpy(p, ptr, old_size < new_size ? old_size : new_size);
  release(ptr, old_size);
  return p;
}

void *par_realloc(void *ptr, size_t old_size, size_t new_size) {
  if (ptr == NULL) old_size = 0;
  if (new_size == 0) {
    if (ptr != NULL) release(ptr, old_size);
    return NULL;
  }
  if (old_size < BIG_BLOCK && new_size < BIG_BLOCK) return realloc(ptr, new_size);
  if (ptr == NULL) return map_big(new_size);
  if (old_size >= BIG_BLOCK && new_size >= BIG_BLOCK) {
    if (mapped_length(old_size) == mapped_length(new_size)) return ptr;
    return remap_big(ptr, old_size, new_size); /* moves page tables, not bytes */
  }
  return move_block(ptr, old_size, new_size);
}

static uintptr_t huge_page_start(uintptr_t address) {
  return address & ~(uintptr_t)(HUGE_PAGE - 1);
}

/*
** mallopt changes malloc for the whole process: an embedder that passes
** parlua_alloc to lua_newstate takes these settings with it.
*/
static void tune_malloc(uintptr_t *advised_end) {
  mallopt(M_MMAP_THRESHOLD, BIG_BLOCK); /* below it, blocks stay in the heap */
  mallopt(M_TOP_PAD, HEAP_STEP);
  *advised_end = huge_page_start((uintptr_t)sbrk(0) + HUGE_PAGE - 1);
}

/*
** malloc writes the head of each stretch it grows the heap by before it
** returns, so before it is marked, and a huge page first touched on
** 4 KiB pages stays on them: without the collapse, 2 MiB of every 64 MiB
** step did. One huge page will do, two when a big block left its head
** further on; a kernel before Linux 6.1 refuses, leaving them as they were.
*/
static size_t collapsed_length(size_t grown) {
  return grown < 2 * HUGE_PAGE ? grown : 2 * HUGE_PAGE;
}

/*
** Marks for huge pages whatever whole huge pages the heap has grown by
** since the last call. The heap's mappings split where each mark begins:
** a split inside a huge page would keep both of its halves on 4 KiB
** pages and the mappings from merging into one.
*/
static void advise_heap_growth(uintptr_t *advised_end) {
  uintptr_t end = huge_page_start((uintptr_t)sbrk(0));
  if (end <= *advised_end) return;
  madvise((void *)*advised_end, end - *advised_end, MADV_HUGEPAGE);
  madvise((void *)*advised_end, collapsed_length(end - *advised_end), MADV_COLLAPSE);
  *advised_end = end;
}

void *parlua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  static uintptr_t advised_end;
  void *block;
  (void)ud;
  if (advised_end == 0) tune_malloc(&advised_end);
  block = par_realloc(ptr, ptr != NULL ? osize : 0, nsize);
  if (nsize < BIG_BLOCK) advise_heap_growth(&advised_end);
  return block;
}
