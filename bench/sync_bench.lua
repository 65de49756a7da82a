-- bench/sync_bench.lua: par's shared values and locks, timed inside
-- workers. Run with build/parlua; prints one line per workload, its name
-- and par's microseconds per operation:
--   build/parlua bench/sync_bench.lua
-- With --compare it also runs bench/sync_bench.py (Python 3
-- multiprocessing) and prints Python's time, the ratio and the goal.
local par = require "par"

local HERE = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local REPS = 5
local ADDS = 100000        -- v:add(1) in each of 2 workers
local LOCKS = 200000       -- acquire + release, one worker

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

-- Two workers start together (a barrier) and each times its own adds;
-- the slower worker's time per add.
local function value_add()
  local v, start = par.value(0), par.barrier(2)
  local times = par.map(function()
    start:wait()
    local t0 = par.now()
    for _ = 1, ADDS do v:add(1) end
    return par.now() - t0
  end, {1, 2}, {workers = 2})
  assert(v:get() == 2 * ADDS, "lost updates")
  return math.max(times[1], times[2]) / ADDS * 1e6
end

local function lock_uncontended()
  local m = par.lock()
  return par.map(function()
    local t0 = par.now()
    for _ = 1, LOCKS do m:acquire(); m:release() end
    return (par.now() - t0) / LOCKS * 1e6
  end, {1})[1]
end

local workloads = {
  {name = "value_add_2workers", run = value_add, goal = 10},
  {name = "lock_uncontended", run = lock_uncontended, goal = 2},
}

local function python_times()
  local p = io.popen("python3 " .. HERE .. "/sync_bench.py")
  local text = p:read("a")
  p:close()
  return text ~= "" and par.decode(text) or nil
end

local compare = arg and arg[1] == "--compare"
local python = compare and python_times() or nil
for _, w in ipairs(workloads) do
  local times = {}
  for i = 1, REPS do
    collectgarbage()
    times[i] = w.run()
  end
  local us = median(times)
  if not compare then
    print(("%s\t%.4f"):format(w.name, us))
  elseif python and python[w.name] then
    local ratio = python[w.name] / us
    print(("%-20s par %.4f us  python %.4f us  %.1fx  goal %dx %s"):format(
      w.name, us, python[w.name], ratio, w.goal, ratio >= w.goal and "met" or "NOT met"))
  else
    print(("%-20s par %.4f us  python: no result"):format(w.name, us))
  end
end
