/* par.spawn: being written. */
#include <lauxlib.h>

#include "lpar.h"

int par_spawn(lua_State *L) {
  return luaL_error(L, "par.spawn is not available yet");
}
