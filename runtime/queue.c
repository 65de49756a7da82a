/*
** par.queue: long-lived workers fed over time. Workers fork when the queue
** is made; items are pushed encoded, at most two ahead per worker, and
** results wait in the parent until popped, in completion or push order.
**
** An item between push and its result lives in a slot that holds its id
** and its encoded frame; frames name the slot, so the hot path needs no
** Lua table keyed by ever-growing ids. Finished results wait by id.
*/
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/uio.h>

#include <lauxlib.h>

#include "buffer.h"
#include "codec.h"
#include "dispatch.h"
#include "frame.h"
#include "lpar.h"
#include "lutil.h"
#include "options.h"
#include "pool.h"
#include "proc.h"
#include "worker.h"

#define QUEUE_METATABLE "par.Queue"
#define AHEAD 2 /* items sent to a worker before it answers */

/* What the queue userdata keeps in its user values. */
enum {
  UV_POOL = 1,
  UV_FN,
  UV_INIT,     /* the init function, or nil */
  UV_RESULTS,  /* id -> result, until popped */
  UV_DONE,     /* id -> true or its error, from its results until popped */
  UV_FAILURE,  /* an init error: the queue is dead */
  UV_ATTEMPTS, /* id -> times started, for items that failed and run again */
  UV_COUNT = UV_ATTEMPTS
};

/* An item between push and its result. Slots are numbered from 1. */
typedef struct Slot {
  lua_Integer id; /* 0 when free */
  int raw;        /* its results stay JSON text (par_queue_push_raw) */
  Buffer frame;   /* FRAME_ITEM: the slot number, the id, then the item's JSON */
} Slot;

/* Integers in arrival order, growing as needed. */
typedef struct Ring {
  lua_Integer *v;
  size_t head, count, cap;
} Ring;

typedef struct Queue {
  Pool *pool;
  lua_Integer capacity;
  int ordered, collect;
  int closed, stopped;
  lua_Integer pushed, popped;   /* counts; ids are 1..pushed */
  lua_Integer running;          /* pushed and not finished */
  lua_Integer next_in_order;    /* ordered queues: the id pop returns next */
  lua_Integer retries;
  int seeded;                   /* opts.seed was given, for every worker it starts */
  lua_Integer seed;
  Slot *slots;
  int slot_count;
  Ring free_slots;
  Ring backlog;                 /* slots waiting for a worker, in push order */
  Ring ready;                   /* finished ids in completion order (unordered queues) */
  Buffer scratch;               /* the next item's frame, before it has a slot */
  lua_Integer *sent;            /* AHEAD slots per worker, oldest first */
  int *sent_count;
  int *sent_before;             /* dispatch's scratch: sent_count before it */
  int dead;                     /* on_death's worker, for holds() */
} Queue;

static const char *const queue_options[] = {
  "workers", "init", "capacity", "ordered", "on_error", "timeout", "retries", "seed", NULL
};

static Queue *check_queue(lua_State *L) {
  return luaL_checkudata(L, 1, QUEUE_METATABLE);
}

/*
** A queue for push, pop, results and close: only in the process that made
** it. A worker holds a copy of the parent's queues, whose pipes it closed
** when it was forked.
*/
static Queue *check_own_queue(lua_State *L) {
  Queue *q = check_queue(L);
  if (q->pool != NULL && q->pool->owner != proc_self())
    luaL_error(L, "par.queue: the queue belongs to process %d", (int)q->pool->owner);
  return q;
}

/* Pushes user value 'uv' of the queue at index 1. */
static void get_uv(lua_State *L, int uv) {
  lua_getiuservalue(L, 1, uv);
}

/* Sets t[key] = value on top (popped), for the user value table 'uv'. */
static void set_in(lua_State *L, int uv, lua_Integer key) {
  get_uv(L, uv);
  lua_insert(L, -2);
  lua_rawseti(L, -2, key);
  lua_pop(L, 1);
}

static void clear_in(lua_State *L, int uv, lua_Integer key) {
  lua_pushnil(L);
  set_in(L, uv, key);
}

static int ring_grow(Ring *r) {
  size_t cap = r->cap ? 2 * r->cap : 16, i;
  lua_Integer *v = malloc(cap * sizeof *v);
  if (v == NULL) return -1;
  for (i = 0; i < r->count; i++) v[i] = r->v[(r->head + i) % r->cap];
  free(r->v);
  r->v = v;
  r->head = 0;
  r->cap = cap;
  return 0;
}

static void ring_push(lua_State *L, Ring *r, lua_Integer x) {
  if (r->count == r->cap && ring_grow(r) != 0) luaL_error(L, "par.queue: out of memory");
  r->v[(r->head + r->count++) % r->cap] = x;
}

static void ring_push_front(lua_State *L, Ring *r, lua_Integer x) {
  if (r->count == r->cap && ring_grow(r) != 0) luaL_error(L, "par.queue: out of memory");
  r->head = (r->head + r->cap - 1) % r->cap;
  r->v[r->head] = x;
  r->count++;
}

static lua_Integer ring_front(const Ring *r) {
  return r->v[r->head];
}

static lua_Integer ring_pop(Ring *r) {
  lua_Integer x = r->v[r->head];
  r->head = (r->head + 1) % r->cap;
  r->count--;
  return x;
}

static Slot *slot_of(Queue *q, lua_Integer s) {
  return &q->slots[s - 1];
}

/* Doubles the slots; the new ones go on the free list. */
static void grow_slots(lua_State *L, Queue *q) {
  int count = q->slot_count ? 2 * q->slot_count : 8, s;
  Slot *slots = realloc(q->slots, (size_t)count * sizeof *slots);
  if (slots == NULL) luaL_error(L, "par.queue: out of memory");
  memset(slots + q->slot_count, 0, (size_t)(count - q->slot_count) * sizeof *slots);
  q->slots = slots;
  for (s = q->slot_count + 1; s <= count; s++) ring_push(L, &q->free_slots, s);
  q->slot_count = count;
}

/* Gives the frame in scratch a slot, for item id; returns the slot. */
static lua_Integer take_slot(lua_State *L, Queue *q, lua_Integer id) {
  Slot *slot;
  Buffer frame;
  lua_Integer s;
  if (q->free_slots.count == 0) grow_slots(L, q);
  s = ring_pop(&q->free_slots);
  slot = slot_of(q, s);
  slot->id = id;
  frame = slot->frame; /* swap: the slot's old buffer becomes the next scratch */
  slot->frame = q->scratch;
  q->scratch = frame;
  frame_put64(slot->frame.data + FRAME_HEADER + ITEM_SLOT, (uint64_t)s);
  frame_put64(slot->frame.data + FRAME_HEADER + ITEM_ID, (uint64_t)id);
  return s;
}

static void free_queue_memory(Queue *q) {
  int s;
  for (s = 0; s < q->slot_count; s++) buffer_free(&q->slots[s].frame);
  free(q->slots);
  free(q->free_slots.v);
  free(q->backlog.v);
  free(q->ready.v);
  buffer_free(&q->scratch);
  q->slots = NULL;
  q->slot_count = 0;
  memset(&q->free_slots, 0, sizeof q->free_slots);
  memset(&q->backlog, 0, sizeof q->backlog);
  memset(&q->ready, 0, sizeof q->ready);
}

/* Forks worker k; returns NULL, or the system call that failed (errno set). */
static const char *start_worker(lua_State *L, Queue *q, int k) {
  WorkerTask task = {0, 0, 0, q->pool->timeout_ns > 0, 0, 0, 0, q->seeded, q->seed};
  int top = lua_gettop(L);
  const char *failed;
  get_uv(L, UV_FN);
  task.fn = lua_gettop(L);
  get_uv(L, UV_INIT);
  if (!lua_isnil(L, -1)) task.init = lua_gettop(L);
  q->sent_count[k] = 0;
  failed = pool_start(L, q->pool, k, 1, worker_main, &task);
  lua_settop(L, top);
  return failed;
}

/* Sends worker k its items sent[from..], in one write. */
static void send_items(Queue *q, int k, int from) {
  struct iovec frames[AHEAD];
  int i, n = q->sent_count[k] - from;
  for (i = 0; i < n; i++) {
    Slot *slot = slot_of(q, q->sent[k * AHEAD + from + i]);
    frames[i].iov_base = slot->frame.data;
    frames[i].iov_len = slot->frame.len;
  }
  pool_sendv(q->pool, k, frames, n); /* if it died, pool_wait says so */
}

/*
** Hands items from the backlog to workers with room: one at a time to the
** least loaded, so uneven items spread, then each worker's share in one write.
*/
static void dispatch(Queue *q) {
  int k, depth;
  for (k = 0; k < q->pool->size; k++) q->sent_before[k] = q->sent_count[k];
  for (depth = 1; depth <= AHEAD; depth++)
    for (k = 0; k < q->pool->size && q->backlog.count > 0; k++)
      if (q->pool->workers[k].pid != 0 && q->sent_count[k] < depth)
        q->sent[k * AHEAD + q->sent_count[k]++] = ring_pop(&q->backlog);
  for (k = 0; k < q->pool->size; k++)
    if (q->sent_count[k] > q->sent_before[k]) send_items(q, k, q->sent_before[k]);
}

static int some_worker_idle(Queue *q) {
  int k;
  for (k = 0; k < q->pool->size; k++)
    if (q->pool->workers[k].pid != 0 && q->sent_count[k] == 0) return 1;
  return 0;
}

/* Forgets slot s from worker k's items in hand. */
static void unsend(Queue *q, int k, lua_Integer s) {
  lua_Integer *slots = &q->sent[k * AHEAD];
  int i;
  for (i = 0; i < q->sent_count[k]; i++) {
    if (slots[i] != s) continue;
    memmove(&slots[i], &slots[i + 1], (size_t)(q->sent_count[k] - i - 1) * sizeof *slots);
    q->sent_count[k]--;
    return;
  }
}

/* Marks the item in slot s finished with the outcome on top (true or its error): it waits to be popped. */
static void finish(lua_State *L, Queue *q, lua_Integer s) {
  lua_Integer id = slot_of(q, s)->id;
  set_in(L, UV_DONE, id);
  slot_of(q, s)->id = 0;
  ring_push(L, &q->free_slots, s);
  q->running--;
  if (!q->ordered) ring_push(L, &q->ready, id);
}

/* Puts slot s back at the front of the backlog. */
static void requeue(lua_State *L, Queue *q, lua_Integer s) {
  ring_push_front(L, &q->backlog, s);
}

/* Whether failed item id runs again; counts the attempt. */
static int may_retry(lua_State *L, Queue *q, lua_Integer id) {
  int again;
  get_uv(L, UV_ATTEMPTS);
  again = dispatch_may_retry(L, lua_gettop(L), id, q->retries);
  lua_pop(L, 1);
  return again;
}

/* Item id in slot s failed with the error on top: it runs again, or that is its outcome. */
static void item_failed(lua_State *L, Queue *q, lua_Integer s) {
  lua_Integer id = slot_of(q, s)->id;
  if (may_retry(L, q, id)) {
    lua_pop(L, 1);
    requeue(L, q, s); /* first in line */
    return;
  }
  get_uv(L, UV_ATTEMPTS);
  lua_insert(L, -2);
  dispatch_note_attempts(L, -2, id);
  lua_remove(L, -2);
  finish(L, q, s);
}

/* The slot a worker's frame names, checked. */
static lua_Integer named_slot(lua_State *L, Queue *q, lua_Integer s) {
  if (s < 1 || s > q->slot_count || slot_of(q, s)->id == 0)
    luaL_error(L, "par.queue: a worker answered for an item it does not have");
  return s;
}

static void on_results(lua_State *L, Queue *q, int k, const char *payload, size_t len) {
  lua_Integer s, id;
  if (len < RESULTS_LIST) luaL_error(L, "par.queue: short message from a worker");
  s = named_slot(L, q, (lua_Integer)frame_get64(payload + RESULTS_LO));
  id = slot_of(q, s)->id;
  unsend(q, k, s);
  get_uv(L, UV_RESULTS);
  if (slot_of(q, s)->raw) {
    lua_pushlstring(L, payload + RESULTS_LIST, len - RESULTS_LIST);
    lua_rawseti(L, -2, id);
  } else {
    codec_decode_into(L, lua_gettop(L), id, payload + RESULTS_LIST, len - RESULTS_LIST);
  }
  lua_pop(L, 1);
  lua_pushboolean(L, 1);
  finish(L, q, s);
}

/* Makes the error on top of the stack the queue's end: later calls raise it. */
static void kill_queue(lua_State *L, Queue *q) {
  lua_setiuservalue(L, 1, UV_FAILURE);
  pool_close(q->pool, 1);
  q->stopped = 1;
}

static void on_error(lua_State *L, Queue *q, int k, char type, const char *payload, size_t len) {
  lua_Integer s = dispatch_decode_error(L, q->pool->fn, payload, len);
  if (type == FRAME_INIT_ERROR) {
    par_make_error(L, q->pool->fn, 0, "init");
    kill_queue(L, q);
    return;
  }
  named_slot(L, q, s);
  unsend(q, k, s);
  par_make_error(L, q->pool->fn, slot_of(q, s)->id, "error");
  item_failed(L, q, s);
}

/* Whether dead worker k (the context's queue) had slot s in hand. */
static int holds(void *ctx, lua_Integer s) {
  Queue *q = ctx;
  int i;
  for (i = 0; i < q->sent_count[q->dead]; i++)
    if (q->sent[q->dead * AHEAD + i] == s) return 1;
  return 0;
}

/* A worker died: its running item failed, the others it held go back. */
static void on_death(lua_State *L, Queue *q, int k, int has_init) {
  lua_Integer *slots = &q->sent[k * AHEAD];
  lua_Integer dead = 0;
  const char *failed;
  int i;
  if (q->stopped) return;
  if (dispatch_init_died(L, q->pool, k, has_init)) {
    kill_queue(L, q);
    return;
  }
  q->dead = k;
  if (q->sent_count[k] > 0) dead = dispatch_blame(q->pool, k, holds, q, slots[0]);
  for (i = q->sent_count[k] - 1; i >= 0; i--)
    if (slots[i] != dead) requeue(L, q, slots[i]);
  q->sent_count[k] = 0;
  if (dead != 0) {
    dispatch_push_death(L, q->pool, k, dead, slot_of(q, dead)->id);
    item_failed(L, q, dead);
  }
  failed = start_worker(L, q, k);
  if (failed != NULL && pool_live(q->pool) == 0) { /* else the others carry on */
    par_push_syscall_error(L, q->pool->fn, "fork", failed);
    kill_queue(L, q);
  }
}

/* Stops the workers once a closed queue has nothing left to run. */
static void stop_if_done(Queue *q) {
  if (q->closed && q->running == 0 && !q->stopped) {
    pool_close(q->pool, 0);
    q->stopped = 1;
  }
}

static int has_init(lua_State *L) {
  int yes = lua_getiuservalue(L, 1, UV_INIT) != LUA_TNIL;
  lua_pop(L, 1);
  return yes;
}

/* Raises the init failure, if the queue has one. */
static void check_failure(lua_State *L) {
  if (lua_getiuservalue(L, 1, UV_FAILURE) != LUA_TNIL) lua_error(L);
  lua_pop(L, 1);
}

static void on_interrupt(lua_State *L, Queue *q, int sig) {
  par_push_interrupted(L, q->pool->fn, sig, "waiting for workers");
  kill_queue(L, q);
}

/* The shorter of the caller's wait and the time to the next item time-out. */
static int wait_limit(Queue *q, int timeout_ms) {
  int overdue = pool_until_overdue(q->pool);
  if (overdue < 0) return timeout_ms;
  return (timeout_ms < 0 || overdue < timeout_ms) ? overdue : timeout_ms;
}

/*
** Waits up to timeout_ms for one event from the workers and takes it in.
** Returns 0 when none came.
*/
static int take_event(lua_State *L, Queue *q, int timeout_ms) {
  PoolEvent ev;
  dispatch(q);
  pool_wait(L, q->pool, wait_limit(q, timeout_ms), &ev);
  if (ev.kind == POOL_FRAME && ev.type == FRAME_RESULTS)
    on_results(L, q, ev.worker, ev.payload, ev.len);
  else if (ev.kind == POOL_FRAME)
    on_error(L, q, ev.worker, ev.type, ev.payload, ev.len);
  else if (ev.kind == POOL_EXIT)
    on_death(L, q, ev.worker, has_init(L));
  else if (ev.kind == POOL_INTERRUPT)
    on_interrupt(L, q, ev.worker);
  pool_kill_overdue(q->pool);
  check_failure(L);
  dispatch(q);
  stop_if_done(q);
  return ev.kind != POOL_TIMEOUT;
}

/* Encodes the item at index 2 into scratch as the frame that will carry it. */
static void encode_item(lua_State *L, Queue *q) {
  Buffer *b = &q->scratch;
  char err[256];
  b->len = 0;
  if (frame_begin(b, FRAME_ITEM) != 0 || buffer_reserve(b, ITEM_VALUE) != 0)
    luaL_error(L, "par.queue: out of memory");
  b->len += ITEM_VALUE; /* the slot number and id, once it has them */
  if (codec_encode(L, 2, b, "item", err, sizeof err) != 0) luaL_argerror(L, 2, err);
  frame_finish(b, 0);
}

static int push(lua_State *L, int raw) {
  Queue *q = check_own_queue(L);
  lua_Integer id, s;
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  check_failure(L);
  if (q->closed) return luaL_error(L, "par.queue: push on a closed queue");
  while (q->running >= q->capacity) take_event(L, q, -1);
  encode_item(L, q); /* after the wait, which may reuse scratch's buffer */
  id = ++q->pushed;
  q->running++;
  s = take_slot(L, q, id);
  slot_of(q, s)->raw = raw;
  ring_push(L, &q->backlog, s);
  if (some_worker_idle(q)) dispatch(q); /* otherwise it goes with others, before a wait */
  lua_pushinteger(L, id);
  return 1;
}

static int queue_push(lua_State *L) {
  return push(L, 0);
}

int par_queue_push_raw(lua_State *L) {
  return push(L, 1);
}

/* The id pop can return now, or 0. */
static lua_Integer poppable(lua_State *L, Queue *q) {
  lua_Integer id = 0;
  if (q->ordered) {
    get_uv(L, UV_DONE);
    if (lua_rawgeti(L, -1, q->next_in_order) != LUA_TNIL) id = q->next_in_order;
    lua_pop(L, 2);
  } else if (q->ready.count > 0) {
    id = ring_front(&q->ready);
  }
  return id;
}

/* Returns id's result, or raises its error (collect: id, nil, err). */
static int deliver(lua_State *L, Queue *q, lua_Integer id) {
  if (q->ordered) q->next_in_order++;
  else ring_pop(&q->ready);
  q->popped++;
  lua_pushinteger(L, id);
  get_uv(L, UV_RESULTS);
  lua_rawgeti(L, -1, id);
  lua_replace(L, -2);
  get_uv(L, UV_DONE);
  lua_rawgeti(L, -1, id);
  lua_replace(L, -2);
  clear_in(L, UV_RESULTS, id);
  clear_in(L, UV_DONE, id);
  if (lua_type(L, -1) == LUA_TBOOLEAN) {
    lua_pop(L, 1);
    return 2;
  }
  if (!q->collect) lua_error(L);
  return 3;
}

/* Milliseconds left before deadline, at least 0; -1 for no deadline. */
static int ms_left(int64_t deadline) {
  int64_t left;
  if (deadline < 0) return -1;
  left = deadline - par_now_ns();
  return left <= 0 ? 0 : (int)((left + 999999) / 1000000);
}

static int queue_pop(lua_State *L) {
  Queue *q = check_own_queue(L);
  int64_t deadline = par_deadline(L, 2);
  int idle = 0; /* the last look took nothing in */
  lua_settop(L, 1);
  for (;;) {
    lua_Integer id = poppable(L, q);
    if (id != 0) return deliver(L, q, id);
    check_failure(L);
    if (q->popped == q->pushed) {
      if (q->closed) return 0;
      if (deadline < 0)
        return luaL_error(L, "par.queue: pop on an open queue with nothing left to pop would wait forever");
    }
    if (idle && ms_left(deadline) == 0) {
      lua_pushnil(L);
      lua_pushliteral(L, "timeout");
      return 2;
    }
    /* past the deadline it still takes in all that has come */
    idle = !take_event(L, q, ms_left(deadline));
  }
}

static int queue_results_step(lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  return queue_pop(L);
}

static int queue_results(lua_State *L) {
  check_own_queue(L);
  lua_settop(L, 1);
  lua_pushcclosure(L, queue_results_step, 1);
  return 1;
}

static int queue_close(lua_State *L) {
  Queue *q = check_own_queue(L);
  q->closed = 1;
  stop_if_done(q);
  return 0;
}

static int queue_capacity(lua_State *L) {
  Queue *q = check_queue(L);
  lua_pushinteger(L, q->capacity);
  return 1;
}

static int queue_pending(lua_State *L) {
  Queue *q = check_queue(L);
  lua_pushinteger(L, q->pushed - q->popped);
  return 1;
}

/* Collected, or closed as a to-be-closed variable: no worker outlives it. */
static int queue_gc(lua_State *L) {
  Queue *q = check_queue(L);
  q->closed = 1;
  if (!q->stopped && q->pool != NULL) pool_close(q->pool, 1);
  q->stopped = 1;
  free_queue_memory(q);
  return 0;
}

static const luaL_Reg queue_methods[] = {
  {"push", queue_push},
  {"pop", queue_pop},
  {"results", queue_results},
  {"close", queue_close},
  {"pending", queue_pending},
  {"capacity", queue_capacity},
  {NULL, NULL}
};

static Queue *new_queue(lua_State *L, const char *name, int size) {
  size_t bytes = sizeof(Queue) + (size_t)size * (AHEAD * sizeof(lua_Integer) + 2 * sizeof(int));
  Queue *q = lua_newuserdatauv(L, bytes, UV_COUNT);
  int uv;
  memset(q, 0, bytes);
  q->sent = (lua_Integer *)(q + 1);
  q->sent_count = (int *)(q->sent + (size_t)size * AHEAD);
  q->sent_before = q->sent_count + size;
  q->next_in_order = 1;
  par_set_class(L, QUEUE_METATABLE, queue_methods, queue_gc, 1);
  for (uv = UV_RESULTS; uv <= UV_COUNT; uv++) {
    if (uv == UV_FAILURE) continue;
    lua_newtable(L);
    lua_setiuservalue(L, -2, uv);
  }
  q->pool = pool_new(L, name, size);
  lua_setiuservalue(L, -2, UV_POOL);
  return q;
}

int par_queue(lua_State *L) {
  ParOptions o;
  Queue *q;
  int size, k;
  const char *name;
  par_check_callable(L, 1);
  lua_settop(L, 3);
  /* par.imap's own queue names it; the pool keeps the name as a pointer to a literal */
  name = lua_type(L, 3) == LUA_TSTRING && strcmp(lua_tostring(L, 3), "par.imap") == 0
         ? "par.imap" : "par.queue";
  options_read(L, 2, queue_options, &o);
  par_check_fork_safe(L, name);
  size = o.workers > 0 ? o.workers : options_default_workers();
  q = new_queue(L, name, size);
  q->capacity = o.capacity > 0 ? o.capacity : 4 * size;
  q->ordered = o.ordered == 1;
  q->collect = o.collect;
  q->pool->timeout_ns = (int64_t)(o.timeout * 1e9);
  q->retries = o.retries;
  q->seeded = o.seeded;
  q->seed = o.seed;
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, UV_FN);
  if (o.init != 0) {
    lua_pushvalue(L, o.init);
    lua_setiuservalue(L, -2, UV_INIT);
  }
  lua_replace(L, 1); /* methods below expect the queue at index 1 */
  lua_settop(L, 1);
  for (k = 0; k < size; k++) {
    const char *failed = start_worker(L, q, k);
    if (failed == NULL) continue;
    if (k == 0) { /* none started; with some, it goes on with those */
      par_push_syscall_error(L, name, "fork", failed);
      lua_error(L);
    }
    break;
  }
  return 1;
}
