local helpers = require "tests.helpers"
local par = helpers.par

-- What happens when things go wrong: workers that die, items that fail or
-- overstay, signals to the parent, a parent that dies, a failing init,
-- descriptors that could leak into exec'd programs, output under load, and
-- fork() failing. Each behaviour is checked for par.map, par.imap and
-- par.queue where it applies. No test asserts on a duration: a behaviour
-- that waits when it should not makes the test hang on a sleeping item
-- (10 or 30 s), and waits for other processes are bounded polls of /proc.

---------------------------------------------------------------------------
-- small tools

local read_file, write_file = helpers.read_file, helpers.write_file

local function lines_of(path)
  local t = {}
  for line in (read_file(path) or ""):gmatch("[^\n]+") do t[#t + 1] = line end
  return t
end

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

local function shell_out(cmd)
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  return out
end

local function temp_dir()
  return (shell_out("mktemp -d /tmp/parlua-reliability.XXXXXX"):gsub("%s+$", ""))
end

local function remove_dir(path)
  os.execute("rm -rf '" .. path .. "'")
end

-- The current test's own temporary folder, in describe blocks that call use_temp_dir().
local dir

-- Gives each test a fresh dir, removed after the test, after clean_up(dir) if given.
local function use_temp_dir(clean_up)
  before_each(function() dir = temp_dir() end)
  after_each(function()
    if clean_up then clean_up(dir) end
    remove_dir(dir)
  end)
end

-- Whether process pid still runs. A zombie has ended, it only waits to be reaped.
local function running(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  if not stat then return false end
  local state = stat:match("%) (%a)")
  return state ~= "Z" and state ~= "X"
end

-- Asks cond every 20 ms for up to 'seconds'; returns its last answer.
local function eventually(seconds, cond)
  local deadline = par.now() + seconds
  while true do
    local answer = cond()
    if answer or par.now() >= deadline then return answer end
    par.sleep(0.02)
  end
end

local function all_ended(pids, seconds)
  return eventually(seconds, function()
    for _, pid in ipairs(pids) do
      if running(pid) then return false end
    end
    return true
  end)
end

-- The pid a process wrote to 'path' (nil until the file holds one).
local function pid_in(path)
  return tonumber(read_file(path) or "")
end

-- Run in workers: writes this process's pid to dir/name, or appends it as a line.
local function note_pid(path)
  local f = assert(io.open(path .. ".tmp", "w"))
  f:write(par.pid())
  f:close()
  os.rename(path .. ".tmp", path)
end

local function append_pid(path)
  local f = assert(io.open(path, "a"))
  f:write(par.pid(), "\n")
  f:close()
end

---------------------------------------------------------------------------
-- the three ways to run fn over a list, each returning results, errors
-- (errors[i] for failed items, or nil) or raising like its API does

local apis = {
  {
    name = "par.map",
    run = function(fn, list, opts) return par.map(fn, list, opts) end,
  },
  {
    name = "par.imap",
    run = function(fn, list, opts)
      local results, errors = {}, nil
      for i, result, err in par.imap(fn, list, opts) do
        results[i] = result
        if err then errors = errors or {}; errors[i] = err end
      end
      return results, errors
    end,
  },
  {
    -- a raised pop leaves the function, and the to-be-closed queue stops its workers
    name = "par.queue",
    run = function(fn, list, opts)
      local q <close> = par.queue(fn, opts)
      for _, item in ipairs(list) do q:push(item) end
      q:close()
      local results, errors = {}, nil
      for id, result, err in q:results() do
        results[id] = result
        if err then errors = errors or {}; errors[id] = err end
      end
      return results, errors
    end,
  },
}

-- Declares the tests body(api) makes once for each API, each set in its own describe block.
local function for_each_api(body)
  for _, api in ipairs(apis) do
    describe("(" .. api.name .. ")", function() body(api) end)
  end
end

local function with_opts(base, extra)
  local t = {}
  for k, v in pairs(base) do t[k] = v end
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

-- Ways for a worker to die in the middle of an item.
local deaths = {
  {
    how = "SIGKILL",
    says = "killed by SIGKILL",
    die = function()
      os.execute("kill -9 " .. par.pid())
      par.sleep(5)
    end,
  },
  {
    how = "os.exit(3)",
    says = "exited with status 3",
    die = function() os.exit(3) end,
  },
  {
    -- a clean exit is still a crash: the item's result never came
    how = "os.exit(0)",
    says = "exited with status 0",
    die = function() os.exit(0) end,
  },
}
-- AddressSanitizer (make check-san) turns a SIGSEGV into a report and an exit of its own.
if not os.getenv("PARLUA_SANITIZED") then
  table.insert(deaths, 2, {
    how = "SIGSEGV",
    says = "killed by SIGSEGV",
    die = function()
      -- no core file left behind, wherever the tests run
      os.execute("prlimit --core=0 --pid " .. par.pid() .. " >/dev/null 2>&1; kill -SEGV " .. par.pid())
      par.sleep(5)
    end,
  })
end

---------------------------------------------------------------------------

describe("a worker that dies while running an item", function()
  use_temp_dir()

  for _, api in ipairs(apis) do
    for _, death in ipairs(deaths) do
      describe("(" .. api.name .. ", " .. death.how .. ")", function()
        it("with on_error = \"raise\" raises a crash naming the item and how it died, at once, "
           .. "and stops every other worker", function()
          helpers.settle()
          local before = helpers.child_count()
          local ok, err = pcall(api.run, function(x)
            note_pid(dir .. "/" .. x .. ".pid")
            if x == 1 then
              -- the other worker is sure to be busy with its long item
              while not exists(dir .. "/2.pid") do par.sleep(0.01) end
              death.die()
            end
            if x == 2 then
              par.sleep(10)
              write_file(dir .. "/2.finished", "") -- only if the call waited for it
            end
            return x
          end, {1, 2, 3, 4}, {workers = 2})
          assert.is_false(ok)
          assert.are.equal("table", type(err), tostring(err))
          assert.are.equal(api.name, err.fn)
          assert.are.equal("crash", err.kind)
          assert.are.equal(1, err.index)
          assert.matches(death.says, err.message, 1, true)
          assert.matches("item 1", err.message, 1, true)
          assert.matches("worker " .. pid_in(dir .. "/1.pid"), err.message, 1, true)
          assert.are.equal(before, helpers.child_count())
          assert.is_false(running(pid_in(dir .. "/2.pid")), "the worker on the long item still runs")
          assert.is_false(exists(dir .. "/2.finished"), "the call waited for the long item")
        end)

        it("with on_error = \"collect\" keeps every other result and starts a replacement worker", function()
          helpers.settle()
          local before = helpers.child_count()
          local runs = dir .. "/runs"
          local results, errors = api.run(function(x)
            local f = assert(io.open(runs, "a"))
            f:write(x, " ", par.pid(), "\n")
            f:close()
            if x == 2 then death.die() end
            return par.pid()
          end, {1, 2, 3, 4, 5}, {workers = 1, on_error = "collect"})
          -- which workers ran each item (a finished result the dead worker had
          -- not sent yet is run again, as docs/reliability.md says)
          local ran_on = {}
          for _, line in ipairs(lines_of(runs)) do
            local x, pid = line:match("^(%d+) (%d+)$")
            x, pid = tonumber(x), tonumber(pid)
            ran_on[x] = ran_on[x] or {}
            ran_on[x][pid] = true
          end
          local dead = next(ran_on[2])
          assert.is_nil(results[2])
          assert.are.equal("crash", errors[2].kind)
          assert.are.equal(2, errors[2].index)
          assert.matches(death.says, errors[2].message, 1, true)
          assert.matches("item 2", errors[2].message, 1, true)
          assert.matches("worker " .. dead, errors[2].message, 1, true)
          for _, i in ipairs({1, 3, 4, 5}) do
            assert.is_nil(errors[i])
            assert.is_true((ran_on[i] or {})[results[i]] == true, "item " .. i .. " has no result of its own")
          end
          for _, i in ipairs({3, 4, 5}) do
            assert.are_not.equal(dead, results[i]) -- the one worker is gone: a replacement ran the rest
          end
          assert.are.equal(before, helpers.child_count())
        end)
      end)
    end
  end
end)

describe("a worker that dies in the middle of a par.map range", function()
  it("fails only the item it was running; the rest of its range goes to other workers", function()
    local list = {}
    for i = 1, 40 do list[i] = i end
    local results, errors = par.map(function(x)
      if x == 13 then os.exit(3) end
      return x * 10
    end, list, {workers = 2, chunk = 5, on_error = "collect"})
    assert.are.equal("crash", errors[13].kind)
    assert.are.equal(13, errors[13].index)
    local failed = 0
    for _ in pairs(errors) do failed = failed + 1 end
    assert.are.equal(1, failed)
    for i = 1, 40 do
      if i ~= 13 then assert.are.equal(i * 10, results[i], "item " .. i) end
    end
  end)
end)

describe("an item that raised in a run whose worker then died", function()
  use_temp_dir()

  -- One worker holds items 1 and 2 at once (a map's range, a queue's items
  -- read in one go): item 1 raises, then item 2 kills the worker before
  -- item 1's result is sent. A queue worker reads what has come when it
  -- looks for work; init keeps it from looking until both items are there.
  local function slow_init() par.sleep(0.3) end
  local holds_two = {
    ["par.map"] = {workers = 1, chunk = 3, on_error = "collect"},
    ["par.imap"] = {workers = 1, on_error = "collect", init = slow_init},
    ["par.queue"] = {workers = 1, on_error = "collect", init = slow_init},
  }

  for _, api in ipairs(apis) do
    it("is judged by its run again, not by the lost run's error (" .. api.name .. ")", function()
      local marker = dir .. "/raised"
      local results, errors = api.run(function(x)
        if x == 1 then
          if not exists(marker) then
            write_file(marker, "")
            error("first run raises")
          end
          return nil -- the run that counts: no result, and no error
        end
        if x == 2 then os.exit(3) end
        return x * 10
      end, {1, 2, 3}, holds_two[api.name])
      assert.are.same({[3] = 30}, results)
      assert.are.equal("crash", errors[2].kind)
      assert.is_nil(errors[1])
    end)
  end

  it("keeps the result of an item that failed in one run and succeeded in another (par.map)", function()
    -- item 2 raises in its first two runs: the first is retried, and the
    -- crash on item 4 sends its range round again, so it runs three times
    local results, errors = par.map(function(x)
      if x == 2 then
        append_pid(dir .. "/runs")
        if #lines_of(dir .. "/runs") <= 2 then error("fails twice") end
      end
      if x == 4 then os.exit(3) end
      return x * 10
    end, {1, 2, 3, 4, 5}, {workers = 1, chunk = 5, retries = 1, on_error = "collect"})
    assert.are.equal(3, #lines_of(dir .. "/runs"))
    assert.are.equal(20, results[2])
    assert.are.equal("crash", errors[4].kind)
    assert.is_nil(errors[2])
  end)
end)

---------------------------------------------------------------------------

describe("retries", function()
  use_temp_dir()

  for_each_api(function(api)
    -- each way an attempt can fail, on every attempt of item 2
    for _, failure in ipairs({
      {how = "raises", kind = "error", retries = 2, fail = function() error("always fails") end},
      {how = "crashes", kind = "crash", retries = 2, fail = function() os.exit(3) end},
      {how = "overstays its time-out", kind = "timeout", retries = 1, timeout = 0.3,
       fail = function() par.sleep(30) end},
    }) do
      it("runs an item that always " .. failure.how .. " k more times, then reports attempts = k + 1", function()
        local results, errors = api.run(function(x)
          if x == 2 then
            append_pid(dir .. "/attempts")
            failure.fail()
          end
          return x
        end, {1, 2, 3}, {workers = 2, retries = failure.retries, timeout = failure.timeout,
                         on_error = "collect"})
        assert.are.equal(1, results[1]); assert.are.equal(3, results[3])
        assert.are.equal(failure.kind, errors[2].kind)
        if failure.kind == "error" then assert.matches("always fails", errors[2].message) end
        assert.are.equal(failure.retries + 1, errors[2].attempts)
        assert.are.equal(failure.retries + 1, #lines_of(dir .. "/attempts"))
      end)
    end

    it("succeeds with retries = 1 when only the first attempt raises", function()
      local marker = dir .. "/tried"
      local results, errors = api.run(function(x)
        if x == 2 and not exists(marker) then
          write_file(marker, "")
          error("first attempt fails")
        end
        return x * 10
      end, {1, 2, 3}, {workers = 2, retries = 1, on_error = "collect"})
      assert.is_nil(errors)
      assert.are.same({10, 20, 30}, results)
      assert.is_true(exists(marker))
    end)

    it("succeeds with retries = 1 when only the first attempt times out", function()
      local marker = dir .. "/tried"
      local results, errors = api.run(function(x)
        if x == 2 and not exists(marker) then
          write_file(marker, "")
          par.sleep(30)
        end
        return x * 10
      end, {1, 2, 3}, {workers = 2, retries = 1, timeout = 0.3, on_error = "collect"})
      assert.is_nil(errors)
      assert.are.same({10, 20, 30}, results)
    end)

    it("succeeds with retries = 1 when only the first attempt crashes, and retries on a fresh worker", function()
      local marker = dir .. "/tried"
      local results, errors = api.run(function(x)
        if x == 2 then
          append_pid(dir .. "/attempts")
          if not exists(marker) then
            write_file(marker, "")
            os.exit(1)
          end
        end
        return par.pid()
      end, {1, 2, 3}, {workers = 1, retries = 1}) -- raise mode: nothing may fail
      assert.is_nil(errors)
      local attempts = lines_of(dir .. "/attempts")
      assert.are.equal(2, #attempts)
      local died, retried = tonumber(attempts[1]), tonumber(attempts[2])
      assert.are.equal(retried, results[2])
      assert.are_not.equal(died, retried)
      assert.is_false(running(died))
    end)
  end)
end)

---------------------------------------------------------------------------

describe("timeout", function()
  use_temp_dir()

  -- The function whose item 'slow' sleeps 30 s, having noted its worker's pid.
  local function overstaying(slow)
    return function(x)
      if x == slow then
        note_pid(dir .. "/slow.pid")
        par.sleep(30)
        write_file(dir .. "/slow.finished", "")
      end
      return x
    end
  end

  -- The overstaying item's worker was killed before it ended, and reaped.
  local function assert_overstayer_gone(children_before)
    assert.is_false(running(pid_in(dir .. "/slow.pid")), "the overstaying worker still runs")
    assert.is_false(exists(dir .. "/slow.finished"), "the overstaying item ran to its end")
    assert.are.equal(children_before, helpers.child_count())
  end

  for_each_api(function(api)
    it("kills the worker of an item that runs longer, fails it with kind \"timeout\", "
       .. "and the other items go on (collect)", function()
      helpers.settle()
      local before = helpers.child_count()
      local results, errors = api.run(overstaying(2), {1, 2, 3, 4},
                                      {workers = 2, timeout = 0.5, on_error = "collect"})
      assert.are.equal(1, results[1]); assert.are.equal(3, results[3]); assert.are.equal(4, results[4])
      assert.is_nil(results[2])
      assert.are.equal("timeout", errors[2].kind)
      assert.are.equal(2, errors[2].index)
      assert.matches("ran longer than", errors[2].message, 1, true)
      assert_overstayer_gone(before)
    end)

    it("raises at once with kind \"timeout\" (raise), leaving no worker behind", function()
      helpers.settle()
      local before = helpers.child_count()
      local ok, err = pcall(api.run, overstaying(1), {1, 2, 3}, {workers = 2, timeout = 0.5})
      assert.is_false(ok)
      assert.are.equal("table", type(err), tostring(err))
      assert.are.equal("timeout", err.kind)
      assert.are.equal(1, err.index)
      assert_overstayer_gone(before)
    end)
  end)

  it("applies to an item a queue pop is waiting for", function()
    local q <close> = par.queue(function(s) par.sleep(s); return s end,
                                {workers = 1, timeout = 0.5, on_error = "collect", ordered = true})
    q:push(30)
    q:push(0)
    local id, result, err = q:pop()
    assert.are.equal(1, id)
    assert.is_nil(result)
    assert.are.equal("timeout", err.kind)
    assert.are.same({2, 0}, {q:pop()})
  end)
end)

---------------------------------------------------------------------------
-- Scripts run in the background in a fresh interpreter like the specs' one.
-- A script gets a directory as arg[1], where it writes its pid (script.pid),
-- its workers write theirs (worker<N>.pid), and its stderr (err) and exit
-- status (status) land.

local script_head = [[
local par = require "par"
local dir = arg[1]
local function note(name, text)
  local f = assert(io.open(dir .. "/" .. name .. ".tmp", "w"))
  f:write(text)
  f:close()
  os.rename(dir .. "/" .. name .. ".tmp", dir .. "/" .. name)
end
local function slow(x)
  note("worker" .. x .. ".pid", tostring(par.pid()))
  par.sleep(30)
  return x
end
note("script.pid", tostring(par.pid()))
]]

local slow_bodies = {
  {name = "par.map", body = "par.map(slow, {1, 2}, {workers = 2})"},
  {name = "par.queue", body = "local q = par.queue(slow, {workers = 2}); q:push(1); q:push(2); q:pop()"},
  {name = "par.imap", body = "for _ in par.imap(slow, {1, 2}, {workers = 2}) do end"},
}

-- Runs code after script_head in the background; 'launcher' (such as
-- "setsid", for a process group of its own) goes before the interpreter.
local function start_script(dir, code, launcher)
  write_file(dir .. "/script.lua", script_head .. code)
  os.execute(("(LUA_CPATH='build/?.so;;' %s %s %s/script.lua %s >%s/out 2>%s/err; echo $? >%s/status) "
              .. "</dev/null >/dev/null 2>&1 &"):format(launcher or "", helpers.interpreter,
                                                        dir, dir, dir, dir, dir))
end

-- The pids of the script and of its two workers, once all have started.
local function started_pids(dir)
  local ready = eventually(10, function()
    return pid_in(dir .. "/script.pid") and pid_in(dir .. "/worker1.pid") and pid_in(dir .. "/worker2.pid")
  end)
  assert.is_truthy(ready, "the script and its workers did not start: " .. (read_file(dir .. "/err") or ""))
  return pid_in(dir .. "/script.pid"), {pid_in(dir .. "/worker1.pid"), pid_in(dir .. "/worker2.pid")}
end

local function kill_all(dir)
  for _, name in ipairs({"script.pid", "worker1.pid", "worker2.pid"}) do
    local pid = pid_in(dir .. "/" .. name)
    if pid and running(pid) then os.execute("kill -9 " .. pid .. " 2>/dev/null") end
  end
end

describe("an interrupted parent", function()
  use_temp_dir(kill_all)

  for _, signal in ipairs({"INT", "TERM"}) do
    for _, script in ipairs(slow_bodies) do
      it("exits non-zero on SIG" .. signal .. " while " .. script.name .. " waits, says so, "
         .. "and takes its workers with it", function()
        start_script(dir, script.body)
        local parent, workers = started_pids(dir)
        -- its workers have started: the parent is, or will be, asleep waiting for them
        assert.is_true(helpers.wait_until_asleep(parent), "the parent never waited for its workers")
        os.execute("kill -" .. signal .. " " .. parent)
        local status = eventually(5, function() return tonumber(read_file(dir .. "/status") or "") end)
        assert.is_truthy(status, "the script did not exit after SIG" .. signal)
        assert.are_not.equal(0, status)
        local stderr = read_file(dir .. "/err")
        assert.matches("interrupted", stderr, 1, true)
        assert.matches("SIG" .. signal, stderr, 1, true)
        assert.matches(script.name, stderr, 1, true)
        assert.is_true(all_ended(workers, 1), "a worker outlived its interrupted parent")
      end)
    end
  end

  it("takes the programs its workers run with it on Ctrl-C to its process group", function()
    -- each worker runs a shell that notes its pid and becomes sleep 30
    start_script(dir, [[
      par.map(function(x)
        note("worker" .. x .. ".pid", tostring(par.pid()))
        os.execute("sh -c 'echo $$ > ]] .. dir .. [[/program" .. x .. ".pid; exec sleep 30'")
      end, {1, 2}, {workers = 2})
    ]], "setsid")
    local parent, workers = started_pids(dir)
    local programs = eventually(10, function()
      local a, b = pid_in(dir .. "/program1.pid"), pid_in(dir .. "/program2.pid")
      return a and b and {a, b}
    end)
    assert.is_truthy(programs, "the workers' programs did not start")
    os.execute("kill -INT -" .. parent) -- the whole group, as the terminal does
    local status = eventually(5, function() return tonumber(read_file(dir .. "/status") or "") end)
    assert.are_not.equal(0, status)
    assert.matches("interrupted", read_file(dir .. "/err"), 1, true)
    assert.is_true(all_ended(workers, 1), "a worker outlived its interrupted parent")
    assert.is_true(all_ended(programs, 3), "a program a worker ran outlived Ctrl-C")
  end)

  for _, wait in ipairs({
    {name = "par.sleep", body = "par.sleep(30)"},
    {name = "par.channel", body = "local ch = par.channel({capacity = 1}); while true do ch:put(1) end"},
    {name = "par.pipe", body = "local mine, theirs = par.pipe(); mine:recv()"},
    -- the shared objects wait on futexes and robust mutexes, not in poll
    {name = "par.lock", body = [[
      local m, held = par.lock(), par.event()
      par.spawn(function()
        note("worker1.pid", tostring(par.pid())) -- for kill_all
        m:acquire(); held:set(); par.sleep(30)
      end)
      held:wait()
      note("waiting.pid", tostring(par.pid()))
      m:acquire()
    ]], ready = "waiting.pid"},
    {name = "par.semaphore", body = "par.semaphore(0):acquire()"},
    {name = "par.event", body = "par.event():wait()"},
    {name = "par.barrier", body = "par.barrier(2):wait()"},
  }) do
    it("raises \"interrupted\" on SIGINT while " .. wait.name .. " waits", function()
      start_script(dir, wait.body)
      local ready = dir .. "/" .. (wait.ready or "script.pid")
      local parent = eventually(10, function() return pid_in(ready) end)
      assert.is_truthy(parent, "the script did not start: " .. (read_file(dir .. "/err") or ""))
      -- after noting its pid it blocks nowhere but in that wait
      assert.is_true(helpers.wait_until_asleep(parent), "the script never waited in " .. wait.name)
      os.execute("kill -INT " .. parent)
      local status = eventually(5, function() return tonumber(read_file(dir .. "/status") or "") end)
      assert.is_truthy(status, "the script did not exit after SIGINT")
      assert.are_not.equal(0, status)
      assert.matches(wait.name .. ": interrupted: got SIGINT", read_file(dir .. "/err"), 1, true)
    end)
  end

  it("leaves an interrupted queue dead: later calls raise the same error", function()
    start_script(dir, [[
      local q = par.queue(slow, {workers = 2})
      q:push(1); q:push(2)
      local _, first = pcall(q.pop, q)
      local _, again = pcall(q.pop, q)
      local _, push = pcall(q.push, q, 3)
      local function kind(e) return type(e) == "table" and e.kind or tostring(e) end
      io.write(kind(first), " ", kind(again), " ", kind(push))
    ]])
    local parent, workers = started_pids(dir)
    assert.is_true(helpers.wait_until_asleep(parent), "the parent never waited in pop")
    os.execute("kill -TERM " .. parent)
    local status = eventually(5, function() return tonumber(read_file(dir .. "/status") or "") end)
    assert.are.equal(0, status, read_file(dir .. "/err"))
    assert.are.equal("interrupted interrupted interrupted", read_file(dir .. "/out"))
    assert.is_true(all_ended(workers, 1), "a worker outlived the interrupted queue")
  end)
end)

describe("a parent killed with SIGKILL", function()
  use_temp_dir(kill_all)

  for _, script in ipairs(slow_bodies) do
    it("takes the workers of its " .. script.name .. " with it", function()
      start_script(dir, script.body)
      local parent, workers = started_pids(dir)
      os.execute("kill -9 " .. parent)
      assert.is_true(all_ended(workers, 3), "a worker outlived its killed parent")
    end)
  end
end)

---------------------------------------------------------------------------

describe("a failing init", function()
  use_temp_dir()

  local inits = {
    {how = "raises", says = "init is broken", fn = function(counter)
      return function()
        append_pid(counter)
        error("init is broken")
      end
    end},
    {how = "calls os.exit(1)", says = "exited with status 1", fn = function(counter)
      return function()
        append_pid(counter)
        os.exit(1)
      end
    end},
  }

  for _, api in ipairs(apis) do
    for _, init in ipairs(inits) do
      for _, mode in ipairs({"raise", "collect"}) do
        it("that " .. init.how .. " is one error of kind \"init\" from " .. api.name
           .. " (on_error = \"" .. mode .. "\"), with no respawn loop", function()
          helpers.settle()
          local before = helpers.child_count()
          local counter = dir .. "/inits"
          local ok, err = pcall(api.run, function(x) return x end, {1, 2, 3, 4, 5, 6},
                                {workers = 2, on_error = mode, init = init.fn(counter)})
          assert.is_false(ok)
          assert.are.equal("table", type(err), tostring(err))
          assert.are.equal(api.name, err.fn)
          assert.are.equal("init", err.kind)
          assert.matches(init.says, err.message, 1, true)
          assert.is_true(#lines_of(counter) <= 2, #lines_of(counter) .. " inits ran for 2 workers")
          assert.are.equal(before, helpers.child_count())
        end)
      end
    end
  end

  it("keeps a queue dead: every later push and pop raises the same init error", function()
    local q <close> = par.queue(function(x) return x end,
                                {workers = 2, init = function() error("init is broken") end})
    q:push(1)
    local ok, err = pcall(q.pop, q)
    assert.is_false(ok)
    assert.are.equal("init", err.kind)
    local ok2, err2 = pcall(q.push, q, 2)
    assert.is_false(ok2)
    assert.are.equal("init", err2.kind)
    local ok3, err3 = pcall(q.pop, q)
    assert.is_false(ok3)
    assert.are.equal("init", err3.kind)
  end)
end)

---------------------------------------------------------------------------

-- Descriptor number -> target, as `ls -l /proc/<pid>/fd` shows them.
local function parse_fds(listing)
  local fds = {}
  for fd, target in listing:gmatch("(%d+) %-> ([^\n]+)") do fds[tonumber(fd)] = target end
  return fds
end

describe("close-on-exec", function()
  it("lets a program a worker runs see none of par's descriptors", function()
    -- What a program run from the parent sees is the baseline: whatever the
    -- test runner itself left open. A program run from a worker must see
    -- exactly that: 0, 1 (its pipe to io.popen), 2, the directory ls reads,
    -- and nothing of par's pipes and sockets.
    local function exec_view()
      return shell_out("ls -l /proc/self/fd")
    end
    local baseline = parse_fds(exec_view())
    local views = par.map(function() return exec_view() end, {1, 2}, {workers = 2})
    for _, listing in ipairs(views) do
      local seen = parse_fds(listing)
      for fd, target in pairs(seen) do
        assert.is_not_nil(baseline[fd], "a program run by a worker inherited fd " .. fd .. " -> " .. target)
        if fd ~= 1 and not target:match("^/proc/%d+/fd$") then
          assert.are.equal(baseline[fd], target, "fd " .. fd .. " is not the parent's")
        end
      end
      for fd in pairs(baseline) do
        assert.is_not_nil(seen[fd], "fd " .. fd .. " missing in the worker's program")
      end
    end
  end)

  it("lets par.map return while a worker's background process lives on, holding none of par's pipes", function()
    local dir = temp_dir()
    local sleeper
    finally(function()
      if sleeper then os.execute("kill -9 " .. sleeper .. " 2>/dev/null") end
      remove_dir(dir)
    end)
    local baseline = parse_fds(shell_out("ls -l /proc/self/fd"))
    local pids = par.map(function()
      os.execute("sleep 5 </dev/null >/dev/null 2>&1 & echo $! >" .. dir .. "/sleep.pid")
      return pid_in(dir .. "/sleep.pid")
    end, {1})
    sleeper = pids[1]
    assert.is_true(running(sleeper), "the background sleep is not running")
    local fds = parse_fds(shell_out("ls -l /proc/" .. sleeper .. "/fd 2>/dev/null"))
    for fd = 0, 2 do assert.are.equal("/dev/null", fds[fd]) end
    for fd, target in pairs(fds) do
      if fd > 2 then
        -- only what the test runner itself left open may be there
        assert.are.equal(baseline[fd], target, "the background sleep holds fd " .. fd .. " -> " .. target)
      end
    end
  end)
end)

---------------------------------------------------------------------------

describe("worker output", function()
  -- Each job of 4 workers prints 1000 numbered lines (print flushes every
  -- line) and io.writes 100 more that stay buffered until par flushes them
  -- (under 4 KiB per worker, so each worker's buffer goes out in one write
  -- and lines cannot interleave). The parent leaves a line buffered before
  -- every fork. Every line must come out exactly once.
  local script = [[
    local par = require "par"
    local function job(w)
      for n = 1, 1000 do print(("worker %d line %d"):format(w, n)) end
      for n = 1, 100 do io.write(("worker %d buffered %d\n"):format(w, n)) end
      return w
    end
    io.write("parent before map\n")
    par.map(job, {1, 2, 3, 4}, {workers = 4})
    io.write("parent before queue\n")
    local q = par.queue(job, {workers = 4})
    for w = 5, 8 do q:push(w) end
    q:close()
    for _ in q:results() do end
    io.write("parent before imap\n")
    for _ in par.imap(job, {9, 10, 11, 12}, {workers = 4}) do end
    io.write("parent done\n")
  ]]

  local function check_each_line_once(out)
    local count, total = {}, 0
    for line in out:gmatch("[^\n]*\n") do
      count[line] = (count[line] or 0) + 1
      total = total + 1
    end
    local expected = {"parent before map\n", "parent before queue\n", "parent before imap\n", "parent done\n"}
    for w = 1, 12 do
      for n = 1, 1000 do expected[#expected + 1] = ("worker %d line %d\n"):format(w, n) end
      for n = 1, 100 do expected[#expected + 1] = ("worker %d buffered %d\n"):format(w, n) end
    end
    for _, line in ipairs(expected) do
      assert.are.equal(1, count[line] or 0, "times seen: " .. line)
    end
    assert.are.equal(#expected, total)
  end

  it("is neither lost nor duplicated when stdout is a pipe", function()
    local status, out, err = helpers.run_lua(script)
    assert.are.equal(0, status, err)
    check_each_line_once(out)
  end)

  it("is neither lost nor duplicated when stdout is a file", function()
    local dir = temp_dir()
    finally(function() remove_dir(dir) end)
    write_file(dir .. "/script.lua", script)
    local ok = os.execute(("LUA_CPATH='build/?.so;;' %s %s/script.lua >%s/out 2>%s/err")
                          :format(helpers.interpreter, dir, dir, dir))
    assert.is_true(ok, read_file(dir .. "/err"))
    check_each_line_once(read_file(dir .. "/out"))
  end)
end)

---------------------------------------------------------------------------

describe("fork() failing", function()
  -- RLIMIT_NPROC counts every process of the user, so the script runs as
  -- nobody (who has none) with a process limit: with 1 the interpreter
  -- itself is the only process allowed, with 2 it gets one worker.
  use_temp_dir()

  local function run_as_nobody(nproc, code)
    if shell_out("id -u"):match("^%d+") ~= "0" then pending("needs root to run a script as nobody") end
    if not (shell_out("command -v setpriv"):match("setpriv") and shell_out("command -v prlimit"):match("prlimit")) then
      pending("needs setpriv and prlimit (util-linux)")
    end
    if shell_out("grep -l '^Uid:[[:space:]]*65534[[:space:]]' /proc/[0-9]*/status 2>/dev/null"):match("%d") then
      pending("user nobody already runs processes, RLIMIT_NPROC would count them")
    end
    local as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups "
    if not os.execute("LUA_CPATH='build/?.so;;' " .. as_nobody .. helpers.interpreter
                      .. " -e 'require \"par\"' >/dev/null 2>&1") then
      pending("the build directory is not readable by nobody")
    end
    os.execute("chmod 755 " .. dir)
    write_file(dir .. "/script.lua", "local par = require 'par'\n" .. code)
    os.execute("chmod 644 " .. dir .. "/script.lua")
    -- LeakSanitizer (make check-san) cannot start its checker at exit under the limit
    local cmd = ("ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 LUA_CPATH='build/?.so;;' "
                 .. "%s prlimit --nproc=%d %s %s/script.lua 2>%s/err")
                :format(as_nobody, nproc, helpers.interpreter, dir, dir)
    local p = io.popen(cmd)
    local out = p:read("a")
    local _, _, status = p:close()
    return status, out, read_file(dir .. "/err")
  end

  -- Each script defines run(fn, list, opts) -> results with one of the APIs.
  local runners = {
    {name = "par.map", code = [[
      local function run(fn, list, opts) return par.map(fn, list, opts) end
    ]]},
    {name = "par.imap", code = [[
      local function run(fn, list, opts)
        local results = {}
        for i, result in par.imap(fn, list, opts) do results[i] = result end
        return results
      end
    ]]},
    {name = "par.queue", code = [[
      local function run(fn, list, opts)
        local q <close> = par.queue(fn, opts)
        for _, item in ipairs(list) do q:push(item) end
        q:close()
        local results = {}
        for id, result in q:results() do results[id] = result end
        return results
      end
    ]]},
  }

  it("makes par.spawn name the pipe it could not make, leaving no descriptor open", function()
    local status, out, err = helpers.run_lua([[
      local par = require 'par'
      local held = {}
      local f repeat f = io.open("/dev/null"); held[#held + 1] = f until not f
      local ok, e = pcall(par.spawn, function() end)
      local closed_one = held[1]:close()
      local again = io.open("/dev/null") -- the one just closed: the failed spawn kept none
      io.write(tostring(ok), "|", tostring(e.kind), "|", tostring(e.syscall), "|",
               tostring(again ~= nil and io.open("/dev/null") == nil), "|", tostring(e))
    ]])
    assert.are.equal(0, status, err)
    assert.are.equal("false|fork|pipe|true|par.spawn: cannot pipe: Too many open files", out)
  end)

  -- Runs x -> x * x over list with 'workers' asked for, and prints whether
  -- every result is right and how many processes gave them.
  local squares_and_workers = [==[
    local function squares_and_workers(list, workers)
      local ok, r = pcall(run, function(x) return {x * x, par.pid()} end, list, {workers = workers})
      if not ok then io.write("raised: ", tostring(r)) return end
      local good, pids, count = true, {}, 0
      for i = 1, #list do
        good = good and type(r[i]) == "table" and r[i][1] == list[i] * list[i]
        if good and not pids[r[i][2]] then pids[r[i][2]] = true; count = count + 1 end
      end
      io.write(tostring(good), " with ", count, " worker(s)")
    end
  ]==]

  -- Prints how run(...) failed to start its workers: ok|kind|syscall|tostring(error).
  local report_failed_start = [[
    local ok, e = pcall(run, function(x) return x end, {1, 2, 3}, {workers = 2})
    io.write(tostring(ok), "|", tostring(type(e) == "table" and e.kind), "|",
             tostring(type(e) == "table" and e.syscall), "|", tostring(e))
  ]]

  for _, runner in ipairs(runners) do
    it("makes " .. runner.name .. " raise an error of kind \"fork\" that names the failed fork", function()
      local status, out, err = run_as_nobody(1, runner.code .. report_failed_start)
      assert.are.equal(0, status, err)
      assert.matches("^false|fork|fork|par%.%a+: cannot fork: Resource temporarily unavailable$", out)
    end)

    it("makes " .. runner.name .. " name the pipe it could not make when out of descriptors", function()
      local status, out, err = helpers.run_lua("local par = require 'par'\n" .. runner.code .. [[
        local held = {}
        local f repeat f = io.open("/dev/null"); held[#held + 1] = f until not f
      ]] .. report_failed_start)
      assert.are.equal(0, status, err)
      assert.matches("^false|fork|pipe|par%.%a+: cannot pipe: Too many open files$", out)
    end)

    it("lets " .. runner.name .. " go on with the workers it got", function()
      local status, out, err = run_as_nobody(2, runner.code .. squares_and_workers .. [==[
        local list = {}
        for i = 1, 40 do list[i] = i end
        squares_and_workers(list, 4)
      ]==])
      assert.are.equal(0, status, err)
      -- the limit leaves room for exactly one worker
      assert.are.equal("true with 1 worker(s)", out)
    end)

    it("lets " .. runner.name .. " give a short list's unstarted share to the worker it got", function()
      -- Four items for four workers: each item would be a worker's only
      -- one, but only one worker can start, so it must run all four.
      local status, out, err = run_as_nobody(2, runner.code .. squares_and_workers .. [==[
        squares_and_workers({1, 2, 3, 4}, 4)
      ]==])
      assert.are.equal(0, status, err)
      assert.are.equal("true with 1 worker(s)", out)
    end)
  end
end)
