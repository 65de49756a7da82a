local helpers = require "tests.helpers"
local par = helpers.par

-- The error a failing join raises.
local function join_error(proc)
  local ok, err = pcall(proc.join, proc)
  assert.is_false(ok)
  return err
end

local function sleeper(seconds)
  return function() par.sleep(seconds) return "woke" end
end

describe("par.spawn", function()
  it("runs fn in another process and gives its pid", function()
    local proc = par.spawn(function() return par.pid() end)
    assert.are.equal("integer", math.type(proc.pid))
    assert.are_not.equal(par.pid(), proc.pid)
    assert.are.equal(proc.pid, proc:join())
  end)

  it("hands the arguments over through the fork, functions and userdata included", function()
    local offset = 100
    local proc = par.spawn(function(f, file, co, t)
      return f() + offset, io.type(file), coroutine.status(co), t.x
    end, function() return 1 end, io.stdout, coroutine.create(function() end), {x = "t"})
    assert.are.same({101, "file", "suspended", "t"}, {proc:join()})
  end)

  it("passes every argument, nils at the end included", function()
    assert.are.equal(3, par.spawn(function(...) return select("#", ...) end, 1, nil, nil):join())
  end)

  it("works inside a spawned process and inside a map worker", function()
    local function spawn_twice(x) return par.spawn(function() return x * 2 end):join() end
    assert.are.equal(4, par.spawn(spawn_twice, 2):join())
    assert.are.same({2, 4}, par.map(spawn_twice, {1, 2}))
  end)

  it("defaults par.map inside the process to one worker, as inside a map worker", function()
    -- both items block until the test sees the process waiting in its
    -- par.map (every worker it starts is forked by then): on one worker
    -- item 2 starts once item 1 is let go, on two they run side by side.
    -- PARLUA_WORKERS: several CPUs even on a machine that has one.
    local status, out, err = helpers.run_lua([[
      local par = require "par"
      local helpers = require "tests.helpers"
      local started, gate = par.channel(), par.channel()
      local proc = par.spawn(function()
        return par.map(function() started:put(true); gate:get(); return par.pid() end, {1, 2})
      end)
      assert(started:get(30), "no item started")
      assert(helpers.wait_until_asleep(proc.pid), "the process never waited for its workers")
      gate:close() -- lets every get through, now and later
      local pids = proc:join()
      io.write(pids[1] == pids[2] and "1 worker" or "2 workers")
    ]], "PARLUA_WORKERS=4")
    assert.are.equal(0, status, err)
    assert.are.equal("1 worker", out)
  end)

  it("accepts a table with __call as fn", function()
    local callable = setmetatable({k = 10}, {__call = function(self, x) return self.k + x end})
    assert.are.equal(11, par.spawn(callable, 1):join())
  end)

  it("returns every value fn returned, nils in the middle and at the end included", function()
    local proc = par.spawn(function() return nil, "b", nil, nil end)
    assert.are.equal(4, select("#", proc:join()))
    local a, b, c, d = proc:join()
    assert.is_nil(a); assert.are.equal("b", b); assert.is_nil(c); assert.is_nil(d)
  end)

  it("returns nothing when fn returns nothing", function()
    assert.are.equal(0, select("#", par.spawn(function() end):join()))
  end)

  it("carries values exactly", function()
    local proc = par.spawn(function()
      return 2, 2.0, math.pi, -0.0, math.maxinteger, math.mininteger, "a\0b\255", {1, nil, 3, k = {true}}
    end)
    local int, float, pi, negzero, max, min, bytes, t = proc:join()
    assert.are.equal("integer", math.type(int))
    assert.are.equal("float", math.type(float))
    assert.are.equal(math.pi, pi)
    assert.are.equal(-math.huge, 1 / negzero)
    assert.are.equal(math.maxinteger, max); assert.are.equal(math.mininteger, min)
    assert.are.equal("a\0b\255", bytes)
    assert.are.same({1, nil, 3, k = {true}}, t)
  end)

  it("carries a result larger than the pipe holds", function()
    local proc = par.spawn(function() return string.rep("x", 8 << 20) end)
    assert.are.equal(8 << 20, #proc:join())
  end)

  it("returns the same values from every join", function()
    local proc = par.spawn(function() return {1}, 2 end)
    local t1, n1 = proc:join()
    local t2, n2 = proc:join()
    assert.are.equal(t1, t2)
    assert.are.equal(2, n1); assert.are.equal(2, n2)
  end)

  it("writes what the child printed before join returns", function()
    local status, out = helpers.run_lua([[
      local par = require "par"
      io.write("before ")
      par.spawn(function() io.write("child ") end):join()
      io.write("after")
    ]])
    assert.are.equal(0, status)
    assert.are.equal("before child after", out)
  end)

  describe("join with a timeout", function()
    it("returns nil, 'timeout' and leaves the process running", function()
      local proc = par.spawn(sleeper(0.5))
      local value, why = proc:join(0.05)
      assert.is_nil(value)
      assert.are.equal("timeout", why)
      assert.is_true(proc:running())
      assert.are.equal("woke", proc:join())
    end)

    it("takes 0 as a look without waiting", function()
      local proc = par.spawn(sleeper(0.5))
      assert.are.same({nil, "timeout"}, {proc:join(0)})
      proc:kill()
      assert.are.equal("crash", join_error(proc).kind)
    end)

    it("gives the values once the process is done", function()
      assert.are.equal("woke", par.spawn(sleeper(0)):join(30))
      assert.are.equal("woke", par.spawn(sleeper(0)):join(math.huge))
    end)
  end)

  it("raises an 'interrupted' error from a join that SIGINT or SIGTERM ends, leaving the process running", function()
    for _, signal in ipairs({"INT", "TERM"}) do
      local status, out = helpers.run_lua(([[
        local par = require "par"
        local helpers = require "tests.helpers"
        local proc = par.spawn(function(parent)
          -- the parent has nothing to wait in but join
          assert(helpers.wait_until_asleep(parent), "the parent never waited in join")
          os.execute("kill -%s " .. parent)
          par.sleep(30)
        end, par.pid())
        local _, err = pcall(proc.join, proc)
        io.write(err.kind, ": ", err.message, ", running: ", tostring(proc:running()))
      ]]):format(signal))
      assert.are.equal(0, status)
      assert.are.equal("interrupted: got SIG" .. signal .. " while waiting for the process, running: true", out)
    end
  end)

  describe("running", function()
    it("is true while fn runs and false once it has ended", function()
      local proc = par.spawn(sleeper(0.3))
      assert.is_true(proc:running())
      assert.are.equal("woke", proc:join())
      assert.is_false(proc:running())
    end)

    it("leaves the values to join when it finds the process ended", function()
      local proc = par.spawn(function() return "done" end)
      while proc:running() do par.sleep(0.01) end
      assert.are.equal("done", proc:join())
    end)
  end)

  describe("errors", function()
    it("raises fn's error from join with the child's traceback", function()
      local err = join_error(par.spawn(function() error("boom") end))
      assert.are.equal("par.spawn", err.fn)
      assert.is_nil(err.index)
      assert.are.equal("error", err.kind)
      assert.matches("spawn_spec%.lua:%d+: boom", err.message)
      assert.matches("spawn_spec%.lua:%d+: in ", err.traceback)
      assert.matches("^par%.spawn: failed: .*boom", tostring(err))
    end)

    it("keeps a non-string error value", function()
      local err = join_error(par.spawn(function() error({code = 42}) end))
      assert.are.equal(42, err.value.code)
      assert.are.equal("error", err.kind)
    end)

    it("drops an error value that cannot be sent, keeping its message", function()
      local err = join_error(par.spawn(function() error(print) end))
      assert.is_nil(err.value)
      assert.matches("^function", err.message)
    end)

    it("raises the same error from every join", function()
      local proc = par.spawn(function() error("once") end)
      assert.are.equal(join_error(proc), join_error(proc))
    end)

    it("names a result that cannot be sent and where it sits", function()
      local err = join_error(par.spawn(function() return 1, {x = print} end))
      assert.are.equal("error", err.kind)
      assert.matches("cannot send a function (at result[2].x)", err.message, 1, true)
    end)

    it("reports os.exit as a crash with the exit status", function()
      local err = join_error(par.spawn(function() os.exit(3) end))
      assert.are.equal("crash", err.kind)
      assert.are.equal("par.spawn", err.fn)
      assert.matches("exited with status 3", err.message)
    end)
  end)

  describe("kill", function()
    local function killed_by(signal)
      local proc = par.spawn(sleeper(30))
      proc:kill(signal)
      local err = join_error(proc)
      assert.are.equal("crash", err.kind)
      return err.message
    end

    it("sends SIGTERM by default", function()
      assert.matches("killed by SIGTERM", killed_by())
    end)

    it("takes a signal by name, with or without SIG, or by number", function()
      assert.matches("killed by SIGKILL", killed_by("KILL"))
      assert.matches("killed by SIGKILL", killed_by("SIGKILL"))
      assert.matches("killed by SIGUSR1", killed_by("USR1"))
      assert.matches("killed by SIGKILL", killed_by(9))
    end)

    -- a process par forked dies of SIGTERM even in a wait that would
    -- raise "interrupted" in the process the user started
    local waits = {
      {name = "a channel's get", fn = function(ch) return ch:get() end},
      {name = "its own par.map", fn = function() return par.map(sleeper(30), {1}) end},
      {name = "par.sleep", fn = function() par.sleep(30) end},
    }
    for _, wait in ipairs(waits) do
      it("ends a process waiting in " .. wait.name .. " with SIGTERM", function()
        local started, ch = par.channel(), par.channel()
        local proc = par.spawn(function() started:put(true); return wait.fn(ch) end)
        assert.is_true(started:get(10))
        assert.is_true(helpers.wait_until_asleep(proc.pid), "the process never waited")
        proc:kill()
        assert.matches("killed by SIGTERM", join_error(proc).message)
      end)
    end

    it("lets SIGINT pass, even sent the moment the process is forked", function()
      -- before the fork resets its handlers, a child holds its parent's:
      -- the host's SIGINT handler would end fn with "interrupted!"
      for _ = 1, 10 do
        local proc = par.spawn(function() par.sleep(0.05) return "survived" end)
        proc:kill("INT")
        assert.are.equal("survived", proc:join())
      end
    end)

    -- A process joined, and a new one that took its pid: the kernel gives
    -- out the pid after the one in ns_last_pid, which root may set. Without
    -- that right, only the joined process.
    local function joined_and_heir(release)
      for _ = 1, 20 do -- another process on the machine may fork in between
        local proc = par.spawn(function() return 1 end)
        assert.are.equal(1, proc:join())
        local f = io.open("/proc/sys/kernel/ns_last_pid", "w")
        if not (f and f:write(proc.pid - 1) and f:close()) then return proc, nil end
        local heir = par.spawn(function() return release:get(30) end)
        if heir.pid == proc.pid then return proc, heir end
        heir:kill("KILL")
        join_error(heir)
      end
      error("no new process took the pid of a joined one in 20 tries")
    end

    it("sends nothing to a process already joined, not even to the one that took its pid", function()
      local release = par.channel()
      local proc, heir = joined_and_heir(release)
      proc:kill("KILL")
      if heir then
        release:put("alive")
        local ok, got = pcall(heir.join, heir)
        assert.is_true(ok, "the process that took the joined one's pid got its signal: " .. tostring(got))
        assert.are.equal("alive", got)
      end
      assert.are.equal(1, proc:join())
      if not heir then
        pending("needs root (CAP_SYS_ADMIN) to give a joined process's pid to a new one via ns_last_pid")
      end
    end)
  end)

  describe("misuse", function()
    local function misuse(f)
      local ok, err = pcall(f)
      assert.is_false(ok)
      return err
    end

    it("rejects an fn that cannot be called", function()
      assert.matches("bad argument #1 to 'spawn' %(function expected, got number%)",
                     misuse(function() par.spawn(42) end))
      assert.matches("bad argument #1 to 'spawn' %(function expected, got no value%)",
                     misuse(function() par.spawn() end))
    end)

    it("rejects a bad timeout or signal", function()
      local proc = par.spawn(sleeper(30))
      assert.matches("bad argument #1 to 'join' %(timeout must be a number of seconds >= 0%)",
                     misuse(function() proc:join(-1) end))
      assert.matches("bad argument #1 to 'join' %(number expected, got table%)",
                     misuse(function() proc:join({}) end))
      assert.matches("bad argument #1 to 'kill' %(unknown signal 'FOO'%)",
                     misuse(function() proc:kill("FOO") end))
      assert.matches("bad argument #1 to 'kill' %(no signal has number 0%)",
                     misuse(function() proc:kill(0) end))
      assert.matches("bad argument #1 to 'kill' %(signal number or name expected, got table%)",
                     misuse(function() proc:kill({}) end))
      proc:kill("KILL")
      join_error(proc)
    end)

    it("rejects a method called on something else", function()
      local proc = par.spawn(function() end)
      assert.matches("par.Process expected, got number", misuse(function() proc.join(42) end))
      proc:join()
    end)

    it("leaves a process alone in a child that got its handle through the fork", function()
      local first = par.spawn(sleeper(0.3))
      local second = par.spawn(function()
        local ok, err = pcall(first.running, first)
        first = nil
        collectgarbage(); collectgarbage() -- the copy's __gc must not kill it
        return ok, err
      end)
      local ok, err = second:join()
      assert.is_false(ok)
      assert.matches("process " .. first.pid .. " belongs to process " .. par.pid(), err)
      assert.are.equal("woke", first:join())
    end)
  end)
end)

describe("par.spawn process hygiene", function()
  local function collect()
    collectgarbage(); collectgarbage()
  end

  -- A file name that does not exist yet.
  local function fresh_name()
    local name = os.tmpname()
    os.remove(name)
    return name
  end

  -- An fn that creates the file 'marker' unless it is killed within 5 seconds.
  local function outlive(marker)
    return function() par.sleep(5); io.open(marker, "w"):close() end
  end

  it("kills and reaps a process that is never joined once its handle is collected", function()
    collect()
    local before = helpers.child_count()
    local marker = fresh_name()
    par.spawn(function() return 1 end)
    par.spawn(outlive(marker))
    collect()
    assert.are.equal(before, helpers.child_count())
    assert.is_nil(io.open(marker))
  end)

  it("kills and reaps a running process when its <close> variable goes out of scope", function()
    local before = helpers.child_count()
    local marker = fresh_name()
    local proc
    do
      local p <close> = par.spawn(outlive(marker))
      proc = p
    end
    assert.are.equal(before, helpers.child_count())
    assert.is_nil(io.open(marker))
    assert.is_false(proc:running())
    local ok, err = pcall(proc.join, proc)
    assert.is_false(ok)
    assert.matches("process " .. proc.pid .. " was closed before it was joined", err)
  end)

  it("leaves no process behind a script that never joins", function()
    local marker = fresh_name()
    local status, out = helpers.run_lua(([[
      local par = require "par"
      running = par.spawn(function() par.sleep(5); io.open(%q, "w"):close() end)
      par.spawn(function() end)
      io.write(running.pid)
    ]]):format(marker))
    assert.are.equal(0, status)
    assert.matches("^%d+$", out)
    assert.is_nil(io.open("/proc/" .. out .. "/stat"))
    assert.is_nil(io.open(marker))
  end)

  it("leaves no descriptor open after 200 spawns", function()
    collect() -- earlier specs' garbage may hold descriptors
    local before = helpers.fd_count()
    for i = 1, 200 do
      local proc = par.spawn(function(x) return x end, i)
      assert.are.equal(i, proc:join())
    end
    for _ = 1, 20 do par.spawn(sleeper(30)) end
    collect()
    assert.are.equal(before, helpers.fd_count())
  end)
end)
