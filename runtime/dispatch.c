#include "codec.h"
#include "dispatch.h"
#include "frame.h"
#include "lutil.h"

lua_Integer dispatch_attempts(lua_State *L, int attempts, lua_Integer key) {
  lua_Integer n;
  lua_rawgeti(L, attempts, key);
  n = lua_isnil(L, -1) ? 1 : lua_tointeger(L, -1);
  lua_pop(L, 1);
  return n;
}

int dispatch_may_retry(lua_State *L, int attempts, lua_Integer key, lua_Integer retries) {
  lua_Integer n = dispatch_attempts(L, attempts, key);
  if (n > retries) return 0;
  lua_pushinteger(L, n + 1);
  lua_rawseti(L, attempts, key);
  return 1;
}

void dispatch_note_attempts(lua_State *L, int attempts, lua_Integer key) {
  lua_Integer n = dispatch_attempts(L, attempts, key);
  if (n <= 1) return;
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "attempts");
}

lua_Integer dispatch_decode_error(lua_State *L, const char *fn, const char *payload, size_t len) {
  if (len < ERROR_VALUE) luaL_error(L, "%s: short error message from a worker", fn);
  codec_decode(L, payload + ERROR_VALUE, len - ERROR_VALUE);
  return (lua_Integer)frame_get64(payload + ERROR_INDEX);
}

int dispatch_init_died(lua_State *L, Pool *p, int k, int has_init) {
  Worker *w = &p->workers[k];
  char how[64];
  if (!has_init || w->ready) return 0;
  proc_describe_status(w->status, how, sizeof how);
  par_push_error(L, p->fn, 0, "init", "worker %d %s while running init", (int)w->last_pid, how);
  return 1;
}

lua_Integer dispatch_blame(Pool *p, int k, int (*holds)(void *ctx, lua_Integer item),
                           void *ctx, lua_Integer oldest) {
  lua_Integer killed_for = p->workers[k].killed_for;
  lua_Integer said = killed_for ? killed_for : (lua_Integer)p->progress[k].item;
  if (said == PROGRESS_RETIRED) return 0;
  if (said != 0 && holds(ctx, said)) return said;
  return killed_for ? 0 : oldest;
}

void dispatch_push_death(lua_State *L, Pool *p, int k, lua_Integer item, lua_Integer index) {
  Worker *w = &p->workers[k];
  char how[64];
  if (w->killed_for == item) {
    par_push_error(L, p->fn, index, "timeout", "item %I ran longer than %f s; worker %d killed",
                   index, (lua_Number)p->timeout_ns / 1e9, (int)w->last_pid);
    return;
  }
  proc_describe_status(w->status, how, sizeof how);
  par_push_error(L, p->fn, index, "crash", "worker %d %s while running item %I",
                 (int)w->last_pid, how, index);
}
