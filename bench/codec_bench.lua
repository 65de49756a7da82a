-- bench/codec_bench.lua: par.encode/par.decode (the wire codec) against
-- Debian's lua-cjson on the same data.
--
--   build/parlua bench/codec_bench.lua      prints one line per case
--   local run = require "codec_bench"       run() returns the rows
--
-- Each codec decodes its own output: par's text is exact (17 significant
-- digits where a float needs them), cjson's is rounded to 14 digits.
-- Times are CPU time (os.clock), the best of REPS runs, with a full
-- garbage collection before each run, outside the timed part.

local par = require "par"
local cjson = require "cjson"

local REPS = 5

local function ints()
  local t = {}
  for i = 1, 1000000 do t[i] = i * 7919 - 4000000 end
  return t
end

local function floats()
  local t = {}
  for i = 1, 100000 do t[i] = i * 0.37 end
  return t
end

local function records()
  local t = {}
  for i = 1, 100000 do
    t[i] = {id = i, name = "user" .. i, score = i * 1.5, tags = {"a", "b"}}
  end
  return t
end

-- Mostly plain text of various lengths, some UTF-8, a few escapes.
local function strings()
  local words = {"lorem", "ipsum", "dolor", "sit", "amet", "consectetur",
                 "adipiscing", "elit", "sed", "do", "eiusmod", "tempor",
                 "incididunt", "ut", "labore", "et", "dolore", "magna",
                 "aliqua", "Ünïcödé", "naïve", "日本語"}
  local t = {}
  for i = 1, 100000 do
    local parts = {}
    for j = 1, 4 + i % 13 do parts[j] = words[(i * j) % #words + 1] end
    local s = table.concat(parts, " ")
    if i % 10 == 0 then s = s .. "\n\t\"quoted\" \\ path" end
    t[i] = s
  end
  return t
end

local DATASETS = {
  {"ints", ints}, {"floats", floats}, {"records", records}, {"strings", strings},
}

-- The best of REPS CPU times of fn(arg), in ms, and fn's last result.
local function best_ms(fn, arg)
  local best, result = math.huge, nil
  for _ = 1, REPS do
    result = nil
    collectgarbage("collect")
    local start = os.clock()
    result = fn(arg)
    local ms = (os.clock() - start) * 1000
    if ms < best then best = ms end
  end
  return best, result
end

local function run()
  local rows = {}
  for _, dataset in ipairs(DATASETS) do
    local name, make = dataset[1], dataset[2]
    local value = make()
    local par_enc_ms, par_text = best_ms(par.encode, value)
    local cjson_enc_ms, cjson_text = best_ms(cjson.encode, value)
    rows[#rows + 1] = {name = name .. " encode", par_ms = par_enc_ms, cjson_ms = cjson_enc_ms}
    local par_dec_ms = best_ms(par.decode, par_text)
    local cjson_dec_ms = best_ms(cjson.decode, cjson_text)
    rows[#rows + 1] = {name = name .. " decode", par_ms = par_dec_ms, cjson_ms = cjson_dec_ms}
  end
  return rows
end

-- require passes the module name; run.lua's loadfile passes nothing, and
-- then arg[0] is run.lua's own name.
local function is_main_script(...)
  local first = ...
  if type(first) == "string" and first:match("codec_bench$") then return false end
  return type(arg) == "table" and type(arg[0]) == "string" and
         arg[0]:match("codec_bench%.lua$") ~= nil
end

if is_main_script(...) then
  for _, row in ipairs(run()) do
    local dataset, direction = row.name:match("^(%S+) (%S+)$")
    print(("codec %s %s: par %.1f ms, cjson %.1f ms, ratio cjson/par %.2f"):format(
      dataset, direction, row.par_ms, row.cjson_ms, row.cjson_ms / row.par_ms))
  end
end

return run
