/*
** par.map over the ranks of an MPI job. Every rank runs the same script,
** so each holds the same items: a rank computes the ranges it takes with
** its own workers, keeps their outcomes as wire text, and at the end every
** rank's outcomes go to every rank (or to the root), in item order.
*/
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "cluster.h"
#include "codec.h"
#include "frame.h"
#include "lutil.h"
#include "proc.h"
#include "spread.h"

#define FIRST_SHARE 4 /* a rank's fixed first range is 1/(4 * ranks) of the items */
#define KEPT_HEADER 17 /* kind, item, length */

enum { KEPT_RANK = 'K', KEPT_RESULTS = 'R', KEPT_ERROR = 'E' };

struct Spread {
  const char *fn;
  Handout *handout;
  Buffer kept;   /* KEPT_RANK, then this rank's outcomes */
  int gather_root;
  int failed;    /* an item failed here without on_error = "collect" */
  int may_take;
  lua_Integer first_lo, first_hi; /* this rank's fixed first range, lo 0 once taken */
};

static uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdULL;
}

static uint64_t hash_bytes(const char *s, size_t len) {
  uint64_t h = 0xcbf29ce484222325ULL;
  size_t i;
  for (i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
  return h;
}

/* A hash of the value at idx as the wire writes it, but blind to the order of a table's keys. */
static uint64_t hash_value(lua_State *L, int idx, int depth) {
  int type = lua_type(L, idx);
  uint64_t h = (uint64_t)type, sum = 0;
  if (type == LUA_TNUMBER && lua_isinteger(L, idx)) return mix(h, (uint64_t)lua_tointeger(L, idx));
  if (type == LUA_TNUMBER) {
    lua_Number x = lua_tonumber(L, idx);
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    return mix(h + 16, bits);
  }
  if (type == LUA_TBOOLEAN) return mix(h, (uint64_t)lua_toboolean(L, idx));
  if (type == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return mix(h, hash_bytes(s, len));
  }
  if (type != LUA_TTABLE || depth >= CODEC_MAX_DEPTH) return h;
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 3, "items nested too deep");
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) { /* a sum does not depend on the order */
    sum += mix(hash_value(L, -2, depth + 1), hash_value(L, -1, depth + 1));
    lua_pop(L, 1);
  }
  return mix(h, sum);
}

static void raise_mismatch(lua_State *L, const char *fn, int r, const uint64_t *all) {
  const char *why = "with items other than rank 0's";
  if (all[2 * r + 1] == CLUSTER_ENDED) why = "as the end of its script, having skipped this call";
  if (all[1] == CLUSTER_ENDED) why = "while rank 0 ended its script, having skipped this call";
  par_push_error(L, fn, 0, "mismatch",
                 "rank %d reached its parallel call #%d %s (every rank must make the same calls with the same items)",
                 r, (int)all[2 * r], why);
  lua_pushinteger(L, r);
  lua_setfield(L, -2, "rank");
  lua_error(L);
}

static int is_spread(void) {
  return cluster_size() > 1 && !proc_is_forked(); /* a worker's own par.map stays in its rank, off MPI */
}

void spread_check(lua_State *L, const char *fn, int items, lua_Integer n) {
  int r, sig, size = cluster_size();
  if (!is_spread()) return;
  uint64_t *all = lua_newuserdatauv(L, 2 * sizeof(uint64_t) * (size_t)size, 0);
  uint64_t hash = mix(hash_value(L, items, 0), (uint64_t)n);
  if (hash == CLUSTER_ENDED) hash--;
  sig = cluster_agree(hash, all);
  if (sig != 0) {
    cluster_leave();
    par_push_interrupted(L, fn, sig, "waiting for the other ranks");
    lua_error(L);
  }
  for (r = 1; r < size; r++)
    if (all[2 * r] != all[0] || all[2 * r + 1] != all[1]) raise_mismatch(L, fn, r, all);
  lua_pop(L, 1);
}

static int spread_close(lua_State *L) {
  Spread *s = lua_touserdata(L, 1);
  handout_free(s->handout);
  s->handout = NULL;
  buffer_free(&s->kept);
  return 0;
}

static void keep(lua_State *L, Spread *s, char kind, lua_Integer item, const char *data, size_t len) {
  char header[KEPT_HEADER];
  header[0] = kind;
  frame_put64(header + 1, (uint64_t)item);
  frame_put64(header + 9, (uint64_t)len);
  if (buffer_append(&s->kept, header, sizeof header) != 0 || buffer_append(&s->kept, data, len) != 0)
    luaL_error(L, "%s: out of memory keeping results for the other ranks", s->fn);
}

Spread *spread_open(lua_State *L, const char *fn, int items, lua_Integer n, int gather_root) {
  Spread *s;
  lua_Integer first, rank = cluster_rank(), size = cluster_size();
  if (!is_spread()) {
    lua_pushnil(L);
    return NULL;
  }
  spread_check(L, fn, items, n);
  s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  lua_newtable(L);
  lua_pushcfunction(L, spread_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, spread_close);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  s->fn = fn;
  s->gather_root = gather_root;
  first = n / (FIRST_SHARE * size) > 0 ? n / (FIRST_SHARE * size) : 1;
  s->first_lo = rank * first < n ? rank * first + 1 : 0;
  s->first_hi = (rank + 1) * first < n ? (rank + 1) * first : n;
  s->may_take = size * first < n;
  s->handout = handout_new(n, first);
  if (s->handout == NULL) luaL_error(L, "%s: out of memory", fn);
  keep(L, s, KEPT_RANK, rank, "", 0);
  return s;
}

int spread_take(Spread *s, lua_Integer want, lua_Integer lowest, lua_Integer *lo, lua_Integer *hi) {
  if (s->first_lo != 0) {
    *lo = s->first_lo;
    *hi = s->first_hi;
    s->first_lo = 0;
    return 1;
  }
  if (!s->may_take) return 0;
  s->may_take = handout_take(s->handout, want, lowest, lo, hi);
  return s->may_take;
}

int spread_may_take(const Spread *s) {
  return s->first_lo != 0 || s->may_take;
}

int spread_serve(Spread *s) {
  return cluster_rank() == 0 && handout_serve(s->handout) > 0;
}

void spread_keep_results(lua_State *L, Spread *s, lua_Integer lo, const char *list, size_t len) {
  keep(L, s, KEPT_RESULTS, lo, list, len);
}

void spread_keep_error(lua_State *L, Spread *s, lua_Integer index) {
  Buffer *b = par_push_buffer(L);
  char err[256];
  lua_pushinteger(L, cluster_rank());
  lua_setfield(L, -3, "rank");
  if (codec_encode(L, -2, b, "error", err, sizeof err) != 0) {
    lua_pushnil(L); /* a value the wire cannot carry stays on this rank; the message goes */
    lua_setfield(L, -3, "value");
    b->len = 0;
    codec_encode(L, -2, b, "error", err, sizeof err);
  }
  keep(L, s, KEPT_ERROR, index, b->data, b->len);
  lua_closeslot(L, -1);
  lua_pop(L, 1);
}

void spread_stop(Spread *s) {
  lua_Integer lo, hi;
  s->failed = 1;
  s->first_lo = 0;
  handout_stop(s->handout);
  if (cluster_rank() != 0 && s->may_take) handout_take(s->handout, 0, 0, &lo, &hi); /* tells the root */
  s->may_take = 0;
}

/* Files error e (on top) of item 'index': into errors, or as the lowest so far at slot 'lowest'. */
static void file_error(lua_State *L, lua_Integer index, int errors, int collect, int lowest) {
  luaL_setmetatable(L, PAR_ERROR_METATABLE);
  if (collect) {
    if (lua_isnil(L, errors)) {
      lua_newtable(L);
      lua_replace(L, errors);
    }
    lua_rawseti(L, errors, index);
    return;
  }
  if (lua_isnil(L, lowest)) {
    lua_replace(L, lowest);
    return;
  }
  lua_getfield(L, lowest, "index");
  if (lua_tointeger(L, -1) > index) lua_copy(L, -2, lowest);
  lua_pop(L, 2);
}

/* Reads the outcomes of every rank but this one (and this one's errors, without 'collect'). */
static void read_outcomes(lua_State *L, const char *p, size_t len, int results, int errors, int collect, int lowest) {
  const char *end = p + len;
  int rank = -1;
  while (end - p >= KEPT_HEADER) {
    char kind = p[0];
    lua_Integer item = (lua_Integer)frame_get64(p + 1);
    size_t size = (size_t)frame_get64(p + 9);
    p += KEPT_HEADER;
    if ((size_t)(end - p) < size) luaL_error(L, "par.map: short outcomes from rank %d", rank);
    if (kind == KEPT_RANK) rank = (int)item;
    else if (kind == KEPT_RESULTS && rank != cluster_rank())
      codec_decode_into(L, results, item, p, size);
    else if (kind == KEPT_ERROR && (rank != cluster_rank() || !collect)) {
      codec_decode(L, p, size);
      file_error(L, item, errors, collect, lowest);
    }
    p += size;
  }
}

/* Raises the error of a job ended by signal 'sig' (see spread_push_ended). */
static void job_ended(lua_State *L, Spread *s, int sig) {
  spread_push_ended(L, s, sig);
  lua_error(L);
}

void spread_finish(lua_State *L, Spread *s, int results, int errors, int collect) {
  int lowest, got, sig = 0;
  Buffer *all;
  if (cluster_rank() == 0) sig = handout_serve_all(s->handout);
  if (sig != 0) job_ended(L, s, sig);
  lua_pushnil(L);
  lowest = lua_gettop(L);
  all = par_push_buffer(L);
  /* a rank that failed wants everything everywhere: every rank must raise the error */
  got = cluster_gather(s->kept.data, s->kept.len, !s->gather_root || s->failed, all, &sig);
  if (sig != 0) job_ended(L, s, sig);
  if (got < 0) luaL_error(L, "%s: out of memory gathering results", s->fn);
  if (got) read_outcomes(L, all->data, all->len, results, errors, collect, lowest);
  lua_closeslot(L, -1);
  lua_pop(L, 1);
  if (!lua_isnil(L, lowest)) lua_error(L);
  lua_pop(L, 1);
  if (!got) { /* gather = "root", on a rank other than 0 */
    lua_pushnil(L);
    lua_replace(L, results);
  }
}

void spread_push_ended(lua_State *L, Spread *s, int sig) {
  char out[1024] = "";
  cluster_leave();
  handout_describe(s->handout, out, sizeof out);
  par_push_error(L, s->fn, 0, "rank",
                 "the job was ended (%s: a rank died, or the job was interrupted) before every item was done; "
                 "ranks that had not finished: %s", sig == 2 ? "SIGINT" : "SIGTERM",
                 out[0] != '\0' ? out : "none known to this rank");
}
