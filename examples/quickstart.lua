-- Quick start: the same CPU-bound function over a list, first in a plain
-- loop, then with par.map on every CPU. Run: build/parlua examples/quickstart.lua
local par = require "par"

-- Something slow enough to be worth a process: the sum of the digits of
-- every number below n.
local function digit_sum_below(n)
  local total = 0
  for i = 1, n do
    local x = i
    while x > 0 do
      total = total + x % 10
      x = x // 10
    end
  end
  return total
end

local jobs = {}
for i = 1, 48 do jobs[i] = 150000 + i end

local t0 = par.now()
local plain = {}
for i, n in ipairs(jobs) do plain[i] = digit_sum_below(n) end
local loop_seconds = par.now() - t0

t0 = par.now()
local parallel = par.map(digit_sum_below, jobs)
local par_seconds = par.now() - t0

for i = 1, #jobs do assert(parallel[i] == plain[i], "results differ at " .. i) end
print(("%d jobs, results identical; last one: digit_sum_below(%d) = %d")
  :format(#jobs, jobs[#jobs], parallel[#jobs]))
print(("plain loop: %.3f s"):format(loop_seconds))
print(("par.map:    %.3f s on %d workers (%.2fx faster)")
  :format(par_seconds, par.workers(), loop_seconds / par_seconds))
