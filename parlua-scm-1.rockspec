-- luarocks make --lua-version 5.4 --tree DIR builds par.so (with lualib/
-- compiled in) and the parlua interpreter through the Makefile.
rockspec_format = "3.0"
package = "parlua"
version = "scm-1"
source = {
  url = "git+file://.",
}
description = {
  summary = "A parallel map for Lua 5.4 over forked workers",
  detailed = [[
par.map, par.imap, par.pipeline, par.queue, par.spawn, channels, pipes and
shared-memory locks for Lua 5.4 on Linux. Workers are forked from the
running interpreter, so they already hold the caller's functions and data;
results come back as exact JSON over pipes, in order.
]],
  license = "MIT",
}
supported_platforms = { "linux" }
dependencies = {
  "lua >= 5.4, < 5.5",
}
build = {
  type = "make",
  build_target = "all",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LUA_CFLAGS = "-I$(LUA_INCDIR)",
    LUA = "$(LUA)",
  },
  install_target = "install-rock",
  install_variables = {
    LIBDIR = "$(LIBDIR)",
    BINDIR = "$(BINDIR)",
  },
}
