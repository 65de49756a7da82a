#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "codec.h"
#include "frame.h"
#include "jsontext.h"
#include "lutil.h"
#include "proc.h"
#include "worker.h"

int worker_capture_error(lua_State *L) {
  lua_createtable(L, 0, 3);
  if (lua_type(L, 1) == LUA_TSTRING) {
    lua_pushvalue(L, 1);
  } else {
    luaL_tolstring(L, 1, NULL);
    lua_pushvalue(L, 1);
    lua_setfield(L, -3, "value");
  }
  lua_setfield(L, -2, "message");
  luaL_traceback(L, L, NULL, 1);
  lua_setfield(L, -2, "traceback");
  return 1;
}

static void send_or_exit(int res, Buffer *b) {
  if (proc_write2(res, b->data, b->len, NULL, 0) != 0) proc_exit(1); /* parent gone */
}

/* Appends the error table on top as a frame of 'type' for item 'index'. */
static void add_error_frame(lua_State *L, Buffer *b, char type, lua_Integer index) {
  char err[256];
  size_t start = b->len, mark;
  if (frame_begin(b, type) != 0 || buffer_reserve(b, ERROR_VALUE) != 0) proc_exit(1);
  frame_put64(b->data + b->len + ERROR_INDEX, (uint64_t)index);
  b->len += ERROR_VALUE;
  mark = b->len;
  if (codec_encode(L, -1, b, "error", err, sizeof err) != 0) {
    lua_pushnil(L);
    lua_setfield(L, -2, "value");
    b->len = mark;
    if (codec_encode(L, -1, b, "error", err, sizeof err) != 0) proc_exit(1);
  }
  frame_finish(b, start);
}

void worker_send_error(lua_State *L, int res, char type, lua_Integer index) {
  static Buffer b;
  b.len = 0;
  add_error_frame(L, &b, type, index);
  send_or_exit(res, &b);
}

static void push_message_error(lua_State *L, const char *why) {
  lua_createtable(L, 0, 1);
  lua_pushstring(L, why);
  lua_setfield(L, -2, "message");
}

void worker_send_encode_error(lua_State *L, int res, lua_Integer index, const char *why) {
  push_message_error(L, why);
  worker_send_error(L, res, FRAME_ERROR, index);
  lua_pop(L, 1);
}

#define NO_FRAME ((size_t)-1)

/*
** A range being run: items next..hi. Items come from the forked list, or
** for a queue from 'item', one encoded item. Outcomes go to 'out' as
** frames: the results of items in a row in one FRAME_RESULTS, cut where
** an item fails by that item's FRAME_ERROR.
*/
typedef struct RangeRun {
  Progress *progress;
  lua_Integer next, hi;
  Buffer *out;
  const char *item;
  size_t item_len;
  lua_Integer item_id;  /* the encoded item's id: its seed's second half */
  const WorkerTask *t;
  size_t frame;         /* offset in out of the open results frame, or NO_FRAME */
  lua_Integer frame_lo; /* the first item in it */
  int64_t frame_ns;     /* when it was opened */
} RangeRun;

static void open_results(RangeRun *r) {
  Buffer *out = r->out;
  r->frame = out->len;
  if (frame_begin(out, FRAME_RESULTS) != 0 || buffer_reserve(out, RESULTS_LIST + 1) != 0)
    proc_exit(1);
  frame_put64(out->data + out->len + RESULTS_LO, (uint64_t)r->next);
  out->len += RESULTS_LIST; /* the elapsed time is filled in by close_results */
  out->data[out->len++] = '[';
  r->frame_lo = r->next;
  r->frame_ns = par_now_ns();
}

/* Ends the open results frame; one that holds no result is dropped. */
static void close_results(RangeRun *r) {
  Buffer *out = r->out;
  if (r->frame == NO_FRAME) return;
  if (r->next == r->frame_lo) {
    out->len = r->frame;
  } else {
    if (buffer_append(out, "]", 1) != 0) proc_exit(1);
    frame_put64(out->data + r->frame + FRAME_HEADER + RESULTS_NS,
                (uint64_t)(par_now_ns() - r->frame_ns));
    frame_finish(out, r->frame);
  }
  r->frame = NO_FRAME;
}

/* Item r->next failed with the error table on top: its one outcome is an error frame. */
static void add_error(lua_State *L, RangeRun *r) {
  close_results(r);
  add_error_frame(L, r->out, FRAME_ERROR, r->next);
}

/*
** Appends the result on top, when it is an integer, to the open JSON
** array without the encoder: the most common result. The output needs
** room for it. Returns 0, having written nothing, for any other value.
*/
static inline int add_integer_result(lua_State *L, RangeRun *r) {
  Buffer *out = r->out;
  if (!lua_isinteger(L, -1)) return 0;
  if (r->next > r->frame_lo) out->data[out->len++] = ',';
  out->len += jsontext_integer(out->data + out->len, lua_tointeger(L, -1));
  return 1;
}

/* Appends the result of item r->next (the value on top), or its error if it cannot travel. */
static void add_result(lua_State *L, RangeRun *r) {
  Buffer *out = r->out;
  char err[256];
  size_t mark;
  if (buffer_reserve(out, 1 + JSONTEXT_INTEGER_MAX) != 0) proc_exit(1);
  if (add_integer_result(L, r)) return;
  mark = out->len;
  if (r->next > r->frame_lo) out->data[out->len++] = ',';
  if (codec_encode(L, -1, out, "result", err, sizeof err) == 0) return;
  out->len = mark;
  push_message_error(L, err);
  add_error(L, r);
  lua_pop(L, 1);
}

/*
** Seeds math.random for item r->next from the task's seed and the item's
** list index or id, so its numbers do not depend on which worker runs it,
** after which items, or how often.
*/
static void seed_item(lua_State *L, RangeRun *r) {
  if (!par_push_randomseed(L)) return;
  lua_pushinteger(L, r->t->seed);
  lua_pushinteger(L, r->item != NULL ? r->item_id : r->next);
  lua_call(L, 2, 0);
}

/* Results left on the stack before they are popped together. */
#define RESULTS_KEPT 32

/*
** Runs items until the range ends or one raises: one protected call for
** the whole run, not one per item. Arguments: the RangeRun, fn, the list.
*/
static int run_items(lua_State *L) {
  RangeRun *r = lua_touserdata(L, 1);
  int n = 0;
  luaL_checkstack(L, RESULTS_KEPT + 3, "cannot run items");
  for (; r->next <= r->hi; r->next++) {
    if (r->frame == NO_FRAME) open_results(r);
    if (r->t->stamp) r->progress->started_ns = par_now_ns();
    r->progress->item = r->next;
    if (r->t->seeded) seed_item(L, r);
    lua_pushvalue(L, 2);
    if (r->item != NULL) codec_decode(L, r->item, r->item_len);
    else lua_rawgeti(L, 3, r->next);
    lua_call(L, 1, 1);
    /* the integer path inline: calling add_result was 7% of a tiny item's cost */
    if (r->out->cap - r->out->len <= 1 + JSONTEXT_INTEGER_MAX || !add_integer_result(L, r))
      add_result(L, r);
    if (++n == RESULTS_KEPT) { /* one pop for many results */
      lua_settop(L, 3);
      n = 0;
    }
  }
  return 0;
}

#define UNSENT_MAX (256 * 1024)

/* Outcome frames not sent yet: they go out when the worker would wait for work. */
static Buffer unsent;

static void send_outcomes(int res) {
  if (unsent.len == 0) return;
  fflush(NULL); /* whatever fn printed comes out before its results */
  send_or_exit(res, &unsent);
  unsent.len = 0;
}

/* Runs items lo..hi and adds their outcome frames to the unsent ones. */
static void run_range(lua_State *L, const WorkerTask *t, int msgh, Progress *progress,
                      lua_Integer lo, lua_Integer hi, const char *item, size_t item_len,
                      lua_Integer item_id) {
  RangeRun r = {progress, lo, hi, &unsent, item, item_len, item_id, t, NO_FRAME, 0, 0};
  while (r.next <= r.hi) {
    lua_pushcfunction(L, run_items);
    lua_pushlightuserdata(L, &r);
    lua_pushvalue(L, t->fn);
    if (t->list != 0) lua_pushvalue(L, t->list);
    else lua_pushnil(L);
    if (lua_pcall(L, 3, 0, msgh) != LUA_OK) {
      add_error(L, &r);
      lua_pop(L, 1);
      r.next++;
    }
  }
  close_results(&r);
  progress->item = 0;
}

static void run_init(lua_State *L, const WorkerTask *t, int msgh, int res) {
  lua_pushvalue(L, t->init);
  if (lua_pcall(L, 0, 0, msgh) != LUA_OK) {
    worker_send_error(L, res, FRAME_INIT_ERROR, 0);
    proc_exit(1);
  }
  if (frame_send(res, FRAME_READY, NULL, 0) != 0) proc_exit(1);
}

static int retiring;

int worker_retire(lua_State *L) {
  (void)L;
  retiring = 1;
  return 0;
}

/* Sends what is left and ends: told that no more work will come, the worker need not wait for end of file. */
static void finish_work(int res) {
  send_outcomes(res);
  proc_exit(0);
}

/*
** The next job is often on its way: before the worker sleeps, it tries to
** read it for a while (proc_look_again). A read that finds it is one
** system call; a look, then the read, was two.
*/
static void look_for_job(FrameReader *in, int cmd) {
  int64_t since = par_now_ns();
  while (reader_fill_now(in, cmd) < 0 && errno == EAGAIN && proc_look_again(since, -1)) continue;
}

void worker_main(lua_State *L, int cmd, int res, Progress *progress, void *task) {
  const WorkerTask *t = task;
  FrameReader in = {{NULL, 0, 0}, 0};
  int msgh;
  unsent.len = 0; /* forked from a worker, it would hold its parent's results */
  retiring = 0;
  lua_pushcfunction(L, worker_capture_error);
  msgh = lua_gettop(L);
  if (t->init != 0) run_init(L, t, msgh, res);
  if (t->first_lo > 0) { /* no round trip for the first range */
    run_range(L, t, msgh, progress, t->first_lo, t->first_hi, NULL, 0, 0);
    if (t->first_is_last) finish_work(res);
  }
  for (;;) {
    char type, err[128];
    const char *payload;
    size_t len;
    /* jobs already here run first; results go out in one write before waiting */
    int got = reader_take(&in, &type, &payload, &len, err, sizeof err);
    if (got == 0 || unsent.len >= UNSENT_MAX) send_outcomes(res);
    if (got == 0) {
      look_for_job(&in, cmd);
      got = reader_next(&in, cmd, &type, &payload, &len, err, sizeof err);
    }
    if (got <= 0) proc_exit(got == 0 ? 0 : 1); /* the parent closed: no more work */
    if ((type == FRAME_JOB || type == FRAME_LAST_JOB) && len == JOB_SIZE) {
      run_range(L, t, msgh, progress, (lua_Integer)frame_get64(payload + JOB_LO),
                (lua_Integer)frame_get64(payload + JOB_HI), NULL, 0, 0);
      if (type == FRAME_LAST_JOB) finish_work(res);
    } else if (type == FRAME_ITEM && len >= ITEM_VALUE) {
      lua_Integer slot = (lua_Integer)frame_get64(payload + ITEM_SLOT);
      run_range(L, t, msgh, progress, slot, slot, payload + ITEM_VALUE, len - ITEM_VALUE,
                (lua_Integer)frame_get64(payload + ITEM_ID));
      if (retiring) {
        progress->item = PROGRESS_RETIRED;
        finish_work(res);
      }
    }
  }
}
