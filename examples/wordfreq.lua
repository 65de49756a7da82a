-- Word frequencies of a text file, counted in parallel: the file is split
-- into line ranges, each worker counts its range, the parent merges.
-- The example writes its own input first.
-- Run: build/parlua examples/wordfreq.lua [lines]
local par = require "par"

local nlines = tonumber(arg and arg[1]) or 400000
local path = os.tmpname()

-- A reproducible text: words drawn from a small vocabulary with a skew, so
-- the top of the table is predictable ("the" first).
local vocabulary = {"the", "of", "and", "to", "in", "parallel", "lua", "worker",
                    "process", "fork", "pipe", "result", "map", "queue", "item"}
local function write_text()
  local f = assert(io.open(path, "w"))
  local seed = 42
  for _ = 1, nlines do
    local words = {}
    for w = 1, 12 do
      seed = (seed * 1103515245 + 12345) % 2147483648
      local r = seed % 100
      local k = r < 30 and 1 or (r % #vocabulary) + 1
      words[w] = vocabulary[k]
    end
    f:write(table.concat(words, " "), "\n")
  end
  f:close()
end

local function read_lines()
  local lines = {}
  for line in io.lines(path) do lines[#lines + 1] = line end
  return lines
end

write_text()
local lines = read_lines()
os.remove(path)

-- Ranges of lines, one job each; the lines reach the workers through the fork.
local ranges = {}
local step = 20000
for lo = 1, #lines, step do ranges[#ranges + 1] = {lo, math.min(lo + step - 1, #lines)} end

local function count_range(range)
  local counts = {}
  for i = range[1], range[2] do
    for word in lines[i]:gmatch("%a+") do
      counts[word] = (counts[word] or 0) + 1
    end
  end
  return counts
end

local t0 = par.now()
local partial = par.map(count_range, ranges)
local total = {}
for _, counts in ipairs(partial) do
  for word, n in pairs(counts) do total[word] = (total[word] or 0) + n end
end
local seconds = par.now() - t0

local words = {}
for word in pairs(total) do words[#words + 1] = word end
table.sort(words, function(a, b) return total[a] > total[b] or (total[a] == total[b] and a < b) end)
print(("%d lines, %d words counted in %.2f s on %d workers; top five:")
  :format(#lines, #lines * 12, seconds, par.workers()))
for i = 1, 5 do print(("%8d  %s"):format(total[words[i]], words[i])) end
