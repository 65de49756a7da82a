/* par.channel: being written. */
#include <lauxlib.h>

#include "lpar.h"

int par_channel(lua_State *L) {
  return luaL_error(L, "par.channel is not available yet");
}
