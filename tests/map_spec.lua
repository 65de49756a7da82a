local helpers = require "tests.helpers"
local par = helpers.par

local function square(x) return x * x end

describe("par.map", function()
  it("returns fn(list[i]) at i, in order", function()
    local list = {}
    for i = 1, 1000 do list[i] = i end
    local r = par.map(square, list)
    assert.are.equal(1000, #r)
    for i = 1, 1000 do assert.are.equal(i * i, r[i]) end
  end)

  it("keeps only the first value fn returns", function()
    local r = par.map(function(x) return x, "second" end, {1, 2})
    assert.are.same({1, 2}, r)
  end)

  it("leaves a hole where fn returns nil", function()
    local r = par.map(function(x) if x % 2 == 0 then return x end end, {1, 2, 3, 4}, {workers = 2})
    assert.is_nil(r[1]); assert.are.equal(2, r[2]); assert.is_nil(r[3]); assert.are.equal(4, r[4])
  end)

  it("accepts a table with __call as fn", function()
    local callable = setmetatable({k = 10}, {__call = function(self, x) return self.k + x end})
    assert.are.same({11, 12}, par.map(callable, {1, 2}))
  end)

  it("returns an empty table for an empty list without forking", function()
    local marker = os.tmpname()
    os.remove(marker)
    local r = par.map(square, {}, {init = function() io.open(marker, "w"):close() end})
    assert.are.same({}, r)
    assert.is_nil(io.open(marker))
  end)

  it("runs fn in other processes", function()
    local parent = par.pid()
    local pids = par.map(function() return par.pid() end, {1, 2, 3, 4}, {workers = 2})
    for _, pid in ipairs(pids) do assert.are_not.equal(parent, pid) end
  end)

  describe("workers see the state as it was at the call", function()
    it("sees closures with upvalues and globals", function()
      local offset = 100
      _G.par_spec_global = 7
      local r = par.map(function(x) return x + offset + par_spec_global end, {1, 2})
      _G.par_spec_global = nil
      assert.are.same({108, 109}, r)
    end)

    it("sees required modules", function()
      local json = require "cjson"
      local r = par.map(function(x) return json.decode(x).a end, {'{"a":1}', '{"a":2}'})
      assert.are.equal(1, r[1]); assert.are.equal(2, r[2])
    end)

    it("takes items of any type, functions and userdata included", function()
      local items = {function() return "f" end, io.stdout, coroutine.create(function() end), {x = 1}}
      local r = par.map(function(item)
        if type(item) == "function" then return item() end
        if io.type(item) then return io.type(item) end
        return type(item)
      end, items)
      assert.are.same({"f", "file", "thread", "table"}, r)
    end)

    it("never lets a worker's writes reach the parent", function()
      local shared = {count = 0}
      _G.par_spec_counter = 0
      par.map(function(x) shared.count = shared.count + x; par_spec_counter = 99; return x end, {1, 2, 3})
      assert.are.equal(0, shared.count)
      assert.are.equal(0, _G.par_spec_counter)
      _G.par_spec_counter = nil
    end)
  end)

  describe("options", function()
    local function misuse(opts)
      local ok, err = pcall(function() return par.map(square, {1, 2}, opts) end)
      assert.is_false(ok)
      return err
    end

    it("rejects a list that is not a table", function()
      local ok, err = pcall(function() return par.map(square, 42) end)
      assert.is_false(ok)
      assert.matches("bad argument #2 to 'map' %(table expected, got number%)", err)
    end)

    it("rejects an fn that cannot be called", function()
      local ok, err = pcall(function() return par.map(42, {1}) end)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'map' %(function expected, got number%)", err)
    end)

    it("rejects bad values and unknown names before anything forks", function()
      helpers.settle()
      local before = helpers.child_count()
      assert.matches("bad argument #3 to 'map' %(option 'workers' must be an integer >= 1 %(got 0%)%)", misuse({workers = 0}))
      assert.matches("option 'workers' must be an integer", misuse({workers = 1.5}))
      assert.matches("option 'workers' must be an integer", misuse({workers = "2"}))
      assert.matches("option 'chunk' must be an integer >= 1", misuse({chunk = 0}))
      assert.matches("option 'on_error' must be \"raise\" or \"collect\"", misuse({on_error = "ignore"}))
      assert.matches("option 'init' must be a function %(got number%)", misuse({init = 5}))
      assert.matches("bad argument #3 to 'map' %(unknown option 'wrokers'%)", misuse({wrokers = 2}))
      assert.matches("bad argument #3 to 'map' %(table expected, got string%)", misuse("fast"))
      assert.are.equal(before, helpers.child_count())
    end)

    it("never starts more workers than there are items", function()
      local pids = par.map(function() par.sleep(0.05); return par.pid() end, {1, 2}, {workers = 8})
      assert.are_not.equal(pids[1], pids[2])
    end)

    it("uses the number of workers asked for", function()
      local list = {}
      for i = 1, 40 do list[i] = i end
      local pids = par.map(function() par.sleep(0.005); return par.pid() end, list, {workers = 3})
      local distinct = {}
      for _, pid in ipairs(pids) do distinct[pid] = true end
      local n = 0
      for _ in pairs(distinct) do n = n + 1 end
      assert.are.equal(3, n)
    end)

    it("hands out items in ranges of 'chunk'", function()
      local list = {}
      for i = 1, 20 do list[i] = i end
      local pids = par.map(function() return par.pid() end, list, {chunk = 5, workers = 2})
      for lo = 1, 20, 5 do
        for i = lo, lo + 4 do assert.are.equal(pids[lo], pids[i]) end
      end
    end)

    it("runs init once in each worker before its first item", function()
      local r = par.map(function() return _G.par_spec_inits end, {1, 2, 3, 4, 5, 6}, {
        workers = 2,
        init = function() _G.par_spec_inits = (_G.par_spec_inits or 0) + 1 end,
      })
      for i = 1, 6 do assert.are.equal(1, r[i]) end
      assert.is_nil(_G.par_spec_inits)
    end)
  end)

  describe("balancing", function()
    it("spreads cheap items away from a worker busy with a slow one", function()
      local list = {}
      for i = 1, 40 do list[i] = i end
      local pids = par.map(function(i)
        if i == 1 then par.sleep(0.5) end
        return par.pid()
      end, list, {workers = 2})
      local with_slow = 0
      for i = 2, 40 do if pids[i] == pids[1] then with_slow = with_slow + 1 end end
      assert.is_true(with_slow <= 2, "the slow item's worker also ran " .. with_slow .. " items")
    end)

    it("lets each worker of a short map exit once it has answered, not when the map ends", function()
      -- With no more items than workers, every worker's range is its last:
      -- the quick item's worker is gone (a zombie, to be reaped) while the
      -- slow item still runs, rather than waiting for word from the parent.
      -- Item 1 takes 0.1 s, which pays for forking the second worker even
      -- when the probe sees it end.
      local file = os.tmpname()
      local function state_of(pid)
        local f = io.open("/proc/" .. pid .. "/stat")
        local state = f and f:read("a"):match("^%d+ %b() (%a)")
        if f then f:close() end
        return state
      end
      local r = par.map(function(x)
        if x == 1 then
          par.sleep(0.1)
          local f = io.open(file, "w") f:write(par.pid()) f:close()
          return "quick"
        end
        local pid
        for _ = 1, 500 do
          local f = io.open(file)
          pid = f and tonumber(f:read("a"))
          if f then f:close() end
          if pid then break end
          par.sleep(0.01)
        end
        for _ = 1, 500 do
          local state = state_of(pid)
          if state == nil or state == "Z" then return "gone" end
          par.sleep(0.01)
        end
        return "still there: " .. tostring(state_of(pid))
      end, {1, 2}, {workers = 2})
      os.remove(file)
      assert.are.same({"quick", "gone"}, r)
    end)

    -- AddressSanitizer (make check-san) slows a fresh worker's first answer
    -- far more than the fork the probe measures, so there it never looks cheap.
    local quick_probe = os.getenv("PARLUA_SANITIZED") and pending or it

    -- The first worker answers item 1 well within the probe when nothing
    -- else loads the machine; one quiet map out of twenty is enough.
    local function one_worker_in_twenty(opts)
      for _ = 1, 20 do
        local pids = par.map(function() return par.pid() end, {1, 2, 3}, opts)
        assert.are.equal(3, #pids)
        if pids[1] == pids[2] and pids[2] == pids[3] then return true end
      end
      return false
    end

    quick_probe("runs a map whose work is done sooner than a fork on the one worker it forked first", function()
      assert.is_true(one_worker_in_twenty({workers = 3}), "every map forked more than one worker")
    end)

    quick_probe("counts the first worker's time to answer from when it starts, not from its fork", function()
      -- init holds the worker back 3 ms, three times the most the probe
      -- gives an answer: counted from the fork, every map forked the others.
      local opts = {workers = 3, init = function() par.sleep(0.003) end}
      assert.is_true(one_worker_in_twenty(opts), "every map forked more than one worker")
    end)

    it("forks more workers once later items show they cost more than the probe saw", function()
      local pids = par.map(function(x)
        if x > 1 then par.sleep(0.2) end
        return par.pid()
      end, {1, 2, 3, 4, 5, 6}, {workers = 3})
      local distinct, n = {}, 0
      for _, pid in ipairs(pids) do
        if not distinct[pid] then distinct[pid] = true n = n + 1 end
      end
      assert.is_true(n >= 2, "all six items ran on one worker")
    end)

    it("handles many tiny items with the automatic chunk size", function()
      local list = {}
      for i = 1, 300000 do list[i] = i end
      local r = par.map(function(x) return x + 1 end, list)
      assert.are.equal(300000, #r)
      assert.are.equal(2, r[1]); assert.are.equal(150001, r[150000]); assert.are.equal(300001, r[300000])
    end)
  end)

  describe("errors", function()
    local function boom(x)
      if x == 3 then error("boom") end
      return x
    end

    it("raises an error table naming par.map, the item and the worker's message", function()
      local ok, err = pcall(par.map, boom, {1, 2, 3, 4})
      assert.is_false(ok)
      assert.are.equal("table", type(err))
      assert.are.equal(3, err.index)
      assert.are.equal("error", err.kind)
      assert.matches("boom", err.message)
      assert.matches("stack traceback", err.traceback)
      assert.matches("map_spec%.lua:%d+: in ", err.traceback)
      local text = tostring(err)
      assert.matches("^par%.map: item 3 failed: .*boom", text)
      assert.matches("stack traceback", text)
    end)

    it("keeps a non-string error value", function()
      local ok, err = pcall(par.map, function() error({code = 42}) end, {1})
      assert.is_false(ok)
      assert.are.equal(42, err.value.code)
    end)

    it("collects errors and keeps every other result", function()
      local r, errs = par.map(boom, {1, 2, 3, 4, 5}, {on_error = "collect"})
      assert.are.equal(1, r[1]); assert.are.equal(2, r[2]); assert.is_nil(r[3])
      assert.are.equal(4, r[4]); assert.are.equal(5, r[5])
      assert.are.equal(3, errs[3].index)
      assert.matches("boom", errs[3].message)
      assert.is_nil(errs[1])
    end)

    it("returns nil errors when nothing failed", function()
      local r, errs = par.map(square, {1, 2}, {on_error = "collect"})
      assert.are.same({1, 4}, r)
      assert.is_nil(errs)
    end)

    it("reports a result that cannot be sent, naming its type and place", function()
      local ok, err = pcall(par.map, function() return {handlers = {1, print}} end, {1})
      assert.is_false(ok)
      assert.are.equal(1, err.index)
      assert.matches("function", err.message)
      assert.matches("result%.handlers%[2%]", err.message)
    end)

    it("reports a cycle in a result", function()
      local _, errs = par.map(function() local t = {}; t.self = t; return t end, {1}, {on_error = "collect"})
      assert.matches("cycle", errs[1].message)
      assert.matches("result%.self", errs[1].message)
    end)

    it("reports a worker that dies as a crash of its item", function()
      local _, errs = par.map(function(x) if x == 2 then os.exit(3) end return x end, {1, 2, 3},
                              {on_error = "collect", workers = 1})
      assert.are.equal("crash", errs[2].kind)
      assert.matches("exited with status 3", errs[2].message)
    end)
  end)

  it("keeps a worker's progress slot when it collects a queue its parent left", function()
    -- The worker maps its own progress page for its nested map; freeing
    -- the inherited queue's slots must not unmap the parent's page, where
    -- the worker marks the items it runs.
    collectgarbage("stop")
    local q = par.queue(function(x) return x end, {workers = 1})
    q = nil -- garbage, not yet collected
    local ok, r = pcall(par.map, function(x)
      if x == 1 then
        par.map(function(y) return y end, {1, 2}, {workers = 2})
        collectgarbage()
      end
      return x * 10
    end, {1, 2, 3}, {workers = 1})
    collectgarbage("restart")
    collectgarbage()
    assert.is_true(ok, tostring(r))
    assert.are.same({10, 20, 30}, r)
  end)

  it("works inside a worker (nested maps)", function()
    local r = par.map(function(x)
      local inner = par.map(function(y) return y * 10 end, {x, x + 1})
      return inner[1] + inner[2]
    end, {1, 2, 3})
    assert.are.same({30, 50, 70}, r)
  end)

  it("carries results of every kind exactly", function()
    local values = {2, 2.0, math.pi, -0.0, math.maxinteger, math.mininteger, "a\0b\255",
                    true, false, {1, nil, 3}, {[1.5] = "x", [true] = "y", [10] = "z"}, 1e308, 5e-324}
    local r = par.map(function(i) return values[i] end, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13})
    assert.are.equal("integer", math.type(r[1]))
    assert.are.equal("float", math.type(r[2]))
    assert.are.equal(math.pi, r[3])
    assert.are.equal(-math.huge, 1 / r[4])
    assert.are.equal(math.maxinteger, r[5]); assert.are.equal(math.mininteger, r[6])
    assert.are.equal("a\0b\255", r[7])
    assert.is_true(r[8]); assert.is_false(r[9])
    assert.are.same({1, nil, 3}, r[10])
    assert.are.same({[1.5] = "x", [true] = "y", [10] = "z"}, r[11])
    assert.are.equal(1e308, r[12]); assert.are.equal(5e-324, r[13])
  end)

  it("carries a 1 GiB string", function()
    local r = par.map(function() return string.rep("x", 1 << 30) end, {1})
    assert.are.equal(1 << 30, #r[1])
    r = nil
    collectgarbage()
  end)
end)

describe("process hygiene", function()
  it("reaps every worker", function()
    helpers.settle()
    local before = helpers.child_count()
    par.map(square, {1, 2, 3, 4})
    pcall(par.map, function() error("x") end, {1, 2, 3, 4})
    assert.are.equal(before, helpers.child_count())
  end)

  it("leaves no descriptor open after 1,000 calls", function()
    helpers.settle()
    local before = helpers.fd_count()
    for _ = 1, 1000 do par.map(square, {1, 2}) end
    assert.are.equal(before, helpers.fd_count())
  end)

  -- What a Lua script run in a new process prints; it must exit with status 0.
  local function output_of(code)
    local status, out = helpers.run_lua(code)
    assert.are.equal(0, status)
    return out
  end

  it("flushes pending output before forking, so it is written once", function()
    local out = output_of([[
      local par = require "par"
      io.write("pending ")
      par.map(function(x) return x end, {1, 2, 3})
      io.write("done")
    ]])
    assert.are.equal("pending done", out)
  end)

  it("never runs the parent's finalizers in a worker", function()
    local out = output_of([[
      local par = require "par"
      local guard = setmetatable({}, {__gc = function() io.write("finalized ") end})
      par.map(function(x) return x end, {1, 2, 3}, {workers = 3})
    ]])
    assert.are.equal("finalized ", out)
  end)

  it("keeps what workers print, each line once", function()
    local out = output_of([[
      local par = require "par"
      par.map(function(x) print("item " .. x) end, {1, 2, 3, 4}, {workers = 2})
    ]])
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    table.sort(lines)
    assert.are.same({"item 1", "item 2", "item 3", "item 4"}, lines)
  end)
end)

describe("par helpers", function()
  it("counts usable CPUs in par.workers()", function()
    assert.are.equal("integer", math.type(par.workers()))
    assert.is_true(par.workers() >= 1)
  end)

  it("lets PARLUA_WORKERS override the CPU count", function()
    local f = io.popen([[PARLUA_WORKERS=13 LUA_CPATH='build/?.so;;' ]] .. helpers.interpreter ..
                       [[ -e 'io.write(require("par").workers())']])
    assert.are.equal("13", f:read("a"))
    f:close()
  end)

  -- Makes cgroups nested as 'names' (outermost first) in the cgroup v2
  -- hierarchy when it has the cpu controller, else in v1's cpu hierarchy,
  -- with a quota of half a CPU on the one at 'quota_at'. Returns their
  -- directories, innermost last; nil and why when this process may not
  -- make them (not root, say).
  local function quota_cgroups(names, quota_at)
    local v2 = helpers.read_file("/sys/fs/cgroup/cgroup.controllers")
    local root, quota_files
    if v2 and v2:match("%f[%w]cpu%f[%W]") then
      root = "/sys/fs/cgroup"
      quota_files = {["cpu.max"] = "50000 100000"}
    elseif helpers.read_file("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") then
      root = "/sys/fs/cgroup/cpu"
      quota_files = {["cpu.cfs_period_us"] = "100000", ["cpu.cfs_quota_us"] = "50000"}
    else
      return nil, "no cgroup hierarchy with the cpu controller"
    end
    local dirs, dir = {}, root
    for i, name in ipairs(names) do
      if quota_files["cpu.max"] and not os.execute(
          ("echo +cpu > %s/cgroup.subtree_control 2>/dev/null"):format(dir)) then
        return nil, "cannot enable the cpu controller under " .. dir
      end
      dir = dir .. "/" .. name
      if not os.execute(("mkdir %s 2>/dev/null"):format(dir)) then
        return nil, "cannot make a cgroup under " .. root
      end
      dirs[i] = dir
    end
    for file, value in pairs(quota_files) do
      assert(os.execute(("echo %s > %s/%s"):format(value, dirs[quota_at], file)))
    end
    return dirs
  end

  -- par.workers() as the interpreter says it when started in cgroup 'dir'.
  local function workers_in(dir)
    local f = io.popen(("sh -c 'echo $$ > %s/cgroup.procs; LUA_CPATH=\"build/?.so;;\" exec %s "
                        .. "-e \"io.write(require([[par]]).workers())\"'"):format(
                        dir, helpers.interpreter))
    local count = f:read("a")
    f:close()
    return count
  end

  local function test_quota(names, quota_at)
    local dirs, why = quota_cgroups(names, quota_at)
    if not dirs then
      pending("needs root and a cgroup cpu controller: " .. why)
      return
    end
    finally(function()
      for i = #dirs, 1, -1 do os.execute("rmdir " .. dirs[i]) end
    end)
    assert.are.equal("1", workers_in(dirs[#dirs]))
  end

  it("counts a cgroup CPU quota set above the process's own cgroup in par.workers()", function()
    test_quota({"parlua_spec_" .. par.pid(), "inner"}, 1)
  end)

  it("counts the CPU quota of a cgroup whose path is longer than 512 bytes", function()
    local long = ("l"):rep(200)
    test_quota({"parlua_spec_" .. par.pid(), long, long, long}, 4)
  end)

  it("gives monotonic seconds and sleeps at least as long as asked", function()
    local t0 = par.now()
    assert.are.equal("float", math.type(t0))
    for _, seconds in ipairs({0.05, 0.001, 0}) do
      local before = par.now()
      par.sleep(seconds)
      local slept = par.now() - before
      assert.is_true(slept >= seconds, ("par.sleep(%g) came back after %g s"):format(seconds, slept))
    end
    assert.is_true(par.now() > t0)
  end)

  it("gives the process id", function()
    assert.are.equal("integer", math.type(par.pid()))
  end)
end)
