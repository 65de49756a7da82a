#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "lutil.h"
#include "proc.h"
#include "progress.h"

#define PROGRESS_METATABLE "par.Progress"
#define START_NS 1000000000      /* nothing is shown for the first second of work */
#define REDRAW_NS 100000000      /* a terminal's line at most ten times a second */
#define LOG_EVERY_NS 1000000000  /* a log line at most once a second */
#define CALL_EVERY_NS 100000000  /* on_progress at most ten times a second, and at the end */

enum Show { SHOW_NOTHING, SHOW_LINE, SHOW_LOG };

struct ProgressMeter {
  char fn[32];
  enum Show show;
  int callback;            /* registry reference to on_progress, or LUA_NOREF */
  lua_Integer total;       /* -1: not known */
  lua_Integer done, done_before;
  lua_Integer called_with; /* done at the last on_progress call, -1 before any */
  int64_t start_ns, shown_ns, called_ns;
  int shown;               /* something was written */
  int ended;
};

/* What PARLUA_PROGRESS asks for: nothing ("", "0" or unset), log lines ("log"), or the line. */
static enum Show show_from_env(void) {
  const char *v = getenv("PARLUA_PROGRESS");
  if (v == NULL || *v == '\0' || strcmp(v, "0") == 0) return SHOW_NOTHING;
  return strcmp(v, "log") == 0 ? SHOW_LOG : SHOW_LINE;
}

static int stderr_is_terminal(void) {
  const char *term = getenv("TERM");
  return isatty(STDERR_FILENO) && term != NULL && strcmp(term, "dumb") != 0;
}

/*
** What to show: opts.progress = true or PARLUA_PROGRESS asks (the variable
** only outside processes par forked, whose stderr is their parent's), and
** then the line only on a terminal; log lines wherever stderr goes.
*/
static enum Show what_to_show(int progress_opt) {
  enum Show env = show_from_env();
  if (progress_opt == 0 || (progress_opt < 0 && (env == SHOW_NOTHING || proc_is_forked())))
    return SHOW_NOTHING;
  if (env == SHOW_LOG) return SHOW_LOG;
  return stderr_is_terminal() ? SHOW_LINE : SHOW_NOTHING;
}

/* Raises the message on top as a bad argument arg, or as it is for arg 0 (Lua callers word it). */
static void bad_option(lua_State *L, int arg) {
  if (arg > 0) luaL_argerror(L, arg, lua_tostring(L, -1));
  lua_error(L);
}

/* Reads opts.progress: -1 when not given, else 0 or 1. */
static int read_progress_option(lua_State *L, int opts, int arg) {
  int given;
  if (opts == 0 || lua_isnoneornil(L, opts)) return -1;
  lua_getfield(L, opts, "progress");
  given = lua_isnil(L, -1) ? -1 : lua_toboolean(L, -1);
  if (given >= 0 && !lua_isboolean(L, -1)) {
    lua_pushfstring(L, "option 'progress' must be a boolean (got %s)", luaL_typename(L, -1));
    bad_option(L, arg);
  }
  lua_pop(L, 1);
  return given;
}

/* A reference to opts.on_progress, or LUA_NOREF. */
static int read_callback_option(lua_State *L, int opts, int arg) {
  if (opts == 0 || lua_isnoneornil(L, opts)) return LUA_NOREF;
  lua_getfield(L, opts, "on_progress");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  if (!lua_isfunction(L, -1)) {
    lua_pushfstring(L, "option 'on_progress' must be a function (got %s)", luaL_typename(L, -1));
    bad_option(L, arg);
  }
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Clears a terminal's line that was drawn and not finished; forgets the callback. */
static void release(lua_State *L, ProgressMeter *p) {
  if (p->ended) return;
  p->ended = 1;
  if (p->show == SHOW_LINE && p->shown) {
    fputs("\r\033[K", stderr);
    fflush(stderr);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, p->callback);
  p->callback = LUA_NOREF;
}

static int meter_release(lua_State *L) {
  release(L, luaL_checkudata(L, 1, PROGRESS_METATABLE));
  return 0;
}

static int meter_add(lua_State *L) {
  progress_add(L, luaL_checkudata(L, 1, PROGRESS_METATABLE), luaL_optinteger(L, 2, 1));
  return 0;
}

static int meter_close(lua_State *L) {
  progress_end(L, luaL_checkudata(L, 1, PROGRESS_METATABLE));
  return 0;
}

static const luaL_Reg meter_methods[] = {
  {"add", meter_add},
  {"close", meter_close},
  {NULL, NULL}
};

ProgressMeter *progress_new(lua_State *L, int opts, int arg, const char *fn,
                            lua_Integer total, lua_Integer done) {
  int progress_opt, callback;
  ProgressMeter *p;
  if (opts != 0) opts = lua_absindex(L, opts);
  progress_opt = read_progress_option(L, opts, arg);
  callback = read_callback_option(L, opts, arg);
  p = lua_newuserdatauv(L, sizeof *p, 0);
  memset(p, 0, sizeof *p);
  snprintf(p->fn, sizeof p->fn, "%s", fn);
  p->show = what_to_show(progress_opt);
  p->callback = callback;
  p->total = total;
  p->done = p->done_before = done;
  p->called_with = -1;
  p->start_ns = p->called_ns = par_now_ns();
  par_set_class(L, PROGRESS_METATABLE, meter_methods, meter_release, 1);
  return p;
}

/* Seconds as "m:ss", or "h:mm:ss" from an hour on. */
static void format_duration(char *out, size_t size, double seconds) {
  long s = seconds < 0 ? 0 : (long)(seconds + 0.5);
  if (s >= 3600) snprintf(out, size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else snprintf(out, size, "%ld:%02ld", s / 60, s % 60);
}

/* Items a second since the start, counting only the ones done since. */
static double rate_of(const ProgressMeter *p, double elapsed) {
  return elapsed > 0 ? (double)(p->done - p->done_before) / elapsed : 0;
}

static void format_rate(char *out, size_t size, double rate) {
  snprintf(out, size, rate < 100 ? "%.1f/s" : "%.0f/s", rate);
}

/* "par.map: 412/1000 (41%) 83.2/s elapsed 0:05 ETA 0:07", with what is known. */
static void format_state(const ProgressMeter *p, char *out, size_t size, int64_t now) {
  double elapsed = (double)(now - p->start_ns) / 1e9, rate = rate_of(p, elapsed);
  char took[32], speed[32], eta[32] = "";
  format_duration(took, sizeof took, elapsed);
  format_rate(speed, sizeof speed, rate);
  if (p->total < 0) {
    snprintf(out, size, "%s: %lld done %s elapsed %s", p->fn, (long long)p->done, speed, took);
    return;
  }
  if (rate > 0) {
    memcpy(eta, " ETA ", 5);
    format_duration(eta + 5, sizeof eta - 5, (double)(p->total - p->done) / rate);
  }
  snprintf(out, size, "%s: %lld/%lld (%d%%) %s elapsed %s%s", p->fn, (long long)p->done,
           (long long)p->total, p->total > 0 ? (int)(100 * p->done / p->total) : 100,
           speed, took, eta);
}

/* "par.map: 1000/1000 done in 0:12 (83.2/s)" */
static void format_summary(const ProgressMeter *p, char *out, size_t size, int64_t now) {
  double elapsed = (double)(now - p->start_ns) / 1e9;
  char took[32], speed[32], of_total[32] = "";
  format_duration(took, sizeof took, elapsed);
  format_rate(speed, sizeof speed, rate_of(p, elapsed));
  if (p->total >= 0) snprintf(of_total, sizeof of_total, "/%lld", (long long)p->total);
  snprintf(out, size, "%s: %lld%s done in %s (%s)", p->fn, (long long)p->done, of_total, took, speed);
}

static void write_line(const ProgressMeter *p, const char *text, int last) {
  if (p->show == SHOW_LINE) fprintf(stderr, "\r%s\033[K%s", text, last ? "\n" : "");
  else fprintf(stderr, "%s\n", text);
  fflush(stderr);
}

static int64_t redraw_every(const ProgressMeter *p) {
  return p->show == SHOW_LOG ? LOG_EVERY_NS : REDRAW_NS;
}

/* Draws the state when a second of work has passed and the last drawing is old enough. */
static void maybe_show(ProgressMeter *p, int64_t now) {
  char line[256];
  if (p->show == SHOW_NOTHING || now - p->start_ns < START_NS) return;
  if (p->shown && now - p->shown_ns < redraw_every(p)) return;
  format_state(p, line, sizeof line, now);
  write_line(p, line, 0);
  p->shown = 1;
  p->shown_ns = now;
}

static void call_back(lua_State *L, ProgressMeter *p, int64_t now) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->callback);
  lua_pushinteger(L, p->done);
  if (p->total >= 0) lua_pushinteger(L, p->total);
  else lua_pushnil(L);
  p->called_with = p->done;
  p->called_ns = now;
  lua_call(L, 2, 0);
}

void progress_add(lua_State *L, ProgressMeter *p, lua_Integer count) {
  int64_t now;
  if (p->ended) return;
  p->done += count;
  if (p->show == SHOW_NOTHING && p->callback == LUA_NOREF) return;
  now = par_now_ns();
  maybe_show(p, now);
  if (p->callback != LUA_NOREF && (p->done == p->total || now - p->called_ns >= CALL_EVERY_NS))
    call_back(L, p, now);
}

int64_t progress_due_ns(const ProgressMeter *p) {
  if (p->ended || p->show == SHOW_NOTHING) return -1;
  return p->shown ? p->shown_ns + redraw_every(p) : p->start_ns + START_NS;
}

void progress_tick(ProgressMeter *p) {
  if (!p->ended) maybe_show(p, par_now_ns());
}

void progress_end(lua_State *L, ProgressMeter *p) {
  int64_t now = par_now_ns();
  char line[256];
  if (p->ended) return;
  if (p->callback != LUA_NOREF && p->called_with != p->done) call_back(L, p, now);
  if (p->show != SHOW_NOTHING && p->shown) {
    format_summary(p, line, sizeof line, now);
    write_line(p, line, 1);
    p->shown = 0; /* the line is finished: release leaves it */
  }
  release(L, p);
}

/* Whether a meter for opts would draw or call back; progress_new checks the callback. */
static int meter_wanted(lua_State *L, int opts) {
  int wanted = what_to_show(read_progress_option(L, opts, 0)) != SHOW_NOTHING;
  if (!wanted && opts != 0) {
    wanted = lua_getfield(L, opts, "on_progress") != LUA_TNIL;
    lua_pop(L, 1);
  }
  return wanted;
}

/*
** new(fn, total|nil, opts|nil [, or_nil]): a bad option raises its bare
** message, for the caller to word. With or_nil, a meter that would
** neither draw nor call back is nil, so a short map makes no meter.
*/
int progress_lua_new(lua_State *L) {
  const char *fn = luaL_checkstring(L, 1);
  lua_Integer total = luaL_optinteger(L, 2, -1);
  int opts = lua_isnoneornil(L, 3) ? 0 : 3;
  if (opts != 0) luaL_checktype(L, 3, LUA_TTABLE);
  if (lua_toboolean(L, 4) && !meter_wanted(L, opts)) {
    lua_pushnil(L);
    return 1;
  }
  progress_new(L, opts, 0, fn, total, 0);
  return 1;
}
