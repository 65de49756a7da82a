local helpers = require "tests.helpers"
local par = helpers.par

describe("par.pool", function()
  local pool

  before_each(function()
    _G.go = par.event() -- made before the pools: their workers have it, as a global
    _G.pids = par.channel()
    pool = par.pool({workers = 2})
  end)
  after_each(function()
    pool:terminate()
    pool = nil
    helpers.settle()
  end)

  describe("submit and futures", function()
    it("returns every result of the function, nils included", function()
      local f = pool:submit(function(a, b) return a + b, nil, "x" end, 1, 2)
      assert.are.same({n = 3, 3, nil, "x"}, table.pack(f:result()))
      assert.is_true(f:done())
      assert.are.same({n = 3, 3, nil, "x"}, table.pack(f:result())) -- kept, not taken
    end)

    it("runs in the pool's warm workers, not in the parent", function()
      local pids = {}
      for i = 1, 20 do pids[i] = pool:submit(par.pid) end
      for i = 1, 20 do assert.are_not.equal(par.pid(), pids[i]:result()) end
    end)

    it("ships functions made after the pool, with their upvalues copied", function()
      local base = {offset = 100}
      local function helper(x) return x + base.offset end
      local function fact(n) if n <= 1 then return 1 end return n * fact(n - 1) end
      assert.are.equal(105, pool:submit(function(x) return helper(x) end, 5):result())
      assert.are.equal(3628800, pool:submit(fact, 10):result())
      base.offset = 0 -- helper travels afresh: a copy of base as it is now
      assert.are.equal(5, pool:submit(helper, 5):result())
    end)

    it("binds _ENV to the worker's globals and finds library functions by name", function()
      assert.are.equal("5-x", pool:submit(string.format, "%d-%s", 5, "x"):result())
      local fmt, concat = string.format, table.concat
      assert.are.equal("a,b|7", pool:submit(function(t) return fmt("%s|%d", concat(t, ","), math.max(3, 7)) end,
                                            {"a", "b"}):result())
      assert.are.equal(io.stdout, io.stdout) -- a userdata of a library travels by name
      assert.is_true(pool:submit(function() local out = io.stdout; return io.type(out) == "file" end):result())
    end)

    it("finds a module the parent required after the pool was made", function()
      local cjson = require "cjson"
      assert.are.equal("[1,2]", pool:submit(function(t) return cjson.encode(t) end, {1, 2}):result())
    end)

    it("describes a function to each worker once, not once per call", function()
      local function square(x) return x * x end
      for i = 1, 50 do assert.are.equal(i * i, pool:submit(square, i):result()) end
      local rec = pool.fns[square]
      assert.is_true(rec.sent <= 2 + 2, "described " .. rec.sent .. " times") -- one per worker, a miss each at most
      local fresh = {}
      for i = 1, 20 do fresh[i] = pool:submit(function(x) return x + 1 end, i) end -- new closures, same code
      for i = 1, 20 do assert.are.equal(i + 1, fresh[i]:result()) end
    end)

    it("raises bad argument naming an upvalue that cannot travel, before anything is sent", function()
      local co = coroutine.create(print)
      local tasks = pool.tasks
      local ok, err = pcall(pool.submit, pool, function() return co end)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'submit' (upvalue 'co' is a thread", err, 1, true)
      local handle = io.tmpfile()
      local function inner() return handle end
      ok, err = pcall(pool.submit, pool, function() return inner() end)
      assert.matches("upvalue 'inner.handle' is a userdata", err, 1, true)
      handle:close()
      ok, err = pcall(pool.submit, pool, function(x) return x end, print)
      assert.matches("bad argument #2 to 'submit' (cannot send a function", err, 1, true)
      assert.are.equal(tasks, pool.tasks)
    end)

    it("raises the task's error with kind, index, value and traceback", function()
      local f = pool:submit(function() error({code = 42}) end)
      local ok, err = pcall(f.result, f)
      assert.is_false(ok)
      assert.are.equal("par.pool", err.fn)
      assert.are.equal("error", err.kind)
      assert.are.equal(42, err.value.code)
      assert.are.equal(f.index, err.index)
      assert.matches("traceback", err.traceback, 1, true)
      assert.is_false(pcall(f.result, f)) -- again: the same error
    end)

    it("fails only the task of a worker that dies, and replaces the worker", function()
      local dead = pool:submit(function() os.exit(3) end)
      local ok, err = pcall(dead.result, dead)
      assert.is_false(ok)
      assert.are.equal("crash", err.kind)
      assert.matches("item " .. dead.index, err.message, 1, true)
      for i = 1, 10 do assert.are.equal(i, pool:submit(function(x) return x end, i):result()) end
    end)

    it("loses no result and doubles none when a worker dies mid-batch", function()
      local fs = {}
      for i = 1, 200 do fs[i] = pool:submit(function(x) if x == 77 then os.exit(1) end return x end, i) end
      local seen = 0
      for f in par.as_completed(fs) do
        local ok, v = pcall(f.result, f)
        if f.index == fs[77].index then
          assert.are.equal("crash", v.kind)
        else
          assert.are.equal(f, fs[v])
        end
        seen = seen + 1
      end
      assert.are.equal(200, seen)
    end)

    it("fails only the task of a worker killed from outside", function()
      local f = pool:submit(function() _G.pids:put(par.pid()); par.sleep(30) end)
      os.execute("kill -9 " .. _G.pids:get())
      local ok, err = pcall(f.result, f)
      assert.are.equal("crash", err.kind)
      assert.matches("SIGKILL", err.message, 1, true)
      assert.are.equal(4, pool:submit(function() return 4 end):result())
    end)

    it("times out a task, kills its worker and goes on", function()
      local p = par.pool({workers = 1, timeout = 0.2})
      local f = p:submit(function() par.sleep(30) end)
      local ok, err = pcall(f.result, f)
      assert.are.equal("timeout", err.kind)
      assert.are.equal("ok", p:submit(function() return "ok" end):result())
      p:terminate()
    end)

    it("runs a failed task again under retries and counts the attempts", function()
      local p = par.pool({workers = 1, retries = 2})
      local f = p:submit(function() error("always") end)
      local ok, err = pcall(f.result, f)
      assert.are.equal(3, err.attempts)
      p:terminate()
    end)

    it("returns nil, \"timeout\" from result(timeout) while the task runs", function()
      local p = par.pool({workers = 1})
      local f = p:submit(function() _G.go:wait(); return "late" end)
      assert.are.same({nil, "timeout"}, {f:result(0.05)})
      assert.is_false(f:done())
      _G.go:set()
      assert.are.equal("late", f:result())
      p:terminate()
    end)

    it("cancels a task no worker has started, and only such a task", function()
      local p = par.pool({workers = 1}) -- holds two tasks: the third waits in the parent
      local held = {}
      for i = 1, 2 do held[i] = p:submit(function() _G.go:wait(); return i end) end
      local waiting = p:submit(function() return "ran" end)
      assert.is_false(held[1]:cancel())
      assert.is_true(waiting:cancel())
      assert.is_true(waiting:done())
      assert.is_true(waiting:cancelled())
      _G.go:set()
      assert.are.equal(1, held[1]:result())
      local ok, err = pcall(waiting.result, waiting)
      assert.are.equal("cancelled", err.kind)
      p:terminate()
    end)

    it("repeats random numbers with seed whatever the worker", function()
      local function rolls()
        local p = par.pool({workers = 2, seed = 7})
        local fs = {}
        for i = 1, 6 do fs[i] = p:submit(function() return math.random(1000000) end) end
        local r = {}
        for i = 1, 6 do r[i] = fs[i]:result() end
        p:terminate()
        return r
      end
      assert.are.same(rolls(), rolls())
    end)

    it("runs init in every worker, replacements included", function()
      local p = par.pool({workers = 1, init = function() _G.ready = "yes" end})
      assert.are.equal("yes", p:submit(function() return _G.ready end):result())
      pcall(p:submit(function() os.exit(1) end).result)
      assert.are.equal("yes", p:submit(function() return _G.ready end):result())
      p:terminate()
    end)

    it("replaces a worker after max_tasks tasks", function()
      local p = par.pool({workers = 2, max_tasks = 3})
      local fs, per_pid = {}, {}
      for i = 1, 30 do fs[i] = p:submit(par.pid) end
      for i = 1, 30 do local pid = fs[i]:result(); per_pid[pid] = (per_pid[pid] or 0) + 1 end
      for _, n in pairs(per_pid) do assert.is_true(n <= 3) end
      p:terminate()
    end)
  end)

  describe("map", function()
    it("keeps the order, as par.map", function()
      local list = helpers.range(1000)
      local r = pool:map(function(x) return x * 2 end, list)
      for i = 1, 1000 do assert.are.equal(2 * i, r[i]) end
      assert.are.same({}, pool:map(function(x) return x end, {}))
      r = pool:map(function(x) if x % 2 == 0 then return x end end, {1, 2, 3, 4}, {chunk = 3})
      assert.are.same({nil, 2, nil, 4}, r)
    end)

    it("calls on_progress in the parent as items finish, failed ones too, last with done == total", function()
      local calls, parent = {}, par.pid()
      local function on_progress(done, total)
        assert.are.equal(parent, par.pid())
        calls[#calls + 1] = {done, total}
      end
      local r = pool:map(function(x) return x end, helpers.range(40), {chunk = 1, on_progress = on_progress})
      assert.are.same(helpers.range(40), r)
      assert.are.same({40, 40}, calls[#calls])
      for i = 2, #calls do assert.is_true(calls[i][1] >= calls[i - 1][1]) end
      calls = {}
      local _, errs = pool:map(function(x) if x % 2 == 0 then error("even") end return x end, {1, 2, 3, 4, 5},
                               {on_error = "collect", on_progress = on_progress})
      assert.are.equal(4, errs[4].index)
      assert.are.same({5, 5}, calls[#calls])
      calls = {}
      assert.are.equal(3, #pool:map_async(function(x) return x end, {1, 2, 3}, {on_progress = on_progress}):result())
      assert.are.same({3, 3}, calls[#calls])
    end)

    it("counts pool:imap's items as the loop takes them, once more when it breaks", function()
      local calls = {}
      local function on_progress(done, total) calls[#calls + 1] = {done, total} end
      for _ in pool:imap(function(x) return x end, {1, 2, 3, 4}, {on_progress = on_progress}) do end
      assert.are.same({4, 4}, calls[#calls])
      calls = {}
      for _ in pool:imap(function(x) return x end, {1, 2, 3, 4, 5, 6}, {on_progress = on_progress}) do break end
      assert.are.same({{1, 6}}, calls)
    end)

    it("raises on_progress's error from the map, and keeps serving", function()
      local ok, err = pcall(pool.map, pool, function(x) return x end, {1, 2},
                            {on_progress = function() error("drawn badly") end})
      assert.is_false(ok)
      assert.truthy(tostring(err):find("drawn badly", 1, true))
      ok, err = pcall(pool.map, pool, function(x) return x end, {1}, {progress = 1})
      assert.is_false(ok)
      assert.matches("bad argument #3 to 'map' (option 'progress' must be a boolean (got number))", err, 1, true)
      assert.are.same({2, 3}, pool:map(function(x) return x + 1 end, {1, 2}))
    end)

    it("refuses a table with keys but no items 1..n, as par.map does", function()
      for _, name in ipairs({"map", "map_async"}) do
        local ok, err = pcall(pool[name], pool, function(x) return x end, {a = 1})
        assert.is_false(ok)
        assert.matches("bad argument #2 to '" .. name .. "' (list expected, got a table with keys but no items 1..n)",
                       err, 1, true)
      end
    end)

    it("raises the first failing item's error, indexed by item", function()
      local ok, err = pcall(pool.map, pool, function(x) if x == 7 then error("boom") end return x end,
                            helpers.range(20))
      assert.is_false(ok)
      assert.are.equal(7, err.index)
      assert.matches("par.pool: item 7 failed: .*boom", tostring(err))
    end)

    it("collects errors by item with on_error = \"collect\"", function()
      local r, errs = pool:map(function(x) return 10 // x end, {1, 0, 5}, {on_error = "collect"})
      assert.are.same({10, nil, 2}, r)
      assert.are.equal("error", errs[2].kind)
      assert.are.equal(2, errs[2].index)
      r, errs = pool:map(function(x) return x end, {1, 2}, {on_error = "collect"})
      assert.is_nil(errs)
    end)

    it("names the item whose worker crashed, and runs the rest", function()
      local r, errs = pool:map(function(x) if x == 5 then os.exit(1) end return x end, helpers.range(12),
                               {on_error = "collect", chunk = 4})
      assert.are.equal("crash", errs[5].kind)
      for i = 1, 12 do if i ~= 5 then assert.are.equal(i, r[i]) end end
    end)

    it("rejects bad options", function()
      assert.has_error(function() pool:map(print, {}, {chunks = 2}) end,
                       "bad argument #3 to 'map' (unknown option 'chunks')")
      assert.has_error(function() par.pool({worker = 2}) end, "bad argument #1 to 'pool' (unknown option 'worker')")
    end)

    it("map_async gives a future of the results list", function()
      local f = pool:map_async(function(x) return x + 1 end, {1, 2, 3})
      assert.are.same({2, 3, 4}, f:result())
    end)
  end)

  describe("imap", function()
    it("yields i, result in source order, from a list or an iterator", function()
      local got = {}
      for i, v in pool:imap(function(x) return x * 2 end, helpers.range(50)) do got[i] = v end
      for i = 1, 50 do assert.are.equal(2 * i, got[i]) end
      local n, last = 0, 0
      local function numbers() n = n + 1; if n <= 20 then return n end end
      for i, v in pool:imap(function(x) return -x end, numbers, {chunk = 3}) do
        assert.are.equal(last + 1, i)
        assert.are.equal(-i, v)
        last = i
      end
      assert.are.equal(20, last)
    end)

    it("collects errors by place in the source, or raises the first", function()
      local errs = {}
      for i, _, err in pool:imap(function(x) return 10 // x end, {1, 0, 5, 0}, {on_error = "collect", chunk = 2}) do
        if err then errs[#errs + 1] = err.index end
      end
      assert.are.same({2, 4}, errs)
      local ok, err = pcall(function()
        for _ in pool:imap(function(x) if x == 3 then error("three") end end, {1, 2, 3, 4}) do end
      end)
      assert.are.equal(3, err.index)
    end)

    it("yields every item once with ordered = false", function()
      local sum = 0
      for _, v in pool:imap(function(x) return x end, helpers.range(100), {ordered = false, chunk = 7}) do
        sum = sum + v
      end
      assert.are.equal(5050, sum)
    end)
  end)

  describe("as_completed and wait", function()
    it("as_completed yields each future once", function()
      local fs, seen = {}, {}
      for i = 1, 200 do fs[i] = pool:submit(function(x) return x end, i) end
      local n = 0
      for f in par.as_completed(fs) do
        n = n + 1
        local v = f:result()
        assert.is_nil(seen[v])
        seen[v] = true
      end
      assert.are.equal(200, n)
    end)

    it("as_completed takes futures of several pools", function()
      local other = par.pool({workers = 1})
      local fs = {pool:submit(function() return 1 end), other:submit(function() return 2 end),
                  pool:map_async(function(x) return x end, {3})}
      local sum = 0
      for f in par.as_completed(fs) do local v = f:result(); sum = sum + (type(v) == "table" and v[1] or v) end
      assert.are.equal(6, sum)
      other:terminate()
    end)

    it("as_completed raises kind timeout when futures are still running", function()
      local fs = {pool:submit(function() return 1 end), pool:submit(function() _G.go:wait() end)}
      local ok, err = pcall(function() for _ in par.as_completed(fs, 0.1) do end end)
      assert.are.equal("timeout", err.kind)
      _G.go:set()
    end)

    it("wait returns done and pending for first, all and first_error", function()
      local slow = pool:submit(function() _G.go:wait(); return "slow" end)
      local bad = pool:submit(function() error("bad") end)
      local done, pending = par.wait({slow, bad}, {return_when = "first_error"})
      assert.are.same({bad}, done)
      assert.are.same({slow}, pending)
      done, pending = par.wait({slow}, {timeout = 0.05})
      assert.are.same({}, done)
      _G.go:set()
      done, pending = par.wait({slow, bad})
      assert.are.equal(2, #done)
      assert.are.equal(0, #pending)
      local quick = pool:submit(function() return 1 end)
      done = par.wait({quick}, {return_when = "first"})
      assert.are.same({quick}, done)
    end)
  end)

  describe("lifetime", function()
    it("close lets queued work finish, join waits for the workers to exit", function()
      local fs = {}
      for i = 1, 10 do fs[i] = pool:submit(function(x) return x end, i) end
      pool:close()
      assert.has_error(function() pool:submit(print) end, "par.pool: submit on a closed pool")
      pool:join()
      for i = 1, 10 do assert.are.equal(i, fs[i]:result()) end
      helpers.settle()
      assert.are.equal(0, helpers.child_count())
    end)

    it("terminate kills the workers; unfinished futures fail with kind terminated", function()
      local f = pool:submit(function() _G.go:wait() end)
      pool:terminate()
      local ok, err = pcall(f.result, f)
      assert.are.equal("terminated", err.kind)
      assert.are.equal(0, helpers.child_count())
    end)

    it("closes and joins as a to-be-closed variable", function()
      local f
      do
        local p <close> = par.pool({workers = 2})
        f = p:submit(function() par.sleep(0.05); return "done" end)
      end
      assert.is_true(f:done())
      assert.are.equal("done", f:result())
    end)

    it("leaves no worker once collected", function()
      pool:terminate()
      helpers.settle()
      local before = helpers.child_count()
      do local p = par.pool({workers = 2}); p:submit(print):result() end
      helpers.settle()
      assert.are.equal(before, helpers.child_count())
    end)

    it("keeps descriptors and children flat over many maps and submits", function()
      pool:map(function(x) return x end, {1, 2})
      helpers.settle() -- earlier tests' garbage goes first
      local fds, children = helpers.fd_count(), helpers.child_count()
      for _ = 1, 300 do pool:map(function(x) return x end, {1, 2}) end
      local fs = {}
      for i = 1, 3000 do fs[i] = pool:submit(function(x) return x end, i) end
      for f in par.as_completed(fs) do f:result() end
      helpers.settle()
      assert.are.equal(fds, helpers.fd_count())
      assert.are.equal(children, helpers.child_count())
    end)

    it("leaves no worker behind when the script ends with work running", function()
      local status, out = helpers.run_lua([[
        local par = require "tests.helpers".par
        local pool = par.pool({workers = 2})
        io.write(pool:submit(par.pid):result(), " ", pool:submit(par.pid):result())
        for _ = 1, 4 do pool:submit(par.sleep, 30) end
      ]])
      assert.is_true(status == 0 or status == true)
      assert.matches("^%d+ %d+$", out)
      for pid in out:gmatch("%d+") do
        local gone = false
        for _ = 1, 500 do
          if not helpers.process_state(pid) or helpers.process_state(pid) == "Z" then gone = true; break end
          par.sleep(0.01)
        end
        assert.is_true(gone, "worker " .. pid .. " outlived its script")
      end
    end)

    it("raises \"interrupted\" on SIGINT while a future is waited on, and its workers end", function()
      local status, out = helpers.run_lua([[
        local par = require "tests.helpers".par
        local pool = par.pool({workers = 1})
        local f = pool:submit(function() par.sleep(30) end)
        os.execute("(sleep 0.3; kill -INT " .. par.pid() .. ") &")
        local ok, err = pcall(f.result, f)
        io.write(err.kind, " ", err.fn, " ", require "tests.helpers".child_count())
      ]])
      assert.are.equal("interrupted par.pool 0", out)
    end)

    it("keeps the results of a map that are mostly nil", function()
      local list = {}
      for i = 1, 16 do list[i] = i end
      local function eighths(x) if x % 8 == 0 then return x end end
      for _ = 1, 2 do -- cold, then warm (straight to one worker)
        local r = pool:map(eighths, list)
        assert.are.same({[8] = 8, [16] = 16}, r)
      end
      assert.are.same({[8] = 8, [16] = 16}, pool:map_async(eighths, list):result())
    end)

    -- A wait whose answer is due soon spins with SIGINT held, then sleeps
    -- with it caught: one that comes at any moment of a loop of such waits
    -- must end the loop, as par's error or, between waits, the host's.
    for _, work in ipairs({{name = "tiny items", fn = "function(x) return x end"},
                           {name = "items of a millisecond", fn = "function(x) par.sleep(0.001) return x end"}}) do
      it("ends a loop of short maps and submits of " .. work.name .. " on SIGINT, at whatever moment", function()
        local status, out, err = helpers.run_lua([[
          local par = require "tests.helpers".par
          local pool = par.pool({workers = 2})
          local fn = ]] .. work.fn .. [[
          pool:map(fn, {1, 2})
          os.execute("(sleep 0.3; kill -INT " .. par.pid() .. ") &")
          local started = par.now()
          local ok, e = pcall(function()
            while par.now() - started < 20 do pool:map(fn, {1, 2}); pool:submit(fn, 3):result() end
          end)
          pool:terminate()
          local said = type(e) == "table" and e.kind or tostring(e)
          io.write(ok and "not interrupted" or said:match("interrupted") or said, " ", require "tests.helpers".child_count())
        ]])
        assert.are.equal("interrupted 0", out, err)
      end)
    end
  end)
end)
