/*
** Layout: the header, then a heap of blocks of 2^k bytes (k >= 5) bumped
** from heap_start up to heap_top, each an 8-byte BlockHeader and its
** payload. A freed block goes on the free list of its size. Offsets are
** from the start of the mapping, which every process maps at its own
** address. A dict's slot array and a list's item array are blocks too,
** and so is every entry: an EntryHeader, the key's bytes, the value's.
**
** What is published (the header's slots, items, len and heap_top, a
** slot's entry, an item) is the truth; counts and free lists are derived
** from it, which is what repair does.
*/
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "shm.h"
#include "shmtable.h"

#define MIN_CLASS 5
#define CLASSES 64
#define FIRST_SLOTS 8
#define FIRST_ITEMS 8
#define POPULATE_STEP ((uint64_t)1 << 16)
#define EMPTY 0
#define TOMBSTONE 1

struct ShmTable {
  pthread_mutex_t lock;
  uint64_t size;       /* of the mapping */
  uint64_t writing;    /* 1 while a write is under way */
  uint64_t heap_start, heap_top;
  uint64_t populated;  /* the heap below this was taken in one go (see populate) */
  uint64_t free[CLASSES];
  uint64_t slots;      /* dicts: the slot array's offset, 0 for none */
  uint64_t count;      /* dicts: live keys */
  uint64_t used;       /* dicts: slots live or dead */
  uint64_t items;      /* lists: the item array's offset, 0 for none */
  uint64_t len;        /* lists: elements */
};

typedef struct BlockHeader {
  uint32_t class; /* the block is 2^class bytes */
  uint32_t mark;  /* for repair */
} BlockHeader;

typedef struct EntryHeader {
  uint32_t key_len, value_len;
} EntryHeader;

typedef struct Slot {
  uint64_t hash;
  uint64_t entry; /* EMPTY, TOMBSTONE or an entry's offset */
} Slot;

/* The payload of a slot or item array block. */
typedef struct Slots {
  uint64_t n;
  Slot at[];
} Slots;

typedef struct Items {
  uint64_t n;
  uint64_t at[];
} Items;

static void *at(ShmTable *t, uint64_t offset) {
  return (char *)t + offset;
}

static BlockHeader *header_of(ShmTable *t, uint64_t payload) {
  return at(t, payload - sizeof(BlockHeader));
}

/*
** Stores that another process must see in this order even if this one is
** killed between them: the compiler may not move writes across this.
*/
static void publish(uint64_t *word, uint64_t value) {
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  *word = value;
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

/* ---- blocks --------------------------------------------------------------- */

static unsigned class_for(uint64_t payload) {
  unsigned class = MIN_CLASS;
  while (((uint64_t)1 << class) < payload + sizeof(BlockHeader)) class++;
  return class;
}

static void block_free(ShmTable *t, uint64_t payload) {
  unsigned class = header_of(t, payload)->class;
  *(uint64_t *)at(t, payload) = t->free[class];
  t->free[class] = payload;
}

static uint64_t pop_free(ShmTable *t, unsigned class) {
  uint64_t payload = t->free[class];
  if (payload != 0) t->free[class] = *(uint64_t *)at(t, payload);
  return payload;
}

/* Writes a block's header in one store. */
static void set_class(ShmTable *t, uint64_t block, unsigned class) {
  BlockHeader h = {class, 0};
  uint64_t word;
  memcpy(&word, &h, sizeof word);
  publish(at(t, block), word);
}

/*
** A free block of a larger class, halved down to 'class'; the upper
** halves go on the free lists. Each upper half gets its header before the
** lower one shrinks, so the heap can be walked block by block throughout.
*/
static uint64_t split_larger(ShmTable *t, unsigned class) {
  unsigned c = class + 1;
  uint64_t block;
  while (c < CLASSES && t->free[c] == 0) c++;
  if (c == CLASSES) return 0;
  block = pop_free(t, c) - sizeof(BlockHeader);
  while (c > class) {
    uint64_t upper = block + ((uint64_t)1 << --c);
    set_class(t, upper, c);
    set_class(t, block, c);
    block_free(t, upper + sizeof(BlockHeader));
  }
  return block + sizeof(BlockHeader);
}

/*
** Takes the pages of the heap up to 'top' and some beyond (a quarter more,
** at least a step) in one system call: a page fault each would cost a
** third of an insert. A hint only.
*/
static void populate(ShmTable *t, uint64_t top) {
  uint64_t end;
  if (top <= t->populated) return;
  end = (top + top / 4 + POPULATE_STEP) & ~(POPULATE_STEP - 1);
  if (end > t->size) end = t->size & ~(uint64_t)4095;
  if (end > t->populated) madvise(at(t, t->populated), end - t->populated, MADV_POPULATE_WRITE);
  t->populated = end;
}

/* A payload of at least n bytes, or 0 when the mapping has no room. */
static uint64_t block_alloc(ShmTable *t, uint64_t n) {
  unsigned class;
  uint64_t block, payload;
  if (n > t->size) return 0;
  class = class_for(n);
  if ((payload = pop_free(t, class)) != 0) return payload;
  block = t->heap_top;
  if (((uint64_t)1 << class) > t->size - block) return split_larger(t, class);
  populate(t, block + ((uint64_t)1 << class));
  set_class(t, block, class);
  publish(&t->heap_top, block + ((uint64_t)1 << class));
  return block + sizeof(BlockHeader);
}

/* ---- entries -------------------------------------------------------------- */

static uint64_t entry_new(ShmTable *t, ShmBytes key, ShmBytes value) {
  uint64_t entry = block_alloc(t, sizeof(EntryHeader) + key.len + value.len);
  EntryHeader *e;
  if (entry == 0) return 0;
  e = at(t, entry);
  e->key_len = (uint32_t)key.len;
  e->value_len = (uint32_t)value.len;
  memcpy(e + 1, key.data, key.len);
  memcpy((char *)(e + 1) + key.len, value.data, value.len);
  return entry;
}

static ShmBytes entry_key(ShmTable *t, uint64_t entry) {
  EntryHeader *e = at(t, entry);
  return (ShmBytes){(const char *)(e + 1), e->key_len};
}

static ShmBytes entry_value(ShmTable *t, uint64_t entry) {
  EntryHeader *e = at(t, entry);
  return (ShmBytes){(const char *)(e + 1) + e->key_len, e->value_len};
}

/* ---- the table ------------------------------------------------------------ */

ShmTable *shmtable_new(size_t size) {
  ShmTable *t = shm_reserve(size);
  int err;
  if (t == NULL) return NULL;
  if ((err = shm_mutex_init(&t->lock, 0)) != 0) {
    shm_unmap(t, size);
    errno = err;
    return NULL;
  }
  t->size = size;
  t->heap_start = t->heap_top = (sizeof *t + 63) & ~(uint64_t)63;
  t->populated = 4096;
  return t;
}

void shmtable_free(ShmTable *t, size_t size) {
  shm_unmap(t, size);
}

static void begin_write(ShmTable *t) {
  publish(&t->writing, 1);
}

static void end_write(ShmTable *t) {
  publish(&t->writing, 0);
}

static void mark(ShmTable *t, uint64_t payload) {
  header_of(t, payload)->mark = 1;
}

/* Marks every block that what is published reaches. */
static void mark_reachable(ShmTable *t) {
  uint64_t i;
  if (t->slots != 0) {
    Slots *s = at(t, t->slots);
    mark(t, t->slots);
    for (i = 0; i < s->n; i++)
      if (s->at[i].entry > TOMBSTONE) mark(t, s->at[i].entry);
  }
  if (t->items != 0) {
    Items *items = at(t, t->items);
    mark(t, t->items);
    for (i = 0; i < t->len; i++) mark(t, items->at[i]);
  }
}

/* Recounts the keys and the slots in use. */
static void recount(ShmTable *t) {
  uint64_t i;
  t->count = t->used = 0;
  if (t->slots != 0) {
    Slots *s = at(t, t->slots);
    for (i = 0; i < s->n; i++) {
      t->count += s->at[i].entry > TOMBSTONE;
      t->used += s->at[i].entry != EMPTY;
    }
  }
}

/*
** After a holder died in a write: every block that nothing published
** reaches goes back on a free list, made anew, and the counts are redone.
** Running it again, if this process dies in it too, gives the same.
*/
static void repair(ShmTable *t) {
  uint64_t block;
  BlockHeader *h;
  memset(t->free, 0, sizeof t->free);
  for (block = t->heap_start; block < t->heap_top; block += (uint64_t)1 << h->class)
    (h = at(t, block))->mark = 0;
  mark_reachable(t);
  for (block = t->heap_start; block < t->heap_top; block += (uint64_t)1 << h->class)
    if (!(h = at(t, block))->mark) block_free(t, block + sizeof(BlockHeader));
  recount(t);
  end_write(t);
}

int shmtable_lock(ShmTable *t, int *sig) {
  int r = shm_mutex_lock(&t->lock, -1, sig);
  if (r != 0 && r != EOWNERDEAD) return r;
  if (t->writing) repair(t);
  return 0;
}

void shmtable_unlock(ShmTable *t) {
  shm_mutex_unlock(&t->lock);
}

uint64_t shmtable_count(ShmTable *t) {
  return t->count;
}

uint64_t shmtable_length(ShmTable *t) {
  return t->len;
}

void shmtable_clear(ShmTable *t) {
  begin_write(t);
  publish(&t->slots, 0);
  publish(&t->items, 0);
  publish(&t->len, 0);
  t->count = t->used = 0;
  memset(t->free, 0, sizeof t->free);
  publish(&t->heap_top, t->heap_start);
  end_write(t);
}

/* ---- dicts ---------------------------------------------------------------- */

/* FNV-1a, then MurmurHash3's finalizer: the low bits pick the slot, and FNV's alone cluster. */
static uint64_t hash_of(ShmBytes key) {
  uint64_t h = 14695981039346656037u;
  size_t i;
  for (i = 0; i < key.len; i++) h = (h ^ (unsigned char)key.data[i]) * 1099511628211u;
  h = (h ^ (h >> 33)) * 0xff51afd7ed558ccdu;
  h = (h ^ (h >> 33)) * 0xc4ceb9fe1a85ec53u;
  return h ^ (h >> 33);
}

static int same_key(ShmTable *t, const Slot *slot, uint64_t hash, ShmBytes key) {
  ShmBytes k;
  if (slot->entry <= TOMBSTONE || slot->hash != hash) return 0;
  k = entry_key(t, slot->entry);
  return k.len == key.len && memcmp(k.data, key.data, key.len) == 0;
}

/* The slot holding key, or NULL. */
static Slot *find(ShmTable *t, ShmBytes key, uint64_t hash) {
  Slots *s;
  uint64_t i, mask;
  if (t->slots == 0) return NULL;
  s = at(t, t->slots);
  mask = s->n - 1;
  for (i = hash & mask; s->at[i].entry != EMPTY; i = (i + 1) & mask)
    if (same_key(t, &s->at[i], hash, key)) return &s->at[i];
  return NULL;
}

/* A free slot for a key that is not there (an empty one or a dead one). */
static Slot *free_slot(Slots *s, uint64_t hash) {
  uint64_t i, mask = s->n - 1;
  for (i = hash & mask; s->at[i].entry > TOMBSTONE; i = (i + 1) & mask) continue;
  return &s->at[i];
}

/* Moves the live entries to a new array of n slots; 0 or ENOSPC. */
static int rehash(ShmTable *t, uint64_t n) {
  uint64_t fresh = block_alloc(t, sizeof(Slots) + n * sizeof(Slot)), old = t->slots, i;
  Slots *to;
  if (fresh == 0) return ENOSPC;
  to = at(t, fresh);
  to->n = n;
  memset(to->at, 0, n * sizeof(Slot));
  if (old != 0) {
    Slots *from = at(t, old);
    for (i = 0; i < from->n; i++)
      if (from->at[i].entry > TOMBSTONE) *free_slot(to, from->at[i].hash) = from->at[i];
  }
  publish(&t->slots, fresh);
  t->used = t->count;
  if (old != 0) block_free(t, old);
  return 0;
}

/* Makes sure one more key fits, at most 3/4 of the slots in use; 0 or ENOSPC. */
static int make_room(ShmTable *t) {
  uint64_t n = t->slots == 0 ? 0 : ((Slots *)at(t, t->slots))->n, want = n;
  if (t->used + 1 <= n / 4 * 3) return 0;
  while ((t->count + 1) * 2 > want) want = want == 0 ? FIRST_SLOTS : want * 2;
  if (rehash(t, want) == 0) return 0;
  return t->used + 1 < n ? 0 : ENOSPC; /* a fuller table still works */
}

int shmtable_get(ShmTable *t, ShmBytes key, ShmBytes *value) {
  Slot *slot = find(t, key, hash_of(key));
  if (slot == NULL) return 0;
  *value = entry_value(t, slot->entry);
  return 1;
}

int shmtable_put(ShmTable *t, ShmBytes key, ShmBytes value) {
  uint64_t hash = hash_of(key), entry, old;
  Slot *slot;
  int r = 0;
  begin_write(t);
  slot = find(t, key, hash);
  if (slot == NULL && (r = make_room(t)) != 0) goto done;
  if ((entry = entry_new(t, key, value)) == 0) {
    r = ENOSPC;
    goto done;
  }
  if (slot != NULL) {
    old = slot->entry;
    publish(&slot->entry, entry);
    block_free(t, old);
  } else {
    slot = free_slot(at(t, t->slots), hash);
    t->used += slot->entry == EMPTY;
    publish(&slot->hash, hash);
    publish(&slot->entry, entry);
    t->count++;
  }
done:
  end_write(t);
  return r;
}

int shmtable_remove(ShmTable *t, ShmBytes key) {
  Slot *slot = find(t, key, hash_of(key));
  uint64_t old;
  if (slot == NULL) return 0;
  begin_write(t);
  old = slot->entry;
  publish(&slot->entry, TOMBSTONE);
  t->count--;
  block_free(t, old);
  end_write(t);
  return 1;
}

int shmtable_next(ShmTable *t, uint64_t *cursor, ShmBytes *key, ShmBytes *value) {
  Slots *s;
  if (t->slots == 0) return 0;
  s = at(t, t->slots);
  for (; *cursor < s->n; (*cursor)++) {
    uint64_t entry = s->at[*cursor].entry;
    if (entry > TOMBSTONE) {
      (*cursor)++;
      *key = entry_key(t, entry);
      *value = entry_value(t, entry);
      return 1;
    }
  }
  return 0;
}

/* ---- lists ---------------------------------------------------------------- */

static const ShmBytes no_key = {"", 0};

ShmBytes shmtable_item(ShmTable *t, uint64_t i) {
  return entry_value(t, ((Items *)at(t, t->items))->at[i]);
}

int shmtable_set_item(ShmTable *t, uint64_t i, ShmBytes value) {
  uint64_t entry, old;
  Items *items = at(t, t->items);
  begin_write(t);
  entry = entry_new(t, no_key, value);
  if (entry != 0) {
    old = items->at[i];
    publish(&items->at[i], entry);
    block_free(t, old);
  }
  end_write(t);
  return entry != 0 ? 0 : ENOSPC;
}

/* Makes sure the item array has room for one more; 0 or ENOSPC. */
static int grow_items(ShmTable *t) {
  uint64_t n = t->items == 0 ? 0 : ((Items *)at(t, t->items))->n, fresh, old = t->items;
  Items *to;
  if (t->len < n) return 0;
  n = n == 0 ? FIRST_ITEMS : n * 2;
  if ((fresh = block_alloc(t, sizeof(Items) + n * sizeof(uint64_t))) == 0) return ENOSPC;
  to = at(t, fresh);
  to->n = n;
  if (old != 0) memcpy(to->at, ((Items *)at(t, old))->at, t->len * sizeof(uint64_t));
  publish(&t->items, fresh);
  if (old != 0) block_free(t, old);
  return 0;
}

int shmtable_append(ShmTable *t, ShmBytes value) {
  uint64_t entry = 0;
  int r;
  begin_write(t);
  if ((r = grow_items(t)) == 0 && (entry = entry_new(t, no_key, value)) == 0) r = ENOSPC;
  if (r == 0) {
    publish(&((Items *)at(t, t->items))->at[t->len], entry);
    publish(&t->len, t->len + 1);
  }
  end_write(t);
  return r;
}

void shmtable_drop_last(ShmTable *t) {
  uint64_t old = ((Items *)at(t, t->items))->at[t->len - 1];
  begin_write(t);
  publish(&t->len, t->len - 1);
  block_free(t, old);
  end_write(t);
}
