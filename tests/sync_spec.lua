local helpers = require "tests.helpers"
local par = helpers.par

-- Runs one function per role, each in its own worker, all at once.
local function run_roles(roles)
  return par.map(function(role) return role() end, roles, {workers = #roles})
end

local error_of, mapping_count = helpers.error_of, helpers.mapping_count

-- Waits, a little at a time, until cond() holds (it always comes to hold).
local function wait_until(cond)
  while not cond() do par.sleep(0.002) end
end

describe("par.lock", function()
  it("is taken and given back", function()
    local m = par.lock()
    assert.are.same({true}, {m:acquire()})
    m:release()
    assert.are.same({true}, {m:acquire(0)})
    m:release()
  end)

  it("keeps other processes out while held, and acquire times out with false", function()
    local m = par.lock()
    m:acquire()
    local p = par.spawn(function() return m:acquire(0.05) end)
    assert.is_false(p:join())
    m:release()
    p = par.spawn(function() return m:acquire(0.05) end)
    assert.is_true(p:join())
  end)

  it("makes read-modify-writes of other shared data exclusive across processes", function()
    local m, a = par.lock(), par.array(1)
    local function bump()
      for _ = 1, 2000 do m:with(function() a[1] = a[1] + 1 end) end
    end
    run_roles({bump, bump, bump})
    assert.are.equal(6000, a[1])
  end)

  it("raises on release by a process that does not hold it", function()
    local m = par.lock()
    assert.matches("does not hold the lock", tostring(error_of(m.release, m)))
    m:acquire()
    local p = par.spawn(function() return tostring(error_of(m.release, m)) end)
    assert.matches("does not hold the lock", p:join())
    m:release()
  end)

  it("raises when the holding process takes a plain lock again", function()
    local m = par.lock()
    m:acquire()
    assert.matches("holds the lock already", tostring(error_of(m.acquire, m)))
    m:release()
  end)

  it("counts the levels of a recursive lock", function()
    local m = par.lock({recursive = true})
    for _ = 1, 3 do assert.is_true(m:acquire()) end
    m:release()
    m:release()
    assert.is_false(par.spawn(function() return m:acquire(0) end):join())
    m:release()
    assert.is_true(par.spawn(function() return m:acquire(0) end):join())
    assert.matches("does not hold the lock", tostring(error_of(m.release, m)))
  end)

  it("with returns fn's results and releases the lock, on error too", function()
    local m = par.lock()
    assert.are.same({1, nil, 3}, {m:with(function(a, b, c) return a, b, c end, 1, nil, 3)})
    assert.matches("inside", tostring(error_of(m.with, m, function() error("inside") end)))
    assert.is_true(par.spawn(function() return m:acquire(0) end):join())
    assert.matches("bad argument #1 to 'with'", tostring(error_of(function() m:with(42) end)))
  end)

  it("returns true, 'abandoned' once a holder was SIGKILLed, and is usable again", function()
    local m, held = par.lock(), par.event()
    local p = par.spawn(function()
      m:acquire()
      held:set()
      par.sleep(60)
    end)
    held:wait()
    p:kill("KILL")
    assert.are.equal("crash", error_of(p.join, p).kind)
    assert.are.same({true, "abandoned"}, {m:acquire()})
    m:release()
    assert.are.same({true}, {m:acquire()})
    m:release()
  end)

  it("is released when a holding process lets it go", function()
    local m = par.lock()
    local p = par.spawn(function()
      local copy = m
      copy:acquire()
      m, copy = nil, nil
      collectgarbage()
      collectgarbage()
      return true
    end)
    assert.is_true(p:join())
    assert.are.same({true}, {m:acquire(0)})
  end)
end)

describe("par.semaphore", function()
  it("lets at most n processes hold it at once", function()
    local s = par.semaphore(2)
    local counts = par.array(2) -- holders now, most holders seen
    local function work()
      for _ = 1, 300 do
        s:with(function()
          local now = counts:add(1, 1)
          local most = counts[2]
          while now > most and not counts:cas(2, most, now) do most = counts[2] end
          counts:add(1, -1)
        end)
      end
    end
    run_roles({work, work, work, work})
    assert.are.equal(0, counts[1])
    assert.is_true(counts[2] >= 1 and counts[2] <= 2)
  end)

  it("times out with false when no count is left, and has no owner", function()
    local s = par.semaphore(1)
    assert.is_true(s:acquire())
    assert.is_false(s:acquire(0.02))
    par.spawn(function() s:release() end):join()
    assert.is_true(s:acquire(0))
  end)

  it("wakes a process waiting in acquire when another releases", function()
    local s, waiting = par.semaphore(0), par.event()
    local p = par.spawn(function()
      waiting:set()
      return s:acquire()
    end)
    waiting:wait()
    s:release()
    assert.is_true(p:join())
  end)

  it("with gives the count back on error too", function()
    local s = par.semaphore(1)
    assert.are.equal(7, s:with(function() return 7 end))
    assert.is_not_nil(error_of(s.with, s, function() error("x") end))
    assert.is_true(s:acquire(0))
  end)

  it("checks its count", function()
    assert.matches("bad argument #1 to '[%w.]*semaphore'", tostring(error_of(par.semaphore, -1)))
  end)
end)

describe("par.event", function()
  it("is set, cleared and read", function()
    local e = par.event()
    assert.is_false(e:is_set())
    e:set()
    assert.is_true(e:is_set())
    assert.is_true(e:wait())
    e:clear()
    assert.is_false(e:is_set())
  end)

  it("wait times out with false", function()
    assert.is_false(par.event():wait(0.02))
  end)

  it("wakes waiters in other processes", function()
    local e, ready = par.event(), par.semaphore(0)
    local function waiter()
      ready:release()
      return e:wait()
    end
    local p, q = par.spawn(waiter), par.spawn(waiter)
    ready:acquire()
    ready:acquire()
    e:set()
    assert.is_true(p:join())
    assert.is_true(q:join())
  end)
end)

describe("par.barrier", function()
  local function sorted(t)
    table.sort(t)
    return t
  end

  it("gives each party a distinct index 1..n, again and again", function()
    local b = par.barrier(3)
    local function party()
      local got = {}
      for round = 1, 20 do got[round] = b:wait() end
      return got
    end
    local r = run_roles({party, party, party})
    for round = 1, 20 do
      assert.are.same({1, 2, 3}, sorted({r[1][round], r[2][round], r[3][round]}))
    end
    assert.are.equal(3, b:parties())
  end)

  it("breaks with kind 'broken' for every party when one times out", function()
    local b = par.barrier(3)
    local function kind_of_wait() return error_of(b.wait, b).kind end
    local p = par.spawn(kind_of_wait)
    wait_until(function() return b:waiting() == 1 end)
    local err = error_of(b.wait, b, 0.02)
    assert.are.equal("broken", err.kind)
    assert.matches("timed out", tostring(err))
    assert.are.equal("broken", p:join())
    assert.is_true(b:broken())
    assert.are.equal("broken", error_of(b.wait, b).kind) -- it stays broken
  end)

  it("breaks for every party when one is SIGKILLed while it waits", function()
    local b = par.barrier(3)
    local doomed = par.spawn(function() b:wait() end)
    local other = par.spawn(function() return error_of(b.wait, b).kind end)
    wait_until(function() return b:waiting() == 2 end)
    doomed:kill("KILL")
    assert.are.equal("broken", other:join())
    local err = error_of(b.wait, b)
    assert.are.equal("broken", err.kind)
    assert.matches("died", tostring(err))
  end)

  it("abort breaks it for the parties waiting", function()
    local b = par.barrier(2)
    local p = par.spawn(function() return error_of(b.wait, b).kind end)
    wait_until(function() return b:waiting() == 1 end)
    b:abort()
    assert.are.equal("broken", p:join())
  end)

  it("checks its parties", function()
    assert.matches("bad argument #1 to '[%w.]*barrier'", tostring(error_of(par.barrier, 0)))
  end)
end)

describe("par.value", function()
  it("gets, sets, adds and swaps, keeping integers integers", function()
    local v = par.value(5)
    assert.are.equal(5, v:get())
    assert.are.equal("integer", math.type(v:add(2)))
    assert.are.equal(7, v:get())
    v:set(3.0)
    assert.are.equal("integer", math.type(v:get()))
    assert.is_true(v:cas(3, 10))
    assert.is_false(v:cas(3, 11))
    assert.are.equal(10, v:get())
    assert.are.equal(math.mininteger, par.value(math.maxinteger):add(1)) -- wraps as Lua does
    assert.matches("bad argument #1 to 'set'", tostring(error_of(function() v:set(2.5) end)))
  end)

  it("holds floats", function()
    local v = par.value(0.5)
    assert.are.equal(2.0, v:add(1.5))
    assert.are.equal("float", math.type(v:add(1)))
    assert.is_true(v:cas(3, 0.25))
    assert.are.equal(0.25, v:get())
    assert.matches("bad argument #1 to '[%w.]*value' %(number expected", tostring(error_of(par.value, "1")))
  end)

  it("loses no update of two workers adding 10^5 times each", function()
    local v, f = par.value(0), par.value(0.0)
    par.map(function()
      for _ = 1, 100000 do v:add(1); f:add(1) end
    end, {1, 2}, {workers = 2})
    assert.are.equal(200000, v:get())
    assert.are.equal(200000.0, f:get())
  end)
end)

describe("par.array", function()
  it("reads and writes its elements, bounds-checked", function()
    local a = par.array(3)
    assert.are.equal(3, #a)
    assert.are.same({0, 0, 0}, a:snapshot())
    a[2] = 7
    assert.are.equal(7, a[2])
    assert.are.equal(9, a:add(2, 2))
    assert.is_true(a:cas(2, 9, 1))
    assert.are.same({0, 1, 0}, a:snapshot())
    assert.matches("bad argument #2 .*%(index 4 out of range 1 .. 3%)",
                   tostring(error_of(function() return a[4] end)))
    assert.matches("bad argument #2 .*%(index 0 out of range", tostring(error_of(function() a[0] = 1 end)))
    assert.matches("bad argument #1 to 'add' %(index 4 out of range", tostring(error_of(function() a:add(4, 1) end)))
    assert.matches("integer", tostring(error_of(function() a[1] = 0.5 end)))
  end)

  it("holds floats, and is made from a list", function()
    local a = par.array(2, "float")
    a[1] = 1
    assert.are.equal("float", math.type(a[1]))
    assert.are.same({1, 2.5}, par.array({1, 2.5}):snapshot())
    assert.are.equal("float", math.type(par.array({1, 2.5})[1]))
    assert.are.equal("integer", math.type(par.array({1, 2})[1]))
    assert.matches("bad argument #2 to '[%w.]*array'", tostring(error_of(par.array, 2, "double")))
    assert.matches("element 2", tostring(error_of(par.array, {1, "x"})))
  end)

  it("loses no update of two workers adding 10^5 times each", function()
    local a = par.array(2)
    par.map(function(i)
      for _ = 1, 100000 do a:add(1, 1); a:add(2, i) end
    end, {1, 2}, {workers = 2})
    assert.are.same({200000, 300000}, a:snapshot())
  end)
end)

describe("shared objects", function()
  it("are seen by nested workers", function()
    local v, m = par.value(0), par.lock()
    par.map(function()
      par.map(function() m:with(function() v:add(1) end) end, {1, 2, 3}, {workers = 2})
    end, {1, 2}, {workers = 2})
    assert.are.equal(6, v:get())
  end)

  it("are seen by a worker that replaces one that crashed", function()
    local v, crashed = par.value(0), par.value(0)
    par.map(function(i)
      if i == 1 and crashed:cas(0, 1) then os.execute("kill -9 " .. par.pid()) end
      v:add(1)
    end, {1, 2, 3, 4}, {workers = 2, retries = 1})
    assert.are.equal(1, crashed:get())
    assert.are.equal(4, v:get())
  end)

  it("cannot be sent over the wire", function()
    local m = par.lock()
    assert.matches("cannot send a userdata", tostring(error_of(par.map, function() return m end, {1})))
    assert.matches("cannot send a userdata", tostring(error_of(par.channel().put, par.channel(), m)))
  end)

  it("are unmapped when closed, and raise if used then", function()
    local before = mapping_count()
    do
      local e <close> = par.event()
      assert.are.equal(before + 1, mapping_count())
    end
    assert.are.equal(before, mapping_count())
    local v = par.value(1)
    getmetatable(v).__close(v)
    assert.matches("used after it was closed", tostring(error_of(v.get, v)))
  end)

  it("leave mappings and descriptors flat when 1,000 are made and dropped", function()
    local function churn()
      for _ = 1, 1000 do
        local m = par.lock({recursive = true})
        m:acquire()
        par.semaphore(1); par.event(); par.barrier(2); par.value(1); par.array(10)
      end
      helpers.settle()
    end
    churn()
    local maps, fds = mapping_count(), helpers.fd_count()
    churn()
    assert.are.equal(maps, mapping_count())
    assert.are.equal(fds, helpers.fd_count())
  end)
end)
