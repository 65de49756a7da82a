/*
** par.map: runs fn over a list in forked workers and puts the results back
** in order. Items reach the workers through the fork; only results travel.
** Work is handed out in ranges whose size adapts to the measured cost of an
** item, two ranges ahead per worker so none waits for the parent.
*/
#include <errno.h>
#include <limits.h>
#include <string.h>

#include <lauxlib.h>

#include "checkpoint.h"
#include "codec.h"
#include "dispatch.h"
#include "frame.h"
#include "lpar.h"
#include "lutil.h"
#include "options.h"
#include "pool.h"
#include "proc.h"
#include "progress.h"
#include "spread.h"
#include "worker.h"

#define AHEAD 8                  /* most ranges queued per worker */
#define AHEAD_AUTO 2             /* with automatic ranges, which are long enough */
#define TARGET_RANGE_NS 4000000  /* aim each range at 4 ms of work */
#define PROBE_FORKS 3            /* how long the first worker has to answer, in forks, */
#define PROBE_MAX_NS 1000000     /* ... but never longer than this, */
#define PROBE_START_NS 10000000  /* counted from when it starts, seen within this */
#define PROBE_LOOK_NS 100000     /* by looks this far apart */
#define SERVE_SLICE_NS 1000000  /* how soon the root of an MPI job answers a rank's ask, at most */
#define TAKE_NS 20000000        /* under MPI, a rank takes about this much work per worker at a time */

typedef struct Range {
  lua_Integer lo, hi;
} Range;

/* A worker's ranges in the order it will answer them; r[0].lo is the next item to answer. */
typedef struct Inflight {
  Range r[AHEAD];
  int count;
  int last_sent; /* it was told no more work will come, and exits after these */
} Inflight;

typedef struct MapRun {
  lua_State *L;
  Pool *pool;
  ParOptions opts;
  WorkerTask task;
  lua_Integer n;
  lua_Integer next;     /* first item not yet handed out */
  lua_Integer done;     /* items with an outcome: a result or a final error */
  double item_ns;       /* estimated cost of one item, 0 until measured */
  int ahead;            /* ranges to keep queued per worker */
  Range *leftover;      /* ranges taken back from crashed workers */
  int leftovers, leftover_cap, leftover_slot;
  Inflight *inflight;   /* one per worker */
  int results, errors, attempts; /* stack indices */
  int probing;          /* the first worker is forked alone, the others wait */
  int started;          /* workers 0 .. started-1 have been forked */
  int64_t fork_ns;      /* what forking the first one took the parent */
  ProgressMeter *progress;
  Checkpoint *checkpoint; /* NULL without one */
  Spread *spread;       /* NULL unless spread over the ranks of an MPI job; then: */
  lua_Integer grant_hi; /* the last item of the range this rank took last */
  lua_Integer taken;    /* how many items this rank took */
  int stopped;          /* an item failed: this rank's part ends */
} MapRun;

static const char *const map_options[] = {
  "workers", "chunk", "on_error", "init", "timeout", "retries", "seed",
  "progress", "on_progress", "checkpoint", "gather", NULL
};

/* The last item this rank may hand to its workers before it takes more. */
static lua_Integer last_item(MapRun *m) {
  return m->spread != NULL ? m->grant_hi : m->n;
}

static lua_Integer range_size(MapRun *m) {
  lua_Integer left = last_item(m) - m->next + 1, fair, size;
  if (m->opts.chunk > 0) return m->opts.chunk;
  if (m->item_ns <= 0 || m->started == 0) return 1;
  fair = left / (2 * m->started); /* keep the tail balanced among the workers forked */
  size = (lua_Integer)(TARGET_RANGE_NS / m->item_ns);
  if (size > fair) size = fair;
  return size < 1 ? 1 : size;
}

/* The first item this rank has not finished, for the root's message if the rank dies. */
static lua_Integer lowest_unfinished(MapRun *m) {
  lua_Integer lowest = m->next;
  int k, j;
  for (k = 0; k < m->pool->size; k++)
    if (m->inflight[k].count > 0 && m->inflight[k].r[0].lo < lowest) lowest = m->inflight[k].r[0].lo;
  for (j = 0; j < m->leftovers; j++)
    if (m->leftover[j].lo < lowest) lowest = m->leftover[j].lo;
  return lowest;
}

/*
** Under MPI: takes this rank's next range of items, about TAKE_NS of work
** per worker once an item's cost is known. Its workers still hold two
** ranges each meanwhile, so the root's answer comes before they run dry.
*/
static int take_more(MapRun *m) {
  lua_Integer lo, hi, per = 2;
  if (m->spread == NULL || m->stopped) return 0;
  if (m->opts.chunk > 0) per = 2 * m->opts.chunk;
  else if (m->item_ns > 0 && TAKE_NS / m->item_ns > 2) per = (lua_Integer)(TAKE_NS / m->item_ns);
  if (!spread_take(m->spread, per * m->pool->size, lowest_unfinished(m), &lo, &hi)) return 0;
  m->next = lo;
  m->grant_hi = hi;
  m->taken += hi - lo + 1;
  return 1;
}

/* The next range to hand out, or 0 when everything has been handed out. */
static int next_range(MapRun *m, Range *r) {
  if (m->leftovers > 0) {
    *r = m->leftover[--m->leftovers];
    return 1;
  }
  if (m->next > last_item(m) && !take_more(m)) return 0;
  r->lo = m->next;
  r->hi = r->lo + range_size(m) - 1;
  if (r->hi > last_item(m)) r->hi = last_item(m);
  r->hi = checkpoint_missing_until(m->checkpoint, r->lo, r->hi);
  m->next = checkpoint_next_missing(m->checkpoint, r->hi + 1);
  return 1;
}

/* Whether everything has been handed out, so a range given now is a worker's last. */
static int all_handed_out(MapRun *m) {
  if (m->next <= last_item(m) || m->leftovers > 0) return 0;
  return m->spread == NULL || m->stopped || !spread_may_take(m->spread);
}

/* Whether this rank's part of the map is over. */
static int finished(MapRun *m) {
  if (m->spread == NULL) return m->done >= m->n;
  return m->stopped || (all_handed_out(m) && m->done >= m->taken);
}

/* Sends worker k ranges, in one write, until it has 'depth' of them. */
static void feed_to(MapRun *m, int k, int depth) {
  Inflight *q = &m->inflight[k];
  char frames[AHEAD * (FRAME_HEADER + JOB_SIZE)];
  size_t len = 0;
  Range r;
  while (!q->last_sent && q->count < depth && next_range(m, &r)) {
    q->last_sent = all_handed_out(m);
    frames[len] = q->last_sent ? FRAME_LAST_JOB : FRAME_JOB;
    frame_put64(frames + len + 1, JOB_SIZE);
    frame_put64(frames + len + FRAME_HEADER + JOB_LO, (uint64_t)r.lo);
    frame_put64(frames + len + FRAME_HEADER + JOB_HI, (uint64_t)r.hi);
    len += FRAME_HEADER + JOB_SIZE;
    q->r[q->count++] = r;
  }
  /* if it died, its end of file comes through pool_wait */
  if (len > 0) {
    struct iovec all = {frames, len};
    pool_sendv(m->pool, k, &all, 1);
  }
}

/*
** Ranges to keep queued per worker. While the probe has kept workers
** unforked, one: a worker answers a range only when it has no other in
** hand, and the parent must hear soon if items cost more than it thought.
*/
static int queue_depth(MapRun *m) {
  return m->started < m->pool->size ? 1 : m->ahead;
}

static void feed(MapRun *m, int k) {
  feed_to(m, k, queue_depth(m));
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

/* Puts a range back to be handed out next. */
static void give_back(MapRun *m, Range r) {
  if (m->leftovers == m->leftover_cap) grow_leftover(m);
  m->leftover[m->leftovers++] = r;
}

/* Whether failed item i gets another attempt; if so it is put back first in line. */
static int retry(MapRun *m, lua_Integer i) {
  if (!dispatch_may_retry(m->L, m->attempts, i, m->opts.retries)) return 0;
  give_back(m, (Range){i, i});
  return 1;
}

/*
** Forks worker k with its first range, if any is left, so that it starts
** at once; a worker whose first range is its last gets no command socket.
** Returns NULL, or the system call that failed (errno set).
*/
static const char *start_worker(MapRun *m, int k) {
  Inflight *q = &m->inflight[k];
  Range r = {0, 0};
  const char *failed;
  q->count = 0;
  q->last_sent = 0;
  if (next_range(m, &r)) {
    q->r[q->count++] = r;
    q->last_sent = all_handed_out(m);
  }
  m->task.first_lo = r.lo;
  m->task.first_hi = r.hi;
  m->task.first_is_last = q->last_sent;
  failed = pool_start(m->L, m->pool, k, !q->last_sent, worker_main, &m->task);
  if (failed == NULL) return NULL;
  if (q->count > 0) give_back(m, r); /* for a worker that did start */
  q->count = 0;
  return failed;
}

/* Raises the error on top of the stack after stopping every worker. */
static void fail(MapRun *m) {
  pool_close(m->pool, 1);
  lua_error(m->L);
}

static void fail_to_fork(MapRun *m, const char *syscall) {
  par_push_syscall_error(m->L, "par.map", "fork", syscall);
  fail(m);
}

/* Replaces dead worker k when work is left; the others carry on if fork fails. */
static void replace_worker(MapRun *m, int k) {
  const char *failed;
  if (all_handed_out(m)) return;
  failed = start_worker(m, k);
  if (failed == NULL) {
    if (!m->probing) feed(m, k); /* after a probe, run() shares the work out */
  } else if (pool_live(m->pool) == 0) {
    fail_to_fork(m, failed);
  }
}

/* Item index's outcome is the error on top of the stack: files it, or raises it. */
static void item_failed(MapRun *m, lua_Integer index) {
  m->done++;
  progress_add(m->L, m->progress, 1);
  dispatch_note_attempts(m->L, m->attempts, index);
  if (m->spread != NULL) spread_keep_error(m->L, m->spread, index);
  if (!m->opts.collect && m->spread != NULL) { /* every rank raises it at the end */
    lua_pop(m->L, 1);
    if (!m->stopped) spread_stop(m->spread);
    m->stopped = 1;
    return;
  }
  if (!m->opts.collect) fail(m);
  if (lua_isnil(m->L, m->errors)) {
    lua_newtable(m->L);
    lua_replace(m->L, m->errors);
  }
  lua_rawseti(m->L, m->errors, index);
}

static void fork_more_if_worth(MapRun *m);

/* Worker k answered 'count' items from the first it has in hand on. */
static void answered(MapRun *m, int k, lua_Integer count) {
  Inflight *q = &m->inflight[k];
  q->r[0].lo += count;
  if (q->r[0].lo <= q->r[0].hi) return;
  q->count--;
  memmove(&q->r[0], &q->r[1], (size_t)q->count * sizeof(Range));
}

/* Raises unless worker k's frame answers from the first item it has in hand. */
static void check_answer(MapRun *m, int k, lua_Integer lo) {
  Inflight *q = &m->inflight[k];
  if (q->count == 0 || lo != q->r[0].lo)
    luaL_error(m->L, "par.map: worker %d answered for items it does not have",
               (int)m->pool->workers[k].pid);
}

/* After a frame from worker k: more work, and more workers if items cost more than the probe saw. */
static void keep_going(MapRun *m, int k) {
  if (m->probing) return; /* after a probe, the work left is shared out */
  if (m->started < m->pool->size) { /* before k takes more */
    int j = m->started;
    fork_more_if_worth(m);
    for (; j < m->started; j++)
      if (m->pool->workers[j].pid != 0) feed(m, j);
  }
  feed(m, k);
}

static void on_results(MapRun *m, int k, const char *payload, size_t len) {
  lua_Integer lo, count;
  int64_t elapsed;
  if (len < RESULTS_LIST)
    luaL_error(m->L, "par.map: short results from worker %d", (int)m->pool->workers[k].pid);
  lo = (lua_Integer)frame_get64(payload + RESULTS_LO);
  elapsed = (int64_t)frame_get64(payload + RESULTS_NS);
  check_answer(m, k, lo);
  count = codec_decode_into(m->L, m->results, lo, payload + RESULTS_LIST, len - RESULTS_LIST);
  if (count < 1 || lo + count - 1 > m->inflight[k].r[0].hi)
    luaL_error(m->L, "par.map: worker %d answered the wrong range", (int)m->pool->workers[k].pid);
  m->done += count;
  if (m->spread != NULL) spread_keep_results(m->L, m->spread, lo, payload + RESULTS_LIST, len - RESULTS_LIST);
  checkpoint_add(m->L, m->checkpoint, lo, count, payload + RESULTS_LIST, len - RESULTS_LIST);
  progress_add(m->L, m->progress, count);
  m->item_ns = m->item_ns > 0 ? (m->item_ns + (double)elapsed / count) / 2
                              : (double)elapsed / count;
  answered(m, k, count);
  keep_going(m, k);
}

static void on_error(MapRun *m, int k, char type, const char *payload, size_t len) {
  lua_Integer index = dispatch_decode_error(m->L, "par.map", payload, len);
  if (type == FRAME_INIT_ERROR) {
    par_make_error(m->L, "par.map", 0, "init");
    fail(m);
  }
  check_answer(m, k, index);
  answered(m, k, 1);
  if (retry(m, index)) {
    lua_pop(m->L, 1);
  } else {
    par_make_error(m->L, "par.map", index, "error");
    item_failed(m, index);
  }
  keep_going(m, k);
}

/* Whether dead worker k (the context) had item i in hand. */
static int holds(void *ctx, lua_Integer i) {
  Inflight *q = ctx;
  int j;
  for (j = 0; j < q->count; j++)
    if (i >= q->r[j].lo && i <= q->r[j].hi) return 1;
  return 0;
}

/* Hands the unanswered items of a dead worker, all but 'crashed', to others. */
static void take_back(MapRun *m, int k, lua_Integer crashed) {
  Inflight *q = &m->inflight[k];
  int i;
  for (i = q->count - 1; i >= 0; i--) {
    Range r = q->r[i];
    if (crashed < r.lo || crashed > r.hi) {
      give_back(m, r);
      continue;
    }
    if (crashed < r.hi) give_back(m, (Range){crashed + 1, r.hi});
    if (r.lo < crashed) give_back(m, (Range){r.lo, crashed - 1});
  }
  q->count = 0;
}

static void on_death(MapRun *m, int k) {
  Inflight *q = &m->inflight[k];
  lua_Integer item;
  if (dispatch_init_died(m->L, m->pool, k, m->task.init != 0)) fail(m);
  item = q->count > 0 ? dispatch_blame(m->pool, k, holds, q, q->r[0].lo) : 0;
  take_back(m, k, item);
  if (item != 0 && !retry(m, item)) { /* a retry goes first to the fresh worker */
    dispatch_push_death(m->L, m->pool, k, item, item);
    item_failed(m, item);
  }
  replace_worker(m, k);
}

static void on_interrupt(MapRun *m, int sig) {
  pool_close(m->pool, 1);
  if (m->spread != NULL) spread_push_ended(m->L, m->spread, sig);
  else par_push_interrupted(m->L, "par.map", sig, "waiting for workers");
  lua_error(m->L);
}

/*
** The results table is made once the workers are forked: made before, its
** pages would be shared with them, and every page the parent then fills
** would be copied first.
*/
static void make_results(MapRun *m) {
  lua_createtable(m->L, m->n < INT_MAX ? (int)m->n : INT_MAX, 0);
  if (!lua_isnil(m->L, m->results)) { /* the few results that came during the probe */
    lua_pushnil(m->L);
    while (lua_next(m->L, m->results) != 0) {
      lua_pushvalue(m->L, -2);
      lua_insert(m->L, -2);
      lua_rawset(m->L, -4);
    }
  }
  lua_replace(m->L, m->results);
}

/*
** When the first ranges took the whole list (a map over no more items than
** workers), tells every worker at once that no more work will come: each
** exits as soon as it has answered, and a short map ends without a round
** trip. Not before every fork is done: a fork that failed leaves its range
** for the workers that did start.
*/
static void end_commands_if_all_out(MapRun *m) {
  int k;
  if (!all_handed_out(m)) return;
  for (k = 0; k < m->pool->size; k++) {
    if (m->pool->workers[k].pid == 0 || m->inflight[k].last_sent) continue;
    m->inflight[k].last_sent = 1;
    pool_end_commands(m->pool, k);
  }
}

static void on_event(MapRun *m, const PoolEvent *ev) {
  if (ev->kind == POOL_FRAME && ev->type == FRAME_RESULTS)
    on_results(m, ev->worker, ev->payload, ev->len);
  else if (ev->kind == POOL_FRAME)
    on_error(m, ev->worker, ev->type, ev->payload, ev->len);
  else if (ev->kind == POOL_EXIT)
    on_death(m, ev->worker);
  else if (ev->kind == POOL_INTERRUPT)
    on_interrupt(m, ev->worker);
}

/* The earlier of two deadlines on the par_now_ns clock, -1 being none. */
static int64_t earlier(int64_t a, int64_t b) {
  if (a < 0) return b;
  return b >= 0 && b < a ? b : a;
}

/*
** Gives the first worker PROBE_FORKS times what its fork took to answer
** its first item, at most PROBE_MAX_NS, and no more work until the others
** are forked. A parent holding much memory forks slowly, but a worker
** does not start any slower: the cap keeps a map of long items from
** waiting three slow forks before its other workers start. The time
** counts from when the worker is seen running an item: a fresh child
** takes a millisecond or more to get there (its first page faults), and
** counted from the fork, a map of two tiny items forked its second
** worker for nothing most times. Results that come meanwhile go to a
** small table, as the full one must wait for the forks (see make_results).
*/
static void probe(MapRun *m, int64_t fork_ns) {
  int64_t wait_ns = PROBE_FORKS * fork_ns < PROBE_MAX_NS ? PROBE_FORKS * fork_ns : PROBE_MAX_NS;
  int64_t deadline = par_now_ns() + PROBE_START_NS;
  int running = 0;
  lua_Integer done_before = m->done; /* a checkpoint's */
  if (lua_isnil(m->L, m->results)) { /* else it holds a checkpoint's results */
    lua_newtable(m->L);
    lua_replace(m->L, m->results);
  }
  m->probing = 1;
  while (m->done == done_before && par_now_ns() < deadline) {
    PoolEvent ev;
    if (!running && pool_is_running(m->pool, 0)) {
      running = 1;
      deadline = par_now_ns() + wait_ns;
    }
    pool_wait_until(m->L, m->pool, running ? deadline : earlier(deadline, par_now_ns() + PROBE_LOOK_NS), &ev);
    on_event(m, &ev);
  }
  m->probing = 0;
}

/*
** How many workers the work left pays for, given what a fork costs the
** parent: all of them while no item's cost is known.
*/
static int workers_worth(MapRun *m) {
  double left_ns;
  if (all_handed_out(m)) return m->started;
  if (m->item_ns <= 0) return m->pool->size;
  left_ns = (double)(m->n - m->done) * m->item_ns;
  if (left_ns >= (double)m->fork_ns * (m->pool->size - 1)) return m->pool->size;
  return 1 + (int)(left_ns / (double)m->fork_ns);
}

/* Forks the workers not yet started that the work left pays for (go on with the ones it gets). */
static void fork_more_if_worth(MapRun *m) {
  int worth = workers_worth(m);
  while (m->started < worth && !all_handed_out(m)) start_worker(m, m->started++);
}

/*
** Forks the first worker alone and, when the map has more than one, sees
** how soon it answers: a map whose work is done sooner than another fork
** would be runs on fewer workers. Then forks the rest it pays for; as
** later answers show items to cost more, more are forked (on_results).
*/
static void start_workers(MapRun *m) {
  int64_t start = par_now_ns();
  const char *failed = start_worker(m, 0);
  if (failed != NULL) fail_to_fork(m, failed);
  m->started = 1;
  m->fork_ns = par_now_ns() - start;
  if (m->pool->size == 1) return;
  probe(m, m->fork_ns);
  fork_more_if_worth(m);
}

/*
** The next event. Meanwhile the root of an MPI job answers the ranks'
** asks at least every SERVE_SLICE_NS, and a progress line is redrawn as
** time passes, not only as results come.
*/
static void wait_event(MapRun *m, PoolEvent *ev) {
  int ms = pool_until_overdue(m->pool);
  int64_t now = par_now_ns(), until = ms >= 0 ? now + (int64_t)ms * 1000000 : -1;
  if (m->spread != NULL && spread_serve(m->spread)) until = earlier(until, now + SERVE_SLICE_NS);
  until = earlier(until, progress_due_ns(m->progress));
  pool_wait_until(m->L, m->pool, until, ev);
  progress_tick(m->progress);
}

static void run(MapRun *m) {
  int k, depth;
  start_workers(m);
  end_commands_if_all_out(m);
  make_results(m);
  for (depth = 1; depth <= queue_depth(m); depth++) /* round-robin, so every worker gets work */
    for (k = 0; k < m->pool->size; k++)
      if (m->pool->workers[k].pid != 0) feed_to(m, k, depth);
  while (!finished(m)) {
    PoolEvent ev;
    wait_event(m, &ev);
    on_event(m, &ev);
    pool_kill_overdue(m->pool);
  }
  pool_close(m->pool, m->stopped);
}

static int finish(MapRun *m) {
  progress_end(m->L, m->progress);
  if (m->spread != NULL) {
    if (lua_isnil(m->L, m->results)) make_results(m); /* this rank took no item */
    spread_finish(m->L, m->spread, m->results, m->errors, m->opts.collect);
  }
  lua_pushvalue(m->L, m->results);
  if (!m->opts.collect) return 1;
  lua_pushvalue(m->L, m->errors);
  return 2;
}

/* A table with keys but no items 1..n maps nothing: a dictionary passed by mistake. */
static void check_not_dictionary(lua_State *L) {
  lua_pushnil(L);
  if (lua_next(L, 2))
    luaL_argerror(L, 2, "list expected, got a table with keys but no items 1..n");
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
  if (n == 0) {
    check_not_dictionary(L);
    spread_check(L, "par.map", 2, 0);
    lua_newtable(L);
    return 1;
  }
  par_check_fork_safe(L, "par.map");
  lua_pushnil(L); /* the results: a probe's few, then the full table (make_results) */
  m.results = lua_gettop(L);
  lua_pushnil(L);
  m.errors = lua_gettop(L);
  lua_newtable(L);
  m.attempts = lua_gettop(L);
  m.L = L;
  m.n = n;
  m.checkpoint = checkpoint_open(L, "par.map", 3, 3, 2, n, m.results);
  lua_toclose(L, -1);
  m.done = checkpoint_done(m.checkpoint);
  m.progress = progress_new(L, 3, 3, "par.map", n, m.done);
  lua_toclose(L, -1);
  m.spread = spread_open(L, "par.map", 2, n, m.opts.gather_root);
  lua_toclose(L, -1);
  if (m.spread != NULL && m.checkpoint != NULL)
    luaL_argerror(L, 3, "option 'checkpoint' is not supported across MPI ranks");
  if (m.done == n) return finish(&m);
  size = m.opts.workers > 0 ? m.opts.workers : options_default_workers();
  if (size > n - m.done) size = (int)(n - m.done);
  m.next = checkpoint_next_missing(m.checkpoint, 1);
  if (m.spread != NULL && !spread_take(m.spread, 0, 0, &m.next, &m.grant_hi)) return finish(&m);
  m.taken = m.spread != NULL ? m.grant_hi - m.next + 1 : 0;
  m.ahead = m.opts.chunk > 0 ? AHEAD : AHEAD_AUTO;
  m.task = (WorkerTask){1, 2, m.opts.init, m.opts.timeout > 0, 0, 0, 0, m.opts.seeded, m.opts.seed};
  m.inflight = lua_newuserdatauv(L, (size_t)size * sizeof(Inflight), 0);
  lua_pushnil(L);
  m.leftover_slot = lua_gettop(L);
  m.pool = pool_new(L, "par.map", size);
  m.pool->timeout_ns = (int64_t)(m.opts.timeout * 1e9);
  lua_toclose(L, -1);
  run(&m);
  return finish(&m);
}
