-- bench/dict_bench.lua: par.dict timed inside workers, next to
-- bench/dict_bench.py (multiprocessing.Manager). Run with build/parlua;
-- prints one line per workload, its name and par's microseconds per
-- operation (bench/run.lua puts them side by side with Python's):
--   build/parlua bench/dict_bench.lua
local par = require "par"

local REPS = 5
local KEYS = 20000         -- d[i] = i, then d[i], inside one worker
local INCRS = 5000         -- d:incr on one key in each of 2 workers

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

-- One set and one get per key; the time per operation.
local function set_get()
  local d = par.dict()
  return par.map(function()
    local t0 = par.now()
    for i = 1, KEYS do d[i] = i end
    for i = 1, KEYS do assert(d[i] == i) end
    return (par.now() - t0) / (2 * KEYS) * 1e6
  end, {1})[1]
end

-- Two workers start together (a barrier) and each times its own incrs;
-- the slower worker's time per incr.
local function incr_2workers()
  local d, start = par.dict(), par.barrier(2)
  local times = par.map(function()
    start:wait()
    local t0 = par.now()
    for _ = 1, INCRS do d:incr("hits") end
    return par.now() - t0
  end, {1, 2}, {workers = 2})
  assert(d.hits == 2 * INCRS, "lost updates")
  return math.max(times[1], times[2]) / INCRS * 1e6
end

for _, w in ipairs({{"dict_set_get", set_get}, {"dict_incr_2workers", incr_2workers}}) do
  local times = {}
  for i = 1, REPS do
    collectgarbage()
    times[i] = w[2]()
  end
  print(("%s\t%.4f"):format(w[1], median(times)))
end
