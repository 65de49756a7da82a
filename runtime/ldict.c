/*
** par.dict and par.list (docs/dict.md): userdata over a table in shared
** memory (shmtable.h) made before the workers are forked.
**
** Values travel as the wire's JSON text (codec.h); keys as a tag byte and
** their bytes. The table's lock is held only while bytes are copied in or
** out, and across the Lua work of incr and update, which runs protected so
** that an error there still releases it.
*/
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>

#include "codec.h"
#include "lpar.h"
#include "lutil.h"
#include "shmtable.h"

#define DICT_CLASS "par.Dict"
#define LIST_CLASS "par.List"
#define DEFAULT_MAX ((lua_Integer)1 << 30)
#define LARGEST_MAX ((lua_Integer)1 << 40)

typedef struct Shared {
  ShmTable *t;    /* NULL once closed */
  size_t size;
  const char *fn; /* "par.dict" or "par.list", for errors */
  Buffer key;     /* the key of the call, encoded */
  Buffer value;   /* its value, encoded, or one copied out */
} Shared;

static Shared *check_open(lua_State *L, const char *class) {
  Shared *h = par_check_bound(L, class);
  if (h->t == NULL) luaL_error(L, "%s: used after it was closed", class);
  return h;
}

static int shared_release(lua_State *L) {
  Shared *h = lua_touserdata(L, 1);
  if (h->t != NULL) shmtable_free(h->t, h->size);
  h->t = NULL;
  buffer_free(&h->key);
  buffer_free(&h->value);
  return 0;
}

static ShmBytes bytes_of(const Buffer *b) {
  return (ShmBytes){b->data, b->len};
}

static void lock(lua_State *L, Shared *h) {
  int sig, r = shmtable_lock(h->t, &sig);
  if (r == 0) return;
  if (r == EDEADLK) luaL_error(L, "%s: used inside its own update function", h->fn);
  if (r == EINTR) par_push_interrupted(L, h->fn, sig, "waiting for its lock");
  else {
    errno = r;
    par_push_syscall_error(L, h->fn, "system", "pthread_mutex_lock");
  }
  lua_error(L);
}

static void unlock(Shared *h) {
  shmtable_unlock(h->t);
}

/* No position in front: the message starts with the function's name. */
static int raise_full(lua_State *L, Shared *h) {
  lua_pushfstring(L, "%s: full (it may grow to %I bytes; opts.max sets that)", h->fn,
                  (lua_Integer)h->size);
  return lua_error(L);
}

/* Raises the full error after unlocking, if r says so. */
static void check_stored(lua_State *L, Shared *h, int r) {
  if (r != 0) {
    unlock(h);
    raise_full(L, h);
  }
}

/* Copies v out into h->value, then unlocks; raises when out of memory. */
static void copy_out(lua_State *L, Shared *h, ShmBytes v) {
  h->value.len = 0;
  if (buffer_append(&h->value, v.data, v.len) != 0) {
    unlock(h);
    luaL_error(L, "%s: not enough memory", h->fn);
  }
}

static void push_value(lua_State *L, ShmBytes v) {
  codec_decode(L, v.data, v.len);
}

/*
** What copy_out left in h->value is decoded out of h: decoding allocates,
** the collector may then run a finalizer, and one that uses this same
** dict or list refills h->value. (Should Lua run out of memory before the
** copy is given back, it is leaked, never freed twice.)
*/
static Buffer take_copy(Shared *h) {
  Buffer copy = h->value;
  memset(&h->value, 0, sizeof h->value);
  return copy;
}

static void give_back_copy(Shared *h, Buffer copy) {
  buffer_free(&h->value);
  h->value = copy;
}

static void push_copied(lua_State *L, Shared *h) {
  Buffer copy = take_copy(h);
  push_value(L, bytes_of(&copy));
  give_back_copy(h, copy);
}

/* Encodes the value at arg into b, or raises a bad argument error naming what cannot travel. */
static ShmBytes encode_value(lua_State *L, Buffer *b, int arg) {
  char err[256];
  b->len = 0;
  if (codec_encode(L, arg, b, "value", err, sizeof err) != 0) luaL_argerror(L, arg, err);
  if (b->len > SHMTABLE_MAX_BYTES) luaL_argerror(L, arg, "value is over 4 GiB once encoded");
  return bytes_of(b);
}

/* ---- keys ----------------------------------------------------------------- */

enum KeyTag { KEY_STRING = 's', KEY_INTEGER = 'i', KEY_FLOAT = 'n', KEY_TRUE = 'T', KEY_FALSE = 'F' };

static void append_key(lua_State *L, Buffer *b, char tag, const void *p, size_t n) {
  b->len = 0;
  if (buffer_append(b, &tag, 1) != 0 || buffer_append(b, p, n) != 0)
    luaL_error(L, "not enough memory");
}

/* Encodes the key at arg into h->key, by Lua's rules: a float with an integer value is that integer. */
static ShmBytes encode_key(lua_State *L, Shared *h, int arg) {
  size_t len;
  const char *s;
  int is_integer;
  lua_Integer i;
  lua_Number x;
  switch (lua_type(L, arg)) {
    case LUA_TSTRING:
      s = lua_tolstring(L, arg, &len);
      if (len >= SHMTABLE_MAX_BYTES) luaL_argerror(L, arg, "key is over 4 GiB");
      append_key(L, &h->key, KEY_STRING, s, len);
      break;
    case LUA_TBOOLEAN:
      append_key(L, &h->key, lua_toboolean(L, arg) ? KEY_TRUE : KEY_FALSE, "", 0);
      break;
    case LUA_TNUMBER:
      i = lua_tointegerx(L, arg, &is_integer);
      if (is_integer) {
        append_key(L, &h->key, KEY_INTEGER, &i, sizeof i);
        break;
      }
      x = lua_tonumber(L, arg);
      if (x != x) luaL_argerror(L, arg, "key is NaN");
      append_key(L, &h->key, KEY_FLOAT, &x, sizeof x);
      break;
    default:
      luaL_typeerror(L, arg, "string, number or boolean key");
  }
  return bytes_of(&h->key);
}

static void push_key(lua_State *L, ShmBytes k) {
  lua_Integer i;
  lua_Number x;
  switch (k.data[0]) {
    case KEY_STRING:
      lua_pushlstring(L, k.data + 1, k.len - 1);
      break;
    case KEY_INTEGER:
      memcpy(&i, k.data + 1, sizeof i);
      lua_pushinteger(L, i);
      break;
    case KEY_FLOAT:
      memcpy(&x, k.data + 1, sizeof x);
      lua_pushnumber(L, x);
      break;
    default:
      lua_pushboolean(L, k.data[0] == KEY_TRUE);
  }
}

/* ---- reading and writing one key ------------------------------------------ */

/* Pushes the value of the key in h->key, or the value at 'otherwise'; removes the key if 'pop'. */
static int lookup(lua_State *L, Shared *h, int otherwise, int pop) {
  ShmBytes v;
  int found;
  lock(L, h);
  found = shmtable_get(h->t, bytes_of(&h->key), &v);
  if (found) {
    copy_out(L, h, v);
    if (pop) shmtable_remove(h->t, bytes_of(&h->key));
  }
  unlock(h);
  if (found) push_copied(L, h);
  else lua_pushvalue(L, otherwise);
  return 1;
}

static void store(lua_State *L, Shared *h, ShmBytes value) {
  int r;
  lock(L, h);
  r = shmtable_put(h->t, bytes_of(&h->key), value);
  check_stored(L, h, r);
  unlock(h);
}

static void remove_key(lua_State *L, Shared *h) {
  lock(L, h);
  shmtable_remove(h->t, bytes_of(&h->key));
  unlock(h);
}

/* __index: a method, else d[k]. */
static int dict_index(lua_State *L) {
  Shared *h = check_open(L, DICT_CLASS);
  lua_getfield(L, lua_upvalueindex(1), "methods");
  lua_pushvalue(L, 2);
  if (lua_rawget(L, -2) != LUA_TNIL) return 1;
  lua_settop(L, 2);
  encode_key(L, h, 2);
  return lookup(L, h, 3, 0);
}

static int dict_newindex(lua_State *L) {
  Shared *h = check_open(L, DICT_CLASS);
  encode_key(L, h, 2);
  if (lua_isnil(L, 3)) remove_key(L, h);
  else store(L, h, encode_value(L, &h->value, 3));
  return 0;
}

static int dict_get(lua_State *L) {
  Shared *h = check_open(L, DICT_CLASS);
  lua_settop(L, 3);
  encode_key(L, h, 2);
  return lookup(L, h, 3, 0);
}

static int dict_pop(lua_State *L) {
  Shared *h = check_open(L, DICT_CLASS);
  lua_settop(L, 3);
  encode_key(L, h, 2);
  return lookup(L, h, 3, 1);
}

static int dict_setdefault(lua_State *L) {
  Shared *h = check_open(L, DICT_CLASS);
  ShmBytes v;
  int found;
  lua_settop(L, 3);
  encode_key(L, h, 2);
  luaL_argcheck(L, !lua_isnil(L, 3), 3, "value expected");
  encode_value(L, &h->value, 3);
  lock(L, h);
  found = shmtable_get(h->t, bytes_of(&h->key), &v);
  if (found) copy_out(L, h, v);
  else check_stored(L, h, shmtable_put(h->t, bytes_of(&h->key), bytes_of(&h->value)));
  unlock(h);
  if (found) push_copied(L, h);
  else lua_pushvalue(L, 3);
  return 1;
}

static int same_bytes(ShmBytes a, ShmBytes b) {
  return a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
}

/* d:cas(k, old, new): nil as old means absent, nil as new removes. */
static int dict_cas(lua_State *L) {
  Shared *h = check_open(L, DICT_CLASS);
  Buffer *old;
  ShmBytes v;
  int found, swap, r = 0;
  lua_settop(L, 4);
  old = par_push_buffer(L);
  encode_key(L, h, 2);
  if (!lua_isnil(L, 3)) encode_value(L, old, 3);
  if (!lua_isnil(L, 4)) encode_value(L, &h->value, 4);
  lock(L, h);
  found = shmtable_get(h->t, bytes_of(&h->key), &v);
  swap = lua_isnil(L, 3) ? !found : found && same_bytes(v, bytes_of(old));
  if (swap && lua_isnil(L, 4)) shmtable_remove(h->t, bytes_of(&h->key));
  else if (swap) r = shmtable_put(h->t, bytes_of(&h->key), bytes_of(&h->value));
  check_stored(L, h, r);
  unlock(h);
  lua_pushboolean(L, swap);
  return 1;
}

/* ---- read-modify-write under the lock ------------------------------------- */

/* Pushes the value stored under h->key, or nil. The lock is held. */
static void push_stored(lua_State *L, Shared *h) {
  ShmBytes v;
  if (shmtable_get(h->t, bytes_of(&h->key), &v)) push_value(L, v);
  else lua_pushnil(L);
}

/* Stores the value on top under the key at 2, or removes the key for nil. The lock is held. */
static void store_top(lua_State *L, Shared *h) {
  int top = lua_gettop(L);
  encode_key(L, h, 2); /* again: a function that broke the rules may have changed it */
  if (lua_isnil(L, top)) {
    shmtable_remove(h->t, bytes_of(&h->key));
    return;
  }
  encode_value(L, &h->value, top);
  if (shmtable_put(h->t, bytes_of(&h->key), bytes_of(&h->value)) != 0) raise_full(L, h);
}

/* (d, k, n): adds n to d[k] (nil counts as 0) and pushes the sum. */
static int incr_locked(lua_State *L) {
  Shared *h = lua_touserdata(L, 1);
  push_stored(L, h);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushinteger(L, 0);
  }
  if (lua_type(L, -1) != LUA_TNUMBER)
    return luaL_error(L, "par.dict: incr of a %s value", luaL_typename(L, -1));
  lua_pushvalue(L, 3);
  lua_arith(L, LUA_OPADD);
  store_top(L, h);
  return 1;
}

/* (d, k, fn): stores fn(d[k]) and pushes it. */
static int update_locked(lua_State *L) {
  Shared *h = lua_touserdata(L, 1);
  lua_pushvalue(L, 3);
  push_stored(L, h);
  lua_call(L, 1, 1);
  store_top(L, h);
  return 1;
}

/* Runs step(d, k, x) holding the lock, which is released however it ends. */
static int run_locked(lua_State *L, Shared *h, lua_CFunction step) {
  int status;
  lock(L, h);
  lua_pushcfunction(L, step);
  lua_insert(L, 1);
  status = lua_pcall(L, 3, 1, 0);
  unlock(h);
  if (status != LUA_OK) return lua_error(L);
  return 1;
}

static int dict_incr(lua_State *L) {
  Shared *h = check_open(L, DICT_CLASS);
  encode_key(L, h, 2);
  if (lua_isnoneornil(L, 3)) {
    lua_settop(L, 2);
    lua_pushinteger(L, 1);
  }
  luaL_checktype(L, 3, LUA_TNUMBER);
  lua_settop(L, 3);
  return run_locked(L, h, incr_locked);
}

static int dict_update(lua_State *L) {
  Shared *h = check_open(L, DICT_CLASS);
  encode_key(L, h, 2);
  par_check_callable(L, 3);
  lua_settop(L, 3);
  return run_locked(L, h, update_locked);
}

/* ---- whole dicts ---------------------------------------------------------- */

static int append_bytes(Buffer *b, ShmBytes s) {
  uint32_t len = (uint32_t)s.len;
  return buffer_append(b, &len, sizeof len) != 0 || buffer_append(b, s.data, s.len) != 0;
}

static ShmBytes read_bytes(const char **p) {
  uint32_t len;
  ShmBytes s;
  memcpy(&len, *p, sizeof len);
  s.data = *p + sizeof len;
  s.len = len;
  *p = s.data + len;
  return s;
}

/* Pushes a plain table of every key and value, copied out at one moment. */
static void push_snapshot(lua_State *L, Shared *h) {
  uint64_t cursor = 0, n, i;
  ShmBytes k, v;
  Buffer copy;
  const char *p;
  lock(L, h);
  n = shmtable_count(h->t);
  h->value.len = 0;
  while (shmtable_next(h->t, &cursor, &k, &v))
    if (append_bytes(&h->value, k) || append_bytes(&h->value, v)) {
      unlock(h);
      luaL_error(L, "par.dict: not enough memory for a snapshot");
    }
  unlock(h);
  copy = take_copy(h);
  lua_createtable(L, 0, n < INT32_MAX ? (int)n : 0);
  for (i = 0, p = copy.data; i < n; i++) {
    push_key(L, read_bytes(&p));
    push_value(L, read_bytes(&p));
    lua_rawset(L, -3);
  }
  give_back_copy(h, copy);
}

static int dict_snapshot(lua_State *L) {
  push_snapshot(L, check_open(L, DICT_CLASS));
  return 1;
}

/* next, for the snapshot pairs iterates: the global one may have been replaced. */
static int snapshot_next(lua_State *L) {
  lua_settop(L, 2);
  if (lua_next(L, 1)) return 2;
  lua_pushnil(L);
  return 1;
}

static int dict_pairs(lua_State *L) {
  Shared *h = check_open(L, DICT_CLASS);
  lua_pushcfunction(L, snapshot_next);
  push_snapshot(L, h);
  lua_pushnil(L);
  return 3;
}

static int shared_len(lua_State *L, const char *class, uint64_t (*count)(ShmTable *)) {
  Shared *h = check_open(L, class);
  uint64_t n;
  lock(L, h);
  n = count(h->t);
  unlock(h);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

static int dict_len(lua_State *L) {
  return shared_len(L, DICT_CLASS, shmtable_count);
}

static int shared_clear(lua_State *L, const char *class) {
  Shared *h = check_open(L, class);
  lock(L, h);
  shmtable_clear(h->t);
  unlock(h);
  return 0;
}

static int dict_clear(lua_State *L) {
  return shared_clear(L, DICT_CLASS);
}

static const luaL_Reg dict_methods[] = {
  {"get", dict_get},
  {"incr", dict_incr},
  {"update", dict_update},
  {"setdefault", dict_setdefault},
  {"cas", dict_cas},
  {"pop", dict_pop},
  {"snapshot", dict_snapshot},
  {"clear", dict_clear},
  {NULL, NULL}
};

static const luaL_Reg dict_metamethods[] = {
  {"__index", dict_index},
  {"__newindex", dict_newindex},
  {"__len", dict_len},
  {"__pairs", dict_pairs},
  {NULL, NULL}
};

/* Pushes a new object of 'class' over a table of opts.max bytes (opts at 1). */
static Shared *push_shared(lua_State *L, const char *fn, const char *class,
                           const luaL_Reg *methods, const luaL_Reg *metamethods) {
  lua_Integer max = DEFAULT_MAX;
  Shared *h;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "max");
    if (!lua_isnil(L, -1)) max = luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    luaL_argcheck(L, max >= (lua_Integer)SHMTABLE_MIN_SIZE && max <= LARGEST_MAX, 1,
                  "opts.max must be 4096 .. 2^40 bytes");
  }
  h = lua_newuserdatauv(L, sizeof *h, 0);
  memset(h, 0, sizeof *h);
  h->fn = fn;
  par_set_bound_class(L, class, methods, metamethods, shared_release);
  h->t = shmtable_new((size_t)max);
  if (h->t == NULL) {
    par_push_syscall_error(L, fn, "system", "mmap");
    lua_error(L);
  }
  h->size = (size_t)max;
  return h;
}

int par_dict(lua_State *L) {
  push_shared(L, "par.dict", DICT_CLASS, dict_methods, dict_metamethods);
  return 1;
}

/* ---- par.list ------------------------------------------------------------- */

/* __index: l[i] for an integer (nil outside 1 .. #l), else a method. */
static int list_index(lua_State *L) {
  Shared *h = check_open(L, LIST_CLASS);
  int is_integer;
  lua_Integer i = lua_tointegerx(L, 2, &is_integer);
  int found;
  if (!is_integer || lua_type(L, 2) != LUA_TNUMBER) {
    lua_getfield(L, lua_upvalueindex(1), "methods");
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
  }
  lock(L, h);
  found = i >= 1 && (uint64_t)i <= shmtable_length(h->t);
  if (found) copy_out(L, h, shmtable_item(h->t, (uint64_t)i - 1));
  unlock(h);
  if (found) push_copied(L, h);
  else lua_pushnil(L);
  return 1;
}

static int list_newindex(lua_State *L) {
  Shared *h = check_open(L, LIST_CLASS);
  lua_Integer i = luaL_checkinteger(L, 2);
  uint64_t n;
  encode_value(L, &h->value, 3);
  lock(L, h);
  n = shmtable_length(h->t);
  if (i < 1 || (uint64_t)i > n) {
    unlock(h);
    return luaL_argerror(L, 2, lua_pushfstring(L, "index %I out of range 1 .. %I", i,
                                              (lua_Integer)n));
  }
  check_stored(L, h, shmtable_set_item(h->t, (uint64_t)i - 1, bytes_of(&h->value)));
  unlock(h);
  return 0;
}

static int list_len(lua_State *L) {
  return shared_len(L, LIST_CLASS, shmtable_length);
}

static int list_append(lua_State *L) {
  Shared *h = check_open(L, LIST_CLASS);
  uint64_t n;
  encode_value(L, &h->value, 2);
  lock(L, h);
  check_stored(L, h, shmtable_append(h->t, bytes_of(&h->value)));
  n = shmtable_length(h->t);
  unlock(h);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* Appends every element of the list t, or none when they do not all fit. */
static int list_extend(lua_State *L) {
  Shared *h = check_open(L, LIST_CLASS);
  Buffer *all = par_push_buffer(L);
  lua_Integer n, i;
  const char *p;
  int r = 0;
  luaL_checktype(L, 2, LUA_TTABLE);
  n = (lua_Integer)lua_rawlen(L, 2);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    if (append_bytes(all, encode_value(L, &h->value, lua_gettop(L))))
      return luaL_error(L, "par.list: not enough memory");
    lua_pop(L, 1);
  }
  lock(L, h);
  for (i = 0, p = all->data; i < n && r == 0; i++) r = shmtable_append(h->t, read_bytes(&p));
  if (r != 0)
    while (--i > 0) shmtable_drop_last(h->t);
  check_stored(L, h, r);
  unlock(h);
  return 0;
}

static int list_pop(lua_State *L) {
  Shared *h = check_open(L, LIST_CLASS);
  uint64_t n;
  lock(L, h);
  n = shmtable_length(h->t);
  if (n > 0) {
    copy_out(L, h, shmtable_item(h->t, n - 1));
    shmtable_drop_last(h->t);
  }
  unlock(h);
  if (n > 0) push_copied(L, h);
  else lua_pushnil(L);
  return 1;
}

/* A plain list of every element, copied out at one moment. */
static int list_snapshot(lua_State *L) {
  Shared *h = check_open(L, LIST_CLASS);
  uint64_t n, i;
  Buffer copy;
  const char *p;
  lock(L, h);
  n = shmtable_length(h->t);
  h->value.len = 0;
  for (i = 0; i < n; i++)
    if (append_bytes(&h->value, shmtable_item(h->t, i))) {
      unlock(h);
      return luaL_error(L, "par.list: not enough memory for a snapshot");
    }
  unlock(h);
  copy = take_copy(h);
  lua_createtable(L, n < INT32_MAX ? (int)n : 0, 0);
  for (i = 0, p = copy.data; i < n; i++) {
    push_value(L, read_bytes(&p));
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  give_back_copy(h, copy);
  return 1;
}

static int list_clear(lua_State *L) {
  return shared_clear(L, LIST_CLASS);
}

static const luaL_Reg list_methods[] = {
  {"append", list_append},
  {"extend", list_extend},
  {"pop", list_pop},
  {"snapshot", list_snapshot},
  {"clear", list_clear},
  {NULL, NULL}
};

static const luaL_Reg list_metamethods[] = {
  {"__index", list_index},
  {"__newindex", list_newindex},
  {"__len", list_len},
  {NULL, NULL}
};

int par_list(lua_State *L) {
  push_shared(L, "par.list", LIST_CLASS, list_methods, list_metamethods);
  return 1;
}
