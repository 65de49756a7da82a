-- Progress of long maps (docs/long-runs.md): the line on a terminal's
-- standard error, log lines, PARLUA_PROGRESS and on_progress. A line
-- shows only after a second of work, so the scripts that must draw one
-- have work that cannot take less: items that sleep, on one worker.

local helpers = require "tests.helpers"
local par = helpers.par

local temps = {}

local quote = helpers.quote

local function temp_script(code)
  local name = os.tmpname()
  temps[#temps + 1] = name
  return helpers.write_file(name, 'local par = require "par"\n' .. code)
end

-- Runs a script with its standard streams on a pseudo-terminal (script(1));
-- returns all it wrote there. env: "NAME=value ..." for the command.
local function run_on_terminal(code, env)
  local command = ("%s LUA_CPATH='build/?.so;;' %s %s"):format(env or "", helpers.interpreter,
                                                              temp_script(code))
  local p = io.popen("script -qec " .. quote(command) .. " /dev/null </dev/null")
  local out = p:read("a")
  p:close()
  return out
end

-- 12 items of at least 0.1 s each on one worker: more than a second of work.
local SLOW_MAP = [[
local par = require "par"
local r = par.map(function(x) par.sleep(0.1) return x end, {1,2,3,4,5,6,7,8,9,10,11,12}, %s)
print("results", #r)
]]

local function slow_map(opts)
  return SLOW_MAP:format(opts or "{workers = 1, chunk = 1}")
end

local function count(text, piece)
  local n, at = 0, 1
  while true do
    local from, to = text:find(piece, at, true)
    if not from then return n end
    n, at = n + 1, to + 1
  end
end

describe("progress", function()
  teardown(function()
    for _, name in ipairs(temps) do os.remove(name) end
  end)

  describe("on a terminal", function()
    it("draws done/total, rate, elapsed and ETA on one line and ends with a summary", function()
      local out = run_on_terminal(slow_map("{workers = 1, chunk = 1, progress = true}"), "TERM=xterm")
      assert.truthy(out:find("\rpar%.map: %d+/12 %(%d+%%%) [%d.]+/s elapsed %d+:%d%d ETA %d+:%d%d\27%[K"))
      assert.truthy(out:find("\rpar%.map: 12/12 done in %d+:%d%d %([%d.]+/s%)\27%[K\r?\n"))
      assert.truthy(out:find("results\t12", 1, true))
      assert.are.equal(1, count(out, "done in"))
    end)

    it("draws for an unchanged script under PARLUA_PROGRESS=1", function()
      local out = run_on_terminal(slow_map(), "TERM=xterm PARLUA_PROGRESS=1")
      assert.truthy(out:find("\rpar%.map: %d+/12 "))
      assert.truthy(out:find("par.map: 12/12 done in", 1, true))
    end)

    it("draws nothing when opts.progress = false, whatever PARLUA_PROGRESS says", function()
      local out = run_on_terminal(slow_map("{workers = 1, chunk = 1, progress = false}"),
                                  "TERM=xterm PARLUA_PROGRESS=1")
      assert.is_nil(out:find("par.map", 1, true))
      assert.truthy(out:find("results\t12", 1, true))
    end)

    it("draws nothing when TERM is dumb", function()
      local out = run_on_terminal(slow_map("{workers = 1, chunk = 1, progress = true}"), "TERM=dumb")
      assert.is_nil(out:find("par.map", 1, true))
    end)

    it("clears the line before an error is shown", function()
      local out = run_on_terminal([[
par.map(function(x) par.sleep(0.1) if x == 15 then error("boom") end return x end,
        {1,2,3,4,5,6,7,8,9,10,11,12,13,14,15}, {workers = 1, chunk = 1, progress = true})
]], "TERM=xterm")
      assert.truthy(out:find("\rpar%.map: %d+/15 "))
      assert.truthy(out:find("\r\27%[K[^\r\n]*item 15 failed"))
      assert.is_nil(out:find("done in", 1, true))
    end)

    it("redraws par.map's line as time passes, before any result comes", function()
      local out = run_on_terminal([[
local r = par.map(function(x) par.sleep(1.6) return x end, {1}, {progress = true})
print("results", #r)
]], "TERM=xterm")
      assert.is_true(count(out, "par.map: 0/1 (0%) 0.0/s elapsed 0:0") >= 2, out)
      assert.truthy(out:find("par.map: 1/1 done in 0:0", 1, true))
    end)

    it("draws for par.imap and par.pipeline, and not for the maps inside workers", function()
      local out = run_on_terminal([[
local list = {1,2,3,4,5,6,7,8,9,10,11,12}
for _ in par.imap(function(x) par.sleep(0.1) return x end, list, {workers = 1}) do end
local total = par.pipeline(list):map(function(x) par.sleep(0.1) return x end, {workers = 1})
  :reduce(function(a, x) return a + x end, 0)
local inner = par.map(function() return #par.map(function(x) par.sleep(0.1) return x end,
                                                   {1,2,3,4,5,6,7,8,9,10,11}) end, {1})
print("total", total, inner[1])
]], "TERM=xterm PARLUA_PROGRESS=1")
      assert.truthy(out:find("par.imap: 12/12 done in", 1, true))
      assert.truthy(out:find("par.pipeline: 12/12 done in", 1, true))
      assert.truthy(out:find("par.map: 1/1 done in", 1, true))
      assert.is_nil(out:find("/11", 1, true)) -- the inner map, in a worker, drew nothing
      assert.are.equal(3, count(out, "done in")) -- the pipeline's stage drew no line of its own
      assert.truthy(out:find("total\t78\t11", 1, true))
    end)
  end)

  describe("on a terminal, for par.pool", function()
    it("draws for pool:map and pool:imap under PARLUA_PROGRESS=1", function()
      local out = run_on_terminal([[
local pool <close> = par.pool({workers = 1})
local list = {1,2,3,4,5,6,7,8,9,10,11,12}
local r = pool:map(function(x) par.sleep(0.1) return x end, list, {chunk = 1})
for _ in pool:imap(function(x) par.sleep(0.1) return x end, list, {chunk = 1}) do end
print("results", #r)
]], "TERM=xterm PARLUA_PROGRESS=1")
      assert.are.equal(2, count(out, "par.pool: 12/12 done in"))
      assert.truthy(out:find("results\t12", 1, true))
    end)
  end)

  describe("off a terminal", function()
    it("writes nothing to a pipe or file, even when asked", function()
      local status, out, err = helpers.run_lua(slow_map("{workers = 1, chunk = 1, progress = true}"),
                                               "PARLUA_PROGRESS=1 TERM=xterm")
      assert.are.equal(0, status)
      assert.are.equal("results\t12\n", out)
      assert.are.equal("", err)
    end)

    it("writes plain lines under PARLUA_PROGRESS=log, then a summary", function()
      local status, out, err = helpers.run_lua(slow_map(), "PARLUA_PROGRESS=log")
      assert.are.equal(0, status)
      assert.are.equal("results\t12\n", out)
      assert.is_nil(err:find("\r", 1, true))
      assert.is_nil(err:find("\27", 1, true))
      local lines = {}
      for line in err:gmatch("[^\n]+") do lines[#lines + 1] = line end
      assert.is_true(#lines >= 2)
      for i = 1, #lines - 1 do
        assert.truthy(lines[i]:find("^par%.map: %d+/12 %(%d+%%%) [%d.]+/s elapsed %d+:%d%d"))
      end
      assert.truthy(lines[#lines]:find("^par%.map: 12/12 done in %d+:%d%d %([%d.]+/s%)$"))
    end)
  end)

  describe("on_progress", function()
    -- Each call as "done/total"; checks they never go down and the last is all.
    local function record()
      local calls = {}
      return calls, function(done, total) calls[#calls + 1] = {done, total} end
    end

    local function assert_climbs_to(calls, total, last)
      assert.is_true(#calls >= 1)
      for i, c in ipairs(calls) do
        assert.are.equal(total, c[2])
        if i > 1 then assert.is_true(c[1] >= calls[i - 1][1]) end
      end
      assert.are.equal(last, calls[#calls][1])
    end

    it("is called in the parent as par.map's results come, last with done == total", function()
      local calls, on_progress = record()
      local parent = par.pid()
      local pids = {}
      local r = par.map(function(x) par.sleep(0.02) return x end, {1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20},
                        {workers = 1, chunk = 1, on_progress = function(d, t)
                          pids[#pids + 1] = par.pid()
                          on_progress(d, t)
                        end})
      assert.are.equal(20, #r)
      assert_climbs_to(calls, 20, 20)
      assert.is_true(#calls >= 2) -- 0.4 s of work, a call at most every 0.1 s
      for _, pid in ipairs(pids) do assert.are.equal(parent, pid) end
    end)

    it("counts failed items too, with on_error = collect", function()
      local calls, on_progress = record()
      local _, errs = par.map(function(x) if x % 2 == 0 then error("even") end return x end, {1, 2, 3, 4, 5},
                              {on_error = "collect", on_progress = on_progress})
      assert.are.equal("even", errs[2].message:match("even"))
      assert.are.equal("even", errs[4].message:match("even"))
      assert_climbs_to(calls, 5, 5)
    end)

    it("is called for par.imap over a list, and with total nil over a function", function()
      local calls, on_progress = record()
      for _ in par.imap(function(x) return x end, {1, 2, 3, 4}, {on_progress = on_progress}) do end
      assert_climbs_to(calls, 4, 4)
      calls, on_progress = record()
      local n = 0
      local source = function() n = n + 1; if n <= 6 then return n end end
      for _ in par.imap(function(x) return x end, source, {on_progress = on_progress}) do end
      assert_climbs_to(calls, nil, 6)
    end)

    it("counts a pipeline's items out of its last stage or dropped by any", function()
      local calls, on_progress = record()
      local out = par.pipeline({1, 2, 3, 4, 5, 6, 7}, {on_progress = on_progress})
        :map(function(x) if x ~= 3 then return x end end)
        :map(function(x) if x % 2 == 0 then return x * 10 end end)
        :collect()
      assert.are.same({20, 40, 60}, out)
      assert_climbs_to(calls, 7, 7)
    end)

    it("is called once more when a loop over par.imap or a pipeline breaks", function()
      local calls, on_progress = record()
      for _ in par.imap(function(x) return x end, {1, 2, 3, 4, 5, 6}, {on_progress = on_progress}) do break end
      assert.are.equal(1, #calls)
      assert.are.same({1, 6}, calls[1])
      calls, on_progress = record()
      for _ in par.pipeline({1, 2, 3, 4, 5, 6}, {on_progress = on_progress}):map(function(x) return x end):run() do
        break
      end
      assert.are.same({{1, 6}}, calls)
    end)

    it("raises its error from the map", function()
      local ok, err = pcall(par.map, function(x) return x end, {1, 2},
                            {on_progress = function() error("drawn badly") end})
      assert.is_false(ok)
      assert.truthy(tostring(err):find("drawn badly", 1, true))
    end)
  end)

  describe("options", function()
    it("refuses values of the wrong type", function()
      local function message(f, ...)
        local ok, err = pcall(f, ...)
        assert.is_false(ok)
        return tostring(err)
      end
      assert.truthy(message(par.map, print, {1}, {progress = 1})
        :find("bad argument #3 to '[%w.]*map' %(option 'progress' must be a boolean %(got number%)%)"))
      assert.truthy(message(par.map, print, {1}, {on_progress = true})
        :find("option 'on_progress' must be a function (got boolean)", 1, true))
      assert.truthy(message(par.imap, print, {1}, {progress = "yes"})
        :find("bad argument #3 to 'imap' (option 'progress' must be a boolean (got string))", 1, true))
      assert.truthy(message(par.pipeline, {1}, {on_progress = 1})
        :find("bad argument #2 to 'pipeline' (option 'on_progress' must be a function (got number))", 1, true))
      assert.truthy(message(par.pipeline, {1}, {workers = 2})
        :find("bad argument #2 to 'pipeline' (unknown option 'workers')", 1, true))
    end)
  end)
end)
