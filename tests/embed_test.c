/*
** An application that embeds Lua and links build/libparlua.a: par works
** from an embedded state, refuses to fork while a second thread runs
** (unless the application allows it), and parlua_openlib sets the global.
** Prints one line per check and ends with "N passed, M failed"; exits 1 on
** any failure.
*/
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "parlua.h"

static int passed, failed;

static void check(int ok, const char *what, const char *detail) {
  if (ok) {
    passed++;
    printf("ok      %s\n", what);
  } else {
    failed++;
    printf("FAILED  %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  }
}

/* A state as an embedding application makes it, with par opened as in the docs. */
static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "par", luaopen_par, 1);
  lua_pop(L, 1);
  return L;
}

/* Runs a chunk that returns a string; copies it (or the error) into out. Returns 1 if it ran. */
static int run(lua_State *L, const char *code, char *out, size_t size) {
  int ok = luaL_dostring(L, code) == LUA_OK;
  const char *s = luaL_tolstring(L, -1, NULL);
  snprintf(out, size, "%s", s ? s : "(nothing)");
  lua_settop(L, 0);
  return ok;
}

static const char *square_map =
  "local list = {}\n"
  "for i = 1, 100 do list[i] = i end\n"
  "local r = par.map(function(x) return x * x end, list, {workers = 4})\n"
  "for i = 1, 100 do\n"
  "  if r[i] ~= i * i then return 'wrong result at ' .. i .. ': ' .. tostring(r[i]) end\n"
  "end\n"
  "return #r == 100 and 'right' or 'wrong length ' .. #r\n";

/* A second thread that does nothing but wait until told to end. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int stop_waiting;

static void *waiter(void *arg) {
  (void)arg;
  pthread_mutex_lock(&lock);
  while (!stop_waiting) pthread_cond_wait(&wake, &lock);
  pthread_mutex_unlock(&lock);
  return NULL;
}

/*
** An embedder's own signal handler, installed without SA_RESTART, so every
** tick interrupts whatever system call par is in (EINTR) and short-changes
** its reads and writes.
*/
static volatile sig_atomic_t ticks;

static void on_tick(int sig) {
  (void)sig;
  ticks++;
}

static void start_ticking(void) {
  struct sigaction sa;
  struct itimerval every = {{0, 500}, {0, 500}}; /* every 0.5 ms */
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_tick;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, NULL);
  setitimer(ITIMER_REAL, &every, NULL);
}

static void stop_ticking(void) {
  struct itimerval never = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &never, NULL);
  signal(SIGALRM, SIG_DFL);
}

/* Big results and many small ranges, so the ticks land inside reads, writes and waits. */
static const char *interrupted_map =
  "local big = par.map(function(k) local t = {} for i = 1, 300000 do t[i] = i + k end return t end,"
  "                    {1, 2, 3, 4})\n"
  "local list = {} for i = 1, 20000 do list[i] = i end\n"
  "local small = par.map(function(x) return x * 3 end, list, {chunk = 1})\n"
  "for k = 1, 4 do if #big[k] ~= 300000 or big[k][300000] ~= 300000 + k then return 'wrong big' end end\n"
  "for i = 1, 20000 do if small[i] ~= 3 * i then return 'wrong small' end end\n"
  "return 'right'";

/* Fills or checks n bytes of p with a pattern that depends on the offset. */
static void fill(unsigned char *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i += 4093) p[i] = (unsigned char)(i / 4093);
  if (n > 0) p[n - 1] = 0xA5;
}

static int filled(const unsigned char *p, size_t n) {
  size_t i;
  for (i = 0; i + 1 < n; i += 4093)
    if (p[i] != (unsigned char)(i / 4093)) return 0;
  return n == 0 || p[n - 1] == 0xA5;
}

/* Whether the mapping holding p is marked for huge pages ("hg" in smaps' VmFlags). */
static int marked_for_huge_pages(const void *p) {
  FILE *f = fopen("/proc/self/smaps", "r");
  char line[512];
  int inside = 0, marked = 0;
  if (f == NULL) return 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
      inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
    else if (inside && strncmp(line, "VmFlags:", 8) == 0)
      marked = strstr(line, " hg") != NULL;
  }
  fclose(f);
  return marked;
}

/* parlua_alloc keeps a block's bytes through every move between small and big. */
static void check_allocator(void) {
  const size_t small = 1000, big = (size_t)5 << 20, bigger = (size_t)9 << 20;
  unsigned char *p = parlua_alloc(NULL, NULL, LUA_TTABLE, small);
  int ok = p != NULL;
  char detail[64] = "";
  if (ok) fill(p, small);
  if (ok && (p = parlua_alloc(NULL, p, small, big)) != NULL && filled(p, small)) {
    fill(p, big);
    if (access("/sys/kernel/mm/transparent_hugepage/enabled", R_OK) == 0 && !marked_for_huge_pages(p))
      snprintf(detail, sizeof detail, "a 5 MiB block is not marked for huge pages");
  } else {
    ok = 0;
  }
  if (ok && (p = parlua_alloc(NULL, p, big, bigger)) != NULL && filled(p, big)) fill(p, bigger);
  else ok = 0;
  if (ok && (p = parlua_alloc(NULL, p, bigger, small)) != NULL && filled(p, small)) fill(p, small);
  else ok = 0;
  if (ok) ok = parlua_alloc(NULL, p, small, 0) == NULL;
  check(ok && detail[0] == '\0',
        "parlua_alloc keeps the bytes of a block grown past 4 MiB, grown again, shrunk and freed",
        detail[0] ? detail : "contents changed or allocation failed");
}

/* Whether any of [p, p + n) is mapped (msync fails with ENOMEM on what is not). */
static int is_mapped(const void *p, size_t n) {
  return msync((void *)p, n, MS_ASYNC) == 0;
}

/*
** A freed big block is kept for the next one (a map's results table is
** one, each map), but only up to 64 MiB in all: the rest goes back.
*/
static void check_kept_blocks(void) {
  const size_t big = (size_t)8 << 20, huge = (size_t)40 << 20;
  void *first = parlua_alloc(NULL, NULL, LUA_TTABLE, big), *again, *a, *b;
  int reused, returned;
  parlua_alloc(NULL, first, big, 0);
  again = parlua_alloc(NULL, NULL, LUA_TTABLE, big);
  reused = first != NULL && again == first;
  parlua_alloc(NULL, again, big, 0);
  a = parlua_alloc(NULL, NULL, LUA_TTABLE, huge);
  b = parlua_alloc(NULL, NULL, LUA_TTABLE, huge);
  parlua_alloc(NULL, a, huge, 0); /* kept, with the 8 MiB one: 48 MiB */
  parlua_alloc(NULL, b, huge, 0); /* over 64 MiB: unmapped */
  returned = a != NULL && b != NULL && is_mapped(a, huge) && !is_mapped(b, 4096);
  check(reused && returned, "parlua_alloc reuses a freed big block, and keeps no more than 64 MiB of them",
        !reused ? "a freed 8 MiB block was not reused" : "the kept blocks are not as expected");
}

static const char *big_values =
  "local r = par.map(function(k) local t = {} for i = 1, 1000000 do t[i] = i * k end"
  "                  return {t, string.rep(tostring(k), 6000000)} end, {1, 2})\n"
  "for k = 1, 2 do\n"
  "  local t, s = r[k][1], r[k][2]\n"
  "  if #t ~= 1000000 or t[1] ~= k or t[1000000] ~= 1000000 * k then return 'wrong table ' .. k end\n"
  "  if #s ~= 6000000 or s:sub(-1) ~= tostring(k) then return 'wrong string ' .. k end\n"
  "end\n"
  "r = nil collectgarbage() collectgarbage()\n"
  "return 'right'";

/* Whether a program run by a worker starts with SIGINT ignored (SigIgn bit 2 in its status). */
static const char *sigint_ignored_by_program =
  "return par.map(function()\n"
  "  local p = io.popen('grep SigIgn /proc/self/status')\n"
  "  local mask = tonumber(p:read('a'):match('%x+%s*$'), 16)\n"
  "  p:close()\n"
  "  return mask & 2 ~= 0 and 'yes' or 'no'\n"
  "end, {1})[1]";

/*
** A child the application forks itself, not par, runs par in the state it
** inherits: par.pid() and the worker pool it starts must be its own, not
** the parent's (par keeps its pid and must learn of every fork).
*/
static void check_own_fork(lua_State *L) {
  char out[256];
  int to_parent[2], status;
  ssize_t got;
  pid_t child;
  run(L, "return par.pid()", out, sizeof out); /* the parent's pid, asked before the fork */
  if (pipe(to_parent) != 0 || (child = fork()) < 0) {
    check(0, "fork a child of the application", "pipe or fork failed");
    return;
  }
  if (child == 0) {
    char mine[64];
    close(to_parent[0]);
    run(L, "return par.pid() .. ' ' .. table.concat(par.map(function(x) return x + 1 end, {1, 2}), ',')",
        out, sizeof out);
    snprintf(mine, sizeof mine, "%d 2,3", (int)getpid());
    got = write(to_parent[1], strcmp(out, mine) == 0 ? "own" : out, strcmp(out, mine) == 0 ? 3 : strlen(out));
    _exit(got > 0 ? 0 : 1);
  }
  close(to_parent[1]);
  got = read(to_parent[0], out, sizeof out - 1);
  out[got > 0 ? got : 0] = '\0';
  close(to_parent[0]);
  waitpid(child, &status, 0);
  check(strcmp(out, "own") == 0,
        "in a child the application forks, par.pid() is the child's and par.map works", out);
}

int main(void) {
  char out[2048];
  lua_State *L = new_state();
  pthread_t thread;
  int ran;

  ran = run(L, square_map, out, sizeof out);
  check(ran && strcmp(out, "right") == 0, "par.map works from an embedded state", out);
  check_own_fork(L);

  if (pthread_create(&thread, NULL, waiter, NULL) != 0) {
    check(0, "start a second thread", "pthread_create failed");
    return 1;
  }
  ran = run(L, square_map, out, sizeof out);
  check(!ran && strstr(out, "threads") != NULL && strstr(out, "parlua_allow_threads") != NULL,
        "with a second thread running, par.map refuses to fork, naming threads and parlua_allow_threads",
        out);

  ran = run(L, "return par.spawn(function() return 1 end):join()", out, sizeof out);
  check(!ran && strstr(out, "par.spawn") != NULL && strstr(out, "threads") != NULL,
        "with a second thread running, par.spawn refuses to fork too", out);

  parlua_allow_threads(1);
  ran = run(L, square_map, out, sizeof out);
  check(ran && strcmp(out, "right") == 0, "after parlua_allow_threads(1) the same call works", out);
  parlua_allow_threads(0);

  pthread_mutex_lock(&lock);
  stop_waiting = 1;
  pthread_cond_signal(&wake);
  pthread_mutex_unlock(&lock);
  pthread_join(thread, NULL);

  ran = run(L, square_map, out, sizeof out);
  check(ran && strcmp(out, "right") == 0, "once the thread has ended, par.map works again without permission",
        out);

  start_ticking();
  ran = run(L, interrupted_map, out, sizeof out);
  stop_ticking();
  check(ran && strcmp(out, "right") == 0 && ticks > 0,
        "signals that interrupt par's system calls (EINTR) lose and garble nothing", out);

  ran = run(L, sigint_ignored_by_program, out, sizeof out);
  check(ran && strcmp(out, "no") == 0,
        "a program a worker runs gets SIGINT at its default, so Ctrl-C ends it", out);
  signal(SIGINT, SIG_IGN);
  ran = run(L, sigint_ignored_by_program, out, sizeof out);
  check(ran && strcmp(out, "yes") == 0,
        "when the application ignores SIGINT, so does a program a worker runs", out);
  signal(SIGINT, SIG_DFL);
  lua_close(L);

  L = luaL_newstate();
  luaL_openlibs(L);
  parlua_openlib(L);
  ran = run(L, "return type(par) == 'table' and type(par.map) == 'function' and "
               "package.loaded.par == par and 'global' or 'no global par'", out, sizeof out);
  check(ran && strcmp(out, "global") == 0, "parlua_openlib sets the global par (and package.loaded.par)", out);
  ran = run(L, "return table.concat(par.map(function(w) return #w end, {'fork', 'pipe', 'map'}), ',')",
            out, sizeof out);
  check(ran && strcmp(out, "4,4,3") == 0, "par.map works in a state opened with parlua_openlib", out);
  lua_close(L);

  check_allocator();
  check_kept_blocks();
  L = luaL_newstate();
  lua_setallocf(L, parlua_alloc, NULL);
  luaL_openlibs(L);
  parlua_openlib(L);
  ran = run(L, big_values, out, sizeof out);
  check(ran && strcmp(out, "right") == 0,
        "a state on parlua_alloc maps and collects tables and strings of many MiB", out);
  lua_close(L);

  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
