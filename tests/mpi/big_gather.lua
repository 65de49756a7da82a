-- Maps whose gathered results are several MiB, as one block: each rank
-- prints how far its resident memory grew over ten of them.
local function resident_mib()
  collectgarbage("collect")
  for line in io.lines("/proc/self/status") do
    local kib = line:match("^VmRSS:%s+(%d+)")
    if kib then return tonumber(kib) / 1024 end
  end
end

local items = {}
for i = 1, 1000000 do items[i] = i end
local function same(x) return x end
assert(par.map(same, items)[1000000] == 1000000)
local before = resident_mib()
for _ = 1, 10 do assert(par.map(same, items)[1000000] == 1000000) end
print(("%d grew %.0f MiB"):format(par.rank(), resident_mib() - before))
