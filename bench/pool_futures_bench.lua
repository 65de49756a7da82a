-- bench/pool_futures_bench.lua: par.pool, the Lua side of what
-- pool_futures_bench.py does with a reused multiprocessing.Pool and a
-- ProcessPoolExecutor. Two warm workers. Prints one line per workload,
-- its name and par's microseconds per operation:
--   build/parlua bench/pool_futures_bench.lua
local par = require "par"

local function tiny(x) return x end
local function double(x) return x * 2 end

-- Microseconds per call of fn(i) over n calls.
local function per_op(n, fn)
  collectgarbage("collect")
  local start = par.now()
  for i = 1, n do fn(i) end
  return (par.now() - start) / n * 1e6
end

-- The median of per_op over several runs: a first big map also pays for
-- growing the heap, on either side.
local function median_op(runs, n, fn)
  local times = {}
  for r = 1, runs do times[r] = per_op(n, fn) end
  table.sort(times)
  return times[runs // 2 + 1]
end

local pool = par.pool({workers = 2})
pool:map(tiny, {1, 2}) -- warm: the workers have the functions
pool:submit(tiny, 1):result()

local pair = {1, 2}
print(("warm_map_2\t%.4f"):format(per_op(5000, function() pool:map(tiny, pair) end)))
print(("submit_result\t%.4f"):format(per_op(10000, function(i) pool:submit(tiny, i):result() end)))

local function submit_all(n)
  local futures = {}
  for i = 1, n do futures[i] = pool:submit(tiny, i) end
  for f in par.as_completed(futures) do f:result() end
end
print(("as_completed_20k\t%.4f"):format(per_op(1, function() submit_all(20000) end) / 20000))

local list = {}
for i = 1, 1000000 do list[i] = i end
print(("map_1m\t%.4f"):format(median_op(3, 1, function() pool:map(double, list) end) / 1e6))
pool:terminate()
