/*
** par.map: runs fn over a list in forked workers and puts the results back
** in order. Items reach the workers through the fork; only results travel.
** Work is handed out in ranges whose size adapts to the measured cost of an
** item, two ranges ahead per worker so none waits for the parent.
*/
#include <errno.h>
#include <string.h>

#include <lauxlib.h>

#include "codec.h"
#include "frame.h"
#include "lpar.h"
#include "options.h"
#include "pool.h"
#include "proc.h"
#include "worker.h"

#define AHEAD 2                  /* ranges queued per worker */
#define TARGET_RANGE_NS 4000000  /* aim each range at 4 ms of work */

typedef struct Range {
  lua_Integer lo, hi;
} Range;

/* A worker's ranges in the order it will answer them. */
typedef struct Inflight {
  Range r[AHEAD];
  int count;
} Inflight;

typedef struct MapRun {
  lua_State *L;
  Pool *pool;
  ParOptions opts;
  WorkerTask task;
  lua_Integer n;
  lua_Integer next;     /* first item not yet handed out */
  lua_Integer done;     /* items with a result or an error */
  double item_ns;       /* estimated cost of one item, 0 until measured */
  Range *leftover;      /* ranges taken back from crashed workers */
  int leftovers, leftover_cap, leftover_slot;
  Inflight *inflight;   /* one per worker */
  int results, errors;  /* stack indices */
} MapRun;

static const char *const map_options[] = {"workers", "chunk", "on_error", "init", NULL};

static lua_Integer range_size(MapRun *m) {
  lua_Integer left = m->n - m->next + 1;
  lua_Integer fair = left / (2 * m->pool->size); /* keep the tail balanced */
  lua_Integer size;
  if (m->opts.chunk > 0) return m->opts.chunk;
  if (m->item_ns <= 0) return 1;
  size = (lua_Integer)(TARGET_RANGE_NS / m->item_ns);
  if (size > fair) size = fair;
  return size < 1 ? 1 : size;
}

/* The next range to hand out, or 0 when everything has been handed out. */
static int next_range(MapRun *m, Range *r) {
  if (m->leftovers > 0) {
    *r = m->leftover[--m->leftovers];
    return 1;
  }
  if (m->next > m->n) return 0;
  r->lo = m->next;
  r->hi = r->lo + range_size(m) - 1;
  if (r->hi > m->n) r->hi = m->n;
  m->next = r->hi + 1;
  return 1;
}

/* Sends worker k ranges until it has 'depth' of them. */
static void feed_to(MapRun *m, int k, int depth) {
  Inflight *q = &m->inflight[k];
  Range r;
  while (q->count < depth && next_range(m, &r)) {
    char payload[16];
    frame_put64(payload, (uint64_t)r.lo);
    frame_put64(payload + 8, (uint64_t)r.hi);
    q->r[q->count++] = r;
    if (pool_send(m->pool, k, FRAME_JOB, payload, sizeof payload) != 0)
      return; /* it died: its end of file comes through pool_wait */
  }
}

static void feed(MapRun *m, int k) {
  feed_to(m, k, AHEAD);
}

static void start_worker(MapRun *m, int k) {
  if (pool_start(m->L, m->pool, k, worker_main, &m->task) != 0)
    luaL_error(m->L, "par.map: cannot start a worker: %s", strerror(errno));
  m->inflight[k].count = 0;
}

/* Raises the error on top of the stack after stopping every worker. */
static void fail(MapRun *m) {
  pool_close(m->pool, 1);
  lua_error(m->L);
}

/* Files the error on top of the stack for its item, or raises it. */
static void item_failed(MapRun *m, lua_Integer index) {
  if (!m->opts.collect) fail(m);
  if (lua_isnil(m->L, m->errors)) {
    lua_newtable(m->L);
    lua_replace(m->L, m->errors);
  }
  lua_rawseti(m->L, m->errors, index);
}

static void on_results(MapRun *m, int k, const char *payload, size_t len) {
  Inflight *q = &m->inflight[k];
  lua_Integer lo, count;
  int64_t elapsed;
  if (len < 16 || q->count == 0)
    luaL_error(m->L, "par.map: unexpected results from worker %d", (int)m->pool->workers[k].pid);
  lo = (lua_Integer)frame_get64(payload);
  elapsed = (int64_t)frame_get64(payload + 8);
  count = codec_decode_into(m->L, m->results, lo, payload + 16, len - 16);
  if (lo != q->r[0].lo || count != q->r[0].hi - lo + 1)
    luaL_error(m->L, "par.map: worker %d answered the wrong range", (int)m->pool->workers[k].pid);
  m->done += count;
  m->item_ns = m->item_ns > 0 ? (m->item_ns + (double)elapsed / count) / 2
                              : (double)elapsed / count;
  q->count--;
  memmove(&q->r[0], &q->r[1], (size_t)q->count * sizeof(Range));
  feed(m, k);
}

static void on_error(MapRun *m, int k, char type, const char *payload, size_t len) {
  lua_Integer index;
  if (len < 8) luaL_error(m->L, "par.map: short error message from a worker");
  index = (lua_Integer)frame_get64(payload);
  codec_decode(m->L, payload + 8, len - 8);
  if (type == FRAME_INIT_ERROR) {
    par_make_error(m->L, "par.map", 0, "init");
    fail(m);
  }
  par_make_error(m->L, "par.map", index, "error");
  (void)k;
  item_failed(m, index);
}

/* Which item a dead worker was running: the one it said, else its first unanswered one. */
static lua_Integer crashed_item(MapRun *m, int k) {
  lua_Integer item = (lua_Integer)m->pool->progress[k].item;
  Range *first = &m->inflight[k].r[0];
  return (item >= first->lo && item <= first->hi) ? item : first->lo;
}

/* Doubles the room for taken-back ranges; the memory is a userdata at a fixed slot. */
static void grow_leftover(MapRun *m) {
  int cap = m->leftover_cap * 2 + AHEAD + 1;
  Range *bigger = lua_newuserdatauv(m->L, (size_t)cap * sizeof(Range), 0);
  if (m->leftovers > 0) memcpy(bigger, m->leftover, (size_t)m->leftovers * sizeof(Range));
  lua_replace(m->L, m->leftover_slot);
  m->leftover = bigger;
  m->leftover_cap = cap;
}

/* Hands the unanswered items of a dead worker, all but 'crashed', to others. */
static void take_back(MapRun *m, int k, lua_Integer crashed) {
  Inflight *q = &m->inflight[k];
  Range parts[AHEAD + 1];
  int i, count = 0;
  if (q->r[0].lo < crashed) parts[count++] = (Range){q->r[0].lo, crashed - 1};
  if (crashed < q->r[0].hi) parts[count++] = (Range){crashed + 1, q->r[0].hi};
  for (i = 1; i < q->count; i++) parts[count++] = q->r[i];
  if (m->leftovers + count > m->leftover_cap) grow_leftover(m);
  for (i = count - 1; i >= 0; i--) m->leftover[m->leftovers++] = parts[i];
  q->count = 0;
}

static void on_exit(MapRun *m, int k) {
  char how[64];
  lua_Integer item;
  proc_describe_status(m->pool->workers[k].status, how, sizeof how);
  if (m->inflight[k].count == 0) {
    if (m->next <= m->n || m->leftovers > 0) start_worker(m, k), feed(m, k);
    return;
  }
  item = crashed_item(m, k);
  take_back(m, k, item);
  par_push_error(m->L, "par.map", item, "crash", "worker %d %s while running item %I",
                 (int)m->pool->workers[k].pid, how, item);
  m->done++;
  item_failed(m, item);
  if (m->next <= m->n || m->leftovers > 0) {
    start_worker(m, k);
    feed(m, k);
  }
}

static void run(MapRun *m) {
  int k, depth;
  for (k = 0; k < m->pool->size; k++) start_worker(m, k);
  for (depth = 1; depth <= AHEAD; depth++) /* round-robin, so every worker gets work */
    for (k = 0; k < m->pool->size; k++) feed_to(m, k, depth);
  while (m->done < m->n) {
    PoolEvent ev;
    pool_wait(m->L, m->pool, -1, &ev);
    if (ev.kind == POOL_FRAME && ev.type == FRAME_RESULTS)
      on_results(m, ev.worker, ev.payload, ev.len);
    else if (ev.kind == POOL_FRAME)
      on_error(m, ev.worker, ev.type, ev.payload, ev.len);
    else if (ev.kind == POOL_EXIT)
      on_exit(m, ev.worker);
  }
  pool_close(m->pool, 0);
}

int par_map(lua_State *L) {
  MapRun m;
  lua_Integer n;
  int size;
  memset(&m, 0, sizeof m);
  par_check_callable(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 3);
  options_read(L, 3, map_options, &m.opts);
  n = (lua_Integer)lua_rawlen(L, 2);
  lua_newtable(L);
  if (n == 0) return 1;
  m.results = lua_gettop(L);
  lua_pushnil(L);
  m.errors = lua_gettop(L);
  size = m.opts.workers > 0 ? m.opts.workers : options_default_workers();
  if (size > n) size = (int)n;
  m.L = L;
  m.n = n;
  m.next = 1;
  m.task = (WorkerTask){1, 2, m.opts.init};
  m.inflight = lua_newuserdatauv(L, (size_t)size * sizeof(Inflight), 0);
  lua_pushnil(L);
  m.leftover_slot = lua_gettop(L);
  m.pool = pool_new(L, size);
  lua_toclose(L, -1);
  run(&m);
  lua_pushvalue(L, m.results);
  if (!m.opts.collect) return 1;
  lua_pushvalue(L, m.errors);
  return 2;
}
