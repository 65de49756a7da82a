/*
** batch: an application that embeds Lua and parlua. It reads orders, one
** "id,country,amount" per line, has the function 'review' of a Lua rules
** file judge each of them through par.map, and prints the verdicts with a
** summary. The rules call this program's own C functions (host.digest,
** host.audit) and its limits (a userdata); par.map's workers inherit all
** of them, and the audit log's open descriptor, through the fork.
** Usage: batch RULES.lua ORDERS.csv AUDIT.log ("-" reads orders from stdin)
*/
#define _POSIX_C_SOURCE 200809L /* open, write, O_CLOEXEC */

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <parlua.h>

#define LIMITS_TYPE "batch.Limits"

/* The most an order may be worth, per country; countries not listed are refused. */
typedef struct {
  char country[3];
  double limit;
} Limit;

static const Limit limits[] = {
  {"DE", 900}, {"FR", 700}, {"IT", 500}, {"NL", 800}, {"", 0}
};

/* limits:of(country) -> the limit, or nil for a country not served. */
static int limits_of(lua_State *L) {
  const Limit *table = luaL_checkudata(L, 1, LIMITS_TYPE);
  const char *country = luaL_checkstring(L, 2);
  for (; table->country[0] != '\0'; table++) {
    if (strcmp(table->country, country) == 0) {
      lua_pushnumber(L, table->limit);
      return 1;
    }
  }
  lua_pushnil(L);
  return 1;
}

/* host.digest(s) -> FNV-1a of s, a stable number for sampling orders. */
static int host_digest(lua_State *L) {
  size_t len, i;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  unsigned long h = 2166136261u;
  for (i = 0; i < len; i++)
    h = ((h ^ s[i]) * 16777619u) & 0xffffffffu;
  lua_pushinteger(L, (lua_Integer)h);
  return 1;
}

/* The audit log, opened before par.map forks: every worker writes to it. */
static int audit_fd = -1;

/* host.audit(line): one write(2) to a file opened O_APPEND, so lines of
** different workers never mix. */
static int host_audit(lua_State *L) {
  size_t len;
  const char *line = luaL_checklstring(L, 1, &len);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, line, len);
  luaL_addchar(&b, '\n');
  luaL_pushresult(&b);
  line = lua_tolstring(L, -1, &len);
  if (write(audit_fd, line, len) != (ssize_t)len)
    return luaL_error(L, "host.audit: cannot write the audit log");
  return 0;
}

static const luaL_Reg host_functions[] = {
  {"digest", host_digest},
  {"audit", host_audit},
  {NULL, NULL}
};

/* Sets the globals 'host' and 'limits' the rules use. */
static void register_host(lua_State *L) {
  Limit *u;
  luaL_newlib(L, host_functions);
  lua_setglobal(L, "host");
  u = lua_newuserdatauv(L, sizeof limits, 0);
  memcpy(u, limits, sizeof limits);
  luaL_newmetatable(L, LIMITS_TYPE);
  lua_newtable(L);
  lua_pushcfunction(L, limits_of);
  lua_setfield(L, -2, "of");
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_setglobal(L, "limits");
}

/* Pushes the list of orders read from f, each {id =, country =, amount =}. */
static void push_orders(lua_State *L, FILE *f) {
  char line[256], id[64], country[8];
  double amount;
  lua_Integer n = 0;
  lua_newtable(L);
  while (fgets(line, sizeof line, f) != NULL) {
    if (sscanf(line, "%63[^,],%7[^,],%lf", id, country, &amount) != 3)
      continue; /* a header or a blank line */
    lua_createtable(L, 0, 3);
    lua_pushstring(L, id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, country);
    lua_setfield(L, -2, "country");
    lua_pushnumber(L, amount);
    lua_setfield(L, -2, "amount");
    lua_rawseti(L, -2, ++n);
  }
}

/* Calls par.map(review, orders) with the orders on top; leaves the results
** or the error there. */
static int review_all(lua_State *L) {
  lua_getglobal(L, "par");
  lua_getfield(L, -1, "map");
  lua_remove(L, -2);
  lua_getglobal(L, "review");
  lua_pushvalue(L, -3);
  return lua_pcall(L, 2, 1, 0);
}

/* The string field 'name' of the table at idx, or NULL. */
static const char *string_field(lua_State *L, int idx, const char *name) {
  if (!lua_istable(L, idx)) {
    lua_pushnil(L);
    return NULL;
  }
  lua_getfield(L, idx, name);
  return lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
}

/* Prints one line per order and the counts of each verdict. */
static void print_verdicts(lua_State *L, int orders, int results) {
  lua_Integer i, n = luaL_len(L, orders);
  int accepted = 0, held = 0, refused = 0;
  for (i = 1; i <= n; i++) {
    const char *id, *verdict, *reason;
    lua_rawgeti(L, orders, i);
    lua_rawgeti(L, results, i);
    id = string_field(L, -2, "id");
    verdict = string_field(L, -2, "verdict");
    reason = string_field(L, -3, "reason");
    if (verdict == NULL)
      verdict = "(no verdict)";
    printf("%s %s%s%s\n", id, verdict, reason ? ": " : "", reason ? reason : "");
    accepted += strcmp(verdict, "accept") == 0;
    held += strcmp(verdict, "hold") == 0;
    refused += strcmp(verdict, "refuse") == 0;
    lua_pop(L, 5);
  }
  printf("%lld orders: %d accepted, %d held, %d refused\n", (long long)n, accepted, held, refused);
}

static int fail(lua_State *L, const char *what) {
  fprintf(stderr, "batch: %s: %s\n", what, luaL_tolstring(L, -1, NULL));
  lua_close(L);
  return EXIT_FAILURE;
}

int main(int argc, char **argv) {
  lua_State *L;
  FILE *orders;
  if (argc != 4) {
    fprintf(stderr, "usage: batch RULES.lua ORDERS.csv AUDIT.log\n");
    return EXIT_FAILURE;
  }
  orders = strcmp(argv[2], "-") == 0 ? stdin : fopen(argv[2], "r");
  audit_fd = open(argv[3], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (orders == NULL || audit_fd < 0) {
    perror(orders == NULL ? argv[2] : argv[3]);
    return EXIT_FAILURE;
  }
  L = luaL_newstate();
  lua_setallocf(L, parlua_alloc, NULL); /* before the state holds a big block */
  luaL_openlibs(L);
  parlua_openlib(L);
  register_host(L);
  if (luaL_dofile(L, argv[1]) != LUA_OK)
    return fail(L, argv[1]);
  push_orders(L, orders);
  if (review_all(L) != LUA_OK)
    return fail(L, "review");
  print_verdicts(L, lua_gettop(L) - 1, lua_gettop(L));
  lua_close(L);
  close(audit_fd);
  return EXIT_SUCCESS;
}
