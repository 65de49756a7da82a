/*
** par.lock, par.semaphore, par.event, par.barrier, par.value, par.array
** (docs/sync.md).
**
** Each object is a userdata holding this process's view of a shared
** mapping (shm.h) made when the object was. Every process forked after
** that holds the same mapping, through the fork, and reaches it with no
** system call when nothing has to wait. Collecting or closing the object
** unmaps it in this process only; the kernel frees it when the last
** process has.
*/
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>

#include "lpar.h"
#include "lutil.h"
#include "shm.h"

#define LOCK_CLASS "par.Lock"
#define SEMAPHORE_CLASS "par.Semaphore"
#define EVENT_CLASS "par.Event"
#define BARRIER_CLASS "par.Barrier"
#define VALUE_CLASS "par.Value"
#define ARRAY_CLASS "par.Array"

/* Parties a barrier may have, elements an array may have. */
#define BARRIER_MAX (1 << 20)
#define ARRAY_MAX ((lua_Integer)1 << 36)

typedef struct Shared {
  void *mem;     /* NULL once closed */
  size_t size;
  int is_float;  /* values and arrays: what they hold */
  lua_Integer n; /* arrays: the length */
} Shared;

/*
** Pushes a new object of 'class' and maps its size bytes. The class comes
** first, so an object whose mapping failed is still collected as one.
*/
static Shared *push_shared(lua_State *L, const char *fn, size_t size, const char *class,
                           const luaL_Reg *methods, const luaL_Reg *metamethods,
                           lua_CFunction release) {
  Shared *h = lua_newuserdatauv(L, sizeof *h, 0);
  memset(h, 0, sizeof *h);
  par_set_bound_class(L, class, methods, metamethods, release);
  h->mem = shm_map(size > 0 ? size : 1);
  if (h->mem == NULL) {
    par_push_syscall_error(L, fn, "system", "mmap");
    lua_error(L);
  }
  h->size = size > 0 ? size : 1;
  return h;
}

/* The object at 1, of the class whose metatable is upvalue 1 of the running function. */
static Shared *check_shared(lua_State *L, const char *class) {
  Shared *h = par_check_bound(L, class);
  if (h->mem == NULL) luaL_error(L, "%s: used after it was closed", class);
  return h;
}

static int shared_release(lua_State *L) {
  Shared *h = lua_touserdata(L, 1);
  if (h->mem != NULL) shm_unmap(h->mem, h->size);
  h->mem = NULL;
  return 0;
}

static void raise_interrupted(lua_State *L, const char *fn, int sig, const char *doing) {
  par_push_interrupted(L, fn, sig, doing);
  lua_error(L);
}

/* Calls the function at 2 with the arguments above it, runs 'release' then, however it
   ends, and returns its results, or raises its error. */
static int call_holding(lua_State *L, Shared *h, void (*release)(void *mem)) {
  int status = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 0);
  if (h->mem != NULL) release(h->mem); /* fn may have closed the object */
  if (status != LUA_OK) return lua_error(L);
  return lua_gettop(L) - 1;
}

/* ---- par.lock ------------------------------------------------------------- */

/* Takes the lock; returns 0, or EOWNERDEAD when its last owner died holding it. */
static int lock_take(lua_State *L, pthread_mutex_t *m, int64_t deadline) {
  int sig, r = shm_mutex_lock(m, deadline, &sig);
  switch (r) {
    case 0: case EOWNERDEAD: case ETIMEDOUT:
      return r;
    case EDEADLK:
      return luaL_error(L, "par.lock: this process holds the lock already "
                           "(one made with {recursive = true} may be taken again)");
    case EINTR:
      raise_interrupted(L, "par.lock", sig, "waiting for the lock");
      return r;
    default:
      errno = r;
      par_push_syscall_error(L, "par.lock", "system", "pthread_mutex_lock");
      return lua_error(L);
  }
}

static int lock_acquire(lua_State *L) {
  Shared *h = check_shared(L, LOCK_CLASS);
  int r = lock_take(L, h->mem, par_deadline(L, 2));
  lua_pushboolean(L, r != ETIMEDOUT);
  if (r != EOWNERDEAD) return 1;
  lua_pushliteral(L, "abandoned");
  return 2;
}

static int lock_release(lua_State *L) {
  Shared *h = check_shared(L, LOCK_CLASS);
  if (shm_mutex_unlock(h->mem) != 0)
    return luaL_error(L, "par.lock: release by a process that does not hold the lock");
  return 0;
}

static void lock_unlock(void *mem) {
  shm_mutex_unlock(mem);
}

static int lock_with(lua_State *L) {
  Shared *h = check_shared(L, LOCK_CLASS);
  par_check_callable(L, 2);
  lock_take(L, h->mem, -1);
  return call_holding(L, h, lock_unlock);
}

/*
** The lock is released first if this process holds it: nothing else here
** could, and glibc keeps a list of the robust mutexes a thread holds,
** which must not point into memory that is gone.
*/
static int lock_gc(lua_State *L) {
  Shared *h = lua_touserdata(L, 1);
  if (h->mem != NULL)
    while (shm_mutex_unlock(h->mem) == 0) continue; /* a recursive lock, all its levels */
  return shared_release(L);
}

static const luaL_Reg lock_methods[] = {
  {"acquire", lock_acquire},
  {"release", lock_release},
  {"with", lock_with},
  {NULL, NULL}
};

int par_lock(lua_State *L) {
  int recursive = 0, err;
  Shared *h;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "recursive");
    recursive = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  h = push_shared(L, "par.lock", sizeof(pthread_mutex_t), LOCK_CLASS, lock_methods, NULL, lock_gc);
  if ((err = shm_mutex_init(h->mem, recursive)) != 0) {
    errno = err;
    par_push_syscall_error(L, "par.lock", "system", "pthread_mutex_init");
    return lua_error(L);
  }
  return 1;
}

/* ---- par.semaphore -------------------------------------------------------- */

static int semaphore_take(lua_State *L, ShmSemaphore *s, int64_t deadline) {
  int sig, r = shm_semaphore_acquire(s, deadline, &sig);
  if (r == EINTR) raise_interrupted(L, "par.semaphore", sig, "waiting in acquire");
  return r == 0;
}

static int semaphore_acquire(lua_State *L) {
  Shared *h = check_shared(L, SEMAPHORE_CLASS);
  lua_pushboolean(L, semaphore_take(L, h->mem, par_deadline(L, 2)));
  return 1;
}

static int semaphore_release(lua_State *L) {
  Shared *h = check_shared(L, SEMAPHORE_CLASS);
  if (shm_semaphore_release(h->mem) != 0)
    return luaL_error(L, "par.semaphore: release would take the count past %d", INT32_MAX);
  return 0;
}

static void semaphore_give(void *mem) {
  shm_semaphore_release(mem);
}

static int semaphore_with(lua_State *L) {
  Shared *h = check_shared(L, SEMAPHORE_CLASS);
  par_check_callable(L, 2);
  semaphore_take(L, h->mem, -1);
  return call_holding(L, h, semaphore_give);
}

static const luaL_Reg semaphore_methods[] = {
  {"acquire", semaphore_acquire},
  {"release", semaphore_release},
  {"with", semaphore_with},
  {NULL, NULL}
};

int par_semaphore(lua_State *L) {
  lua_Integer n = luaL_optinteger(L, 1, 1);
  Shared *h;
  luaL_argcheck(L, n >= 0 && n <= INT32_MAX, 1, "count must be 0 .. 2^31-1");
  h = push_shared(L, "par.semaphore", sizeof(ShmSemaphore), SEMAPHORE_CLASS,
                  semaphore_methods, NULL, shared_release);
  ((ShmSemaphore *)h->mem)->count = (uint32_t)n;
  return 1;
}

/* ---- par.event ------------------------------------------------------------ */

static int event_set(lua_State *L) {
  shm_event_set(check_shared(L, EVENT_CLASS)->mem);
  return 0;
}

static int event_clear(lua_State *L) {
  shm_event_clear(check_shared(L, EVENT_CLASS)->mem);
  return 0;
}

static int event_is_set(lua_State *L) {
  lua_pushboolean(L, shm_event_is_set(check_shared(L, EVENT_CLASS)->mem));
  return 1;
}

static int event_wait(lua_State *L) {
  Shared *h = check_shared(L, EVENT_CLASS);
  int sig, r = shm_event_wait(h->mem, par_deadline(L, 2), &sig);
  if (r == EINTR) raise_interrupted(L, "par.event", sig, "waiting for the event");
  lua_pushboolean(L, r == 0);
  return 1;
}

static const luaL_Reg event_methods[] = {
  {"set", event_set},
  {"clear", event_clear},
  {"is_set", event_is_set},
  {"wait", event_wait},
  {NULL, NULL}
};

int par_event(lua_State *L) {
  push_shared(L, "par.event", sizeof(ShmEvent), EVENT_CLASS, event_methods, NULL, shared_release);
  return 1;
}

/* ---- par.barrier ---------------------------------------------------------- */

static int raise_broken(lua_State *L, ShmBarrier *b) {
  switch (b->broken) {
    case SHM_BROKEN_TIMEOUT:
      par_push_error(L, "par.barrier", 0, "broken", "a party timed out waiting");
      break;
    case SHM_BROKEN_DIED:
      if (b->died != 0)
        par_push_error(L, "par.barrier", 0, "broken", "party %d died waiting", (int)b->died);
      else
        par_push_error(L, "par.barrier", 0, "broken", "a party died inside wait");
      break;
    default:
      par_push_error(L, "par.barrier", 0, "broken", "it was aborted");
  }
  return lua_error(L);
}

static int barrier_wait(lua_State *L) {
  Shared *h = check_shared(L, BARRIER_CLASS);
  uint32_t index;
  int sig, r = shm_barrier_wait(h->mem, par_deadline(L, 2), &index, &sig);
  if (r == EINTR) raise_interrupted(L, "par.barrier", sig, "waiting at the barrier");
  if (r != 0) return raise_broken(L, h->mem);
  lua_pushinteger(L, (lua_Integer)index);
  return 1;
}

static int barrier_abort(lua_State *L) {
  Shared *h = check_shared(L, BARRIER_CLASS);
  int sig;
  if (shm_barrier_abort(h->mem, &sig) != 0) raise_interrupted(L, "par.barrier", sig, "aborting");
  return 0;
}

static int barrier_broken(lua_State *L) {
  ShmBarrier *b = check_shared(L, BARRIER_CLASS)->mem;
  lua_pushboolean(L, __atomic_load_n(&b->phase, __ATOMIC_ACQUIRE) & 1);
  return 1;
}

static int barrier_waiting(lua_State *L) {
  lua_pushinteger(L, shm_barrier_waiting(check_shared(L, BARRIER_CLASS)->mem));
  return 1;
}

static int barrier_parties(lua_State *L) {
  ShmBarrier *b = check_shared(L, BARRIER_CLASS)->mem;
  lua_pushinteger(L, b->parties);
  return 1;
}

static const luaL_Reg barrier_methods[] = {
  {"wait", barrier_wait},
  {"abort", barrier_abort},
  {"broken", barrier_broken},
  {"waiting", barrier_waiting},
  {"parties", barrier_parties},
  {NULL, NULL}
};

int par_barrier(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  Shared *h;
  int err;
  luaL_argcheck(L, n >= 1 && n <= BARRIER_MAX, 1, "parties must be 1 .. 2^20");
  h = push_shared(L, "par.barrier", shm_barrier_size((uint32_t)n), BARRIER_CLASS,
                  barrier_methods, NULL, shared_release);
  if ((err = shm_barrier_init(h->mem, (uint32_t)n)) != 0) {
    errno = err;
    par_push_syscall_error(L, "par.barrier", "system", "pthread_mutex_init");
    return lua_error(L);
  }
  return 1;
}

/* ---- numbers: par.value and par.array ------------------------------------- */

/*
** A number is kept as 64 bits, an integer's or a float's, read and
** written whole with __atomic builtins; a float changes by compare and
** swap of its bits.
*/
static uint64_t number_bits(lua_State *L, int arg, int is_float) {
  uint64_t bits;
  if (is_float) {
    lua_Number x = luaL_checknumber(L, arg);
    memcpy(&bits, &x, sizeof bits);
  } else {
    bits = (uint64_t)luaL_checkinteger(L, arg);
  }
  return bits;
}

static void push_number(lua_State *L, uint64_t bits, int is_float) {
  if (is_float) {
    lua_Number x;
    memcpy(&x, &bits, sizeof x);
    lua_pushnumber(L, x);
  } else {
    lua_pushinteger(L, (lua_Integer)bits);
  }
}

/* Adds the number at arg to *slot and pushes the sum. Integers wrap around as Lua's do. */
static int number_add(lua_State *L, uint64_t *slot, int arg, int is_float) {
  uint64_t old, new;
  lua_Number n, x;
  if (!is_float) {
    new = __atomic_add_fetch(slot, (uint64_t)luaL_checkinteger(L, arg), __ATOMIC_SEQ_CST);
    push_number(L, new, 0);
    return 1;
  }
  n = luaL_checknumber(L, arg);
  old = __atomic_load_n(slot, __ATOMIC_RELAXED);
  do {
    memcpy(&x, &old, sizeof x);
    x += n;
    memcpy(&new, &x, sizeof new);
  } while (!__atomic_compare_exchange_n(slot, &old, new, 1, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
  lua_pushnumber(L, x);
  return 1;
}

/* Replaces *slot by the number at arg + 1 if it equals the one at arg (== for floats). */
static int number_cas(lua_State *L, uint64_t *slot, int arg, int is_float) {
  uint64_t want = number_bits(L, arg, is_float), new = number_bits(L, arg + 1, is_float);
  uint64_t old = __atomic_load_n(slot, __ATOMIC_RELAXED);
  int swapped;
  if (!is_float) {
    swapped = __atomic_compare_exchange_n(slot, &want, new, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
  } else { /* 0.0 equals -0.0 and NaN nothing, as with == */
    lua_Number expected = lua_tonumber(L, arg), x;
    do {
      memcpy(&x, &old, sizeof x);
      swapped = x == expected;
    } while (swapped && !__atomic_compare_exchange_n(slot, &old, new, 1, __ATOMIC_SEQ_CST,
                                                     __ATOMIC_RELAXED));
  }
  lua_pushboolean(L, swapped);
  return 1;
}

static int value_get(lua_State *L) {
  Shared *h = check_shared(L, VALUE_CLASS);
  push_number(L, __atomic_load_n((uint64_t *)h->mem, __ATOMIC_SEQ_CST), h->is_float);
  return 1;
}

static int value_set(lua_State *L) {
  Shared *h = check_shared(L, VALUE_CLASS);
  __atomic_store_n((uint64_t *)h->mem, number_bits(L, 2, h->is_float), __ATOMIC_SEQ_CST);
  return 0;
}

static int value_add(lua_State *L) {
  Shared *h = check_shared(L, VALUE_CLASS);
  return number_add(L, h->mem, 2, h->is_float);
}

static int value_cas(lua_State *L) {
  Shared *h = check_shared(L, VALUE_CLASS);
  return number_cas(L, h->mem, 2, h->is_float);
}

static const luaL_Reg value_methods[] = {
  {"get", value_get},
  {"set", value_set},
  {"add", value_add},
  {"cas", value_cas},
  {NULL, NULL}
};

int par_value(lua_State *L) {
  int is_float;
  uint64_t bits;
  luaL_checktype(L, 1, LUA_TNUMBER); /* not a numeric string, which would fix the kind by chance */
  is_float = !lua_isinteger(L, 1);
  bits = number_bits(L, 1, is_float);
  Shared *h = push_shared(L, "par.value", sizeof bits, VALUE_CLASS, value_methods, NULL,
                          shared_release);
  h->is_float = is_float;
  *(uint64_t *)h->mem = bits;
  return 1;
}

/* The slot of the index at arg, or a bad argument error. */
static uint64_t *array_slot(lua_State *L, Shared *h, int arg) {
  lua_Integer i = luaL_checkinteger(L, arg);
  if (i < 1 || i > h->n)
    luaL_argerror(L, arg, lua_pushfstring(L, "index %I out of range 1 .. %I", i, h->n));
  return (uint64_t *)h->mem + (i - 1);
}

/* __index: an element for a number, else a method. */
static int array_index(lua_State *L) {
  Shared *h = check_shared(L, ARRAY_CLASS);
  if (lua_type(L, 2) != LUA_TNUMBER) {
    lua_getfield(L, lua_upvalueindex(1), "methods");
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
  }
  push_number(L, __atomic_load_n(array_slot(L, h, 2), __ATOMIC_SEQ_CST), h->is_float);
  return 1;
}

static int array_newindex(lua_State *L) {
  Shared *h = check_shared(L, ARRAY_CLASS);
  uint64_t *slot = array_slot(L, h, 2);
  __atomic_store_n(slot, number_bits(L, 3, h->is_float), __ATOMIC_SEQ_CST);
  return 0;
}

static int array_len(lua_State *L) {
  lua_pushinteger(L, check_shared(L, ARRAY_CLASS)->n);
  return 1;
}

static int array_add(lua_State *L) {
  Shared *h = check_shared(L, ARRAY_CLASS);
  return number_add(L, array_slot(L, h, 2), 3, h->is_float);
}

static int array_cas(lua_State *L) {
  Shared *h = check_shared(L, ARRAY_CLASS);
  return number_cas(L, array_slot(L, h, 2), 3, h->is_float);
}

/* Each element is read whole, but others may change while the copy is made. */
static int array_snapshot(lua_State *L) {
  Shared *h = check_shared(L, ARRAY_CLASS);
  const uint64_t *slots = h->mem;
  lua_Integer i;
  lua_createtable(L, h->n < INT32_MAX ? (int)h->n : 0, 0);
  for (i = 0; i < h->n; i++) {
    push_number(L, __atomic_load_n(&slots[i], __ATOMIC_RELAXED), h->is_float);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static const luaL_Reg array_methods[] = {
  {"add", array_add},
  {"cas", array_cas},
  {"snapshot", array_snapshot},
  {NULL, NULL}
};

static const luaL_Reg array_metamethods[] = {
  {"__index", array_index},
  {"__newindex", array_newindex},
  {"__len", array_len},
  {NULL, NULL}
};

/* True if the list at 1 holds a float, which makes the array's default kind "float". */
static int holds_float(lua_State *L, lua_Integer n) {
  lua_Integer i;
  int found = 0;
  for (i = 1; i <= n && !found; i++) {
    found = lua_rawgeti(L, 1, i) == LUA_TNUMBER && !lua_isinteger(L, -1);
    lua_pop(L, 1);
  }
  return found;
}

/* Copies the list at 1 into the array h, checking each element. */
static void fill_array(lua_State *L, Shared *h) {
  uint64_t *slots = h->mem;
  lua_Integer i;
  for (i = 1; i <= h->n; i++) {
    int isnum;
    lua_Integer k;
    lua_rawgeti(L, 1, i);
    if (h->is_float) {
      lua_Number x = lua_tonumberx(L, -1, &isnum);
      memcpy(&slots[i - 1], &x, sizeof x);
    } else {
      k = lua_tointegerx(L, -1, &isnum);
      slots[i - 1] = (uint64_t)k;
    }
    if (!isnum || lua_type(L, -1) != LUA_TNUMBER)
      luaL_argerror(L, 1, lua_pushfstring(L, "element %I is not %s", i,
                                          h->is_float ? "a number" : "an integer"));
    lua_pop(L, 1);
  }
}

/* par.array(n | list [, "int" | "float"]) */
int par_array(lua_State *L) {
  static const char *const kinds[] = {"int", "float", NULL};
  int from_list = lua_type(L, 1) == LUA_TTABLE;
  lua_Integer n = from_list ? (lua_Integer)lua_rawlen(L, 1) : luaL_checkinteger(L, 1);
  int is_float;
  Shared *h;
  luaL_argcheck(L, n >= 0 && n <= ARRAY_MAX, 1, "length must be 0 .. 2^36");
  is_float = lua_isnoneornil(L, 2) ? from_list && holds_float(L, n)
                                   : luaL_checkoption(L, 2, NULL, kinds) == 1;
  h = push_shared(L, "par.array", (size_t)n * sizeof(uint64_t), ARRAY_CLASS, array_methods,
                  array_metamethods, shared_release);
  h->n = n;
  h->is_float = is_float;
  if (from_list) fill_array(L, h);
  return 1;
}
