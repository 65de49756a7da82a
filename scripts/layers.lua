-- Checks that includes in runtime/ point down the layers: a file may
-- include a header of its own layer or one below, never above. Each
-- header's layer is its own; a .c file shares its header's. Usage:
--   lua5.4 scripts/layers.lua runtime
local layers = {
  {"parlua", "alloc", "buffer", "jsontext", "codec", "encode", "decode", "chunks"},
  {"proc", "cpus", "cluster", "cluster_stub", "handout", "rankout", "mpiwait"},
  {"shm", "shmtable"},
  {"frame", "lutil", "options"},
  {"progress", "checkpoint"},
  {"message"},
  {"pool"},
  {"worker", "dispatch", "spread"},
  {"lpar", "map", "queue", "spawn", "channel", "pipe", "lsync", "ldict"},
  {"host"},
}

local layer_of = {}
for level, names in ipairs(layers) do
  for _, name in ipairs(names) do layer_of[name] = level end
end

local dir = arg[1] or "runtime"
local failures, edges = 0, 0
local listing = io.popen("ls " .. dir)
for file in listing:lines() do
  local base = file:match("^(.-)%.[ch]$")
  if base then
    local from = layer_of[base]
    if not from then
      print(("%s/%s: not in any layer of scripts/layers.lua"):format(dir, file))
      failures = failures + 1
    else
      local n = 0
      for line in io.lines(dir .. "/" .. file) do
        n = n + 1
        local header = line:match('^#include "([%w_]+)%.h"')
        if header then
          edges = edges + 1
          local to = layer_of[header]
          if not to or to > from then
            print(("%s/%s:%d: includes %s.h, a layer above"):format(dir, file, n, header))
            failures = failures + 1
          end
        end
      end
    end
  end
end
listing:close()
print(("%d includes, %d pointing up"):format(edges, failures))
os.exit(failures == 0)
