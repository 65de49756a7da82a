-- bench/pipe_bench.lua: par.pipe and par.channel, the Lua side of what
-- pipe_bench.py does with Python's Pipe and Queue. Prints one line per
-- workload, its name and par's microseconds per operation:
--   build/parlua bench/pipe_bench.lua
local par = require "par"

local function pipe_ping_pong(n)
  local mine, theirs = par.pipe()
  local echo = par.spawn(function()
    mine:close()
    while true do
      local v = theirs:recv()
      if v == nil then return end
      theirs:send(v + 1)
    end
  end)
  theirs:close()
  local start = par.now()
  for i = 1, n do
    mine:send(i)
    assert(mine:recv() == i + 1)
  end
  local elapsed = par.now() - start
  mine:close()
  echo:join()
  return elapsed / n
end

local function channel_put_get(n)
  local ch, ready = par.channel(), par.channel()
  local reader = par.spawn(function()
    ready:put(true)
    for i = 1, n do assert(ch:get() == i) end
  end)
  ready:get()
  local start = par.now()
  for i = 1, n do ch:put(i) end
  reader:join()
  return (par.now() - start) / n
end

print(("pipe_ping_pong\t%.4f"):format(pipe_ping_pong(20000) * 1e6))
print(("channel_put_get\t%.4f"):format(channel_put_get(100000) * 1e6))
