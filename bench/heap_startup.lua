-- bench/heap_startup.lua MB: par.map's start-up (2 items, 2 workers) in a
-- process that holds MB megabytes of data, half small tables and half 1 MB
-- strings, as a script that keeps big data and maps in a loop does.
-- Prints "startup_<MB><TAB>microseconds" (median of 21) and the resident
-- size it reached, "rss_<MB><TAB>megabytes".

local target_mb = tonumber(arg[1]) or 0

local function rss_mb()
  local f = assert(io.open("/proc/self/status"))
  local kb = f:read("a"):match("VmRSS:%s*(%d+)")
  f:close()
  return tonumber(kb) / 1024
end

-- Grows the heap until the process is resident at about target_mb.
local function hold_data(mb)
  local data, start = {}, rss_mb()
  local strings = 0
  while rss_mb() - start < mb do
    if rss_mb() - start < strings * 2 then  -- small tables for the other half
      for _ = 1, 100000 do data[#data + 1] = {#data} end
    else
      strings = strings + 1
      data[#data + 1] = string.rep("x", 1024 * 1024 - 32) .. strings
    end
  end
  return data
end

local function median_us(fn, runs)
  local times = {}
  for i = 1, runs do
    local start = par.now()
    fn()
    times[i] = (par.now() - start) * 1e6
  end
  table.sort(times)
  return times[(runs + 1) // 2]
end

local data = hold_data(target_mb)
collectgarbage()
local function inc(x) return x + #data - #data + 1 end
local us = median_us(function() par.map(inc, {1, 2}, {workers = 2}) end, 21)
print(("startup_%d\t%.1f"):format(target_mb, us))
print(("rss_%d\t%.0f"):format(target_mb, rss_mb()))
