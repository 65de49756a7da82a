-- par.pipe and par.channel against Python's Pipe and Queue (pipe_bench.py):
-- one line per workload, its name and microseconds per operation.
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

print(("%-60s %8.2f"):format("duplex pipe ping-pong, small ints, 2*10^4", pipe_ping_pong(20000) * 1e6))
print(("%-60s %8.2f"):format("channel put (parent) / get (worker), 10^5 small ints",
                             channel_put_get(100000) * 1e6))
