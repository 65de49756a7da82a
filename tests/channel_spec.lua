local helpers = require "tests.helpers"
local par = helpers.par

local MB = 1024 * 1024

-- A body that names its writer and sequence number all along, so a torn,
-- truncated or mixed-up message cannot pass for a whole one.
local function body(writer, seq, size)
  local unit = ("%d:%d;"):format(writer, seq)
  return unit:rep(size // #unit + 1):sub(1, size)
end

local function message(writer, seq, size)
  return {writer = writer, seq = seq, size = size, body = body(writer, seq, size)}
end

local function is_whole(msg)
  return type(msg) == "table" and msg.body == body(msg.writer, msg.seq, msg.size)
end

-- The channel still carries a message after what the test did to it.
local function assert_usable(ch)
  ch:put("alive")
  assert.are.equal("alive", ch:get(5))
end

-- A role that puts writer id's messages 1, 2, 3, ... on ch until it is
-- killed, their sizes going round the list.
local function endless_writer(ch, id, sizes)
  return function()
    local seq = 0
    while true do
      seq = seq + 1
      ch:put(message(id, seq, sizes[seq % #sizes + 1]))
    end
  end
end

-- Runs one function per role, each in its own worker, all at once.
local function run_roles(roles)
  return par.map(function(role) return role() end, roles, {workers = #roles})
end

-- How many sockets and memfds, what a channel holds, this process has open.
-- (Not helpers.fd_count: its `ls` may run before popen has closed its copy
-- of the pipe's write end, and count one more.)
local function channel_fd_count()
  local p = io.popen("ls -l /proc/" .. par.pid() .. "/fd")
  local n = 0
  for line in p:lines() do
    if line:find("socket:", 1, true) or line:find("memfd:", 1, true) then n = n + 1 end
  end
  p:close()
  return n
end

-- Takes every message already waiting.
local function drain(ch)
  local got = {}
  while true do
    local v = ch:get(0)
    if v == nil then return got end
    got[#got + 1] = v
  end
end

describe("par.channel", function()
  -- Close the channels of each test now rather than at some later
  -- collection, which would upset other specs that count descriptors.
  after_each(function() collectgarbage(); collectgarbage() end)

  describe("in one process", function()
    it("gives messages back in the order they were put", function()
      local ch = par.channel()
      for i = 1, 100 do ch:put(i) end
      for i = 1, 100 do assert.are.equal(i, ch:get()) end
    end)

    it("keeps values exact", function()
      local ch = par.channel()
      local bytes = {}
      for b = 0, 255 do bytes[#bytes + 1] = string.char(b) end
      ch:put({
        int = 3, float = 3.0, negzero = -0.0,
        max = math.maxinteger, min = math.mininteger, tiny = 5e-324,
        binary = table.concat(bytes),
        nested = {[1] = "one", [1.5] = "float key", [true] = "bool key", ["1"] = "string key",
                  deeper = {{{}}}},
      })
      local v = ch:get()
      assert.are.equal("integer", math.type(v.int))
      assert.are.equal("float", math.type(v.float))
      assert.are.equal(-math.huge, 1 / v.negzero)
      assert.are.equal(math.maxinteger, v.max)
      assert.are.equal(math.mininteger, v.min)
      assert.are.equal(5e-324, v.tiny)
      assert.are.equal(table.concat(bytes), v.binary)
      assert.are.same({[1] = "one", [1.5] = "float key", [true] = "bool key", ["1"] = "string key",
                       deeper = {{{}}}}, v.nested)
    end)

    it("sends false, strings and numbers as themselves", function()
      local ch = par.channel()
      ch:put(false); ch:put(""); ch:put(0)
      assert.are.equal(false, ch:get())
      assert.are.equal("", ch:get())
      assert.are.equal(0, ch:get())
    end)

    it("carries a 10 MB message whole", function()
      local ch = par.channel()
      local big = message(1, 1, 10 * MB)
      ch:put(big)
      ch:put("after")
      assert.is_true(is_whole(ch:get()))
      assert.are.equal("after", ch:get())
    end)

    it("returns nil, 'timeout' when nothing comes in time", function()
      local ch = par.channel()
      assert.are.same({nil, "timeout"}, {ch:get(0.05)})
      assert.are.same({nil, "timeout"}, {ch:get(0)})
    end)

    it("delivers what was put before close, then returns nil, 'closed'", function()
      local ch = par.channel()
      ch:put("a"); ch:put(message(1, 1, 3 * MB))
      ch:close()
      assert.are.equal("a", ch:get())
      assert.is_true(is_whole(ch:get()))
      assert.are.same({nil, "closed"}, {ch:get()})
      assert.are.same({nil, "closed"}, {ch:get(0.01)})
    end)

    it("may be closed twice", function()
      local ch = par.channel()
      ch:close()
      ch:close()
      assert.are.same({nil, "closed"}, {ch:get()})
    end)

    it("raises on put after close", function()
      local ch = par.channel()
      ch:close()
      assert.has_error(function() ch:put(1) end, "par.channel: put on a closed channel")
      assert.has_error(function() ch:put(string.rep("x", 2 * MB)) end,
                       "par.channel: put on a closed channel")
    end)

    it("names what cannot be sent", function()
      local ch = par.channel()
      local ok, err = pcall(function() ch:put({f = print}) end)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'put' (cannot send a function (at value.f))", err, 1, true)
      ok, err = pcall(function() ch:put({co = coroutine.create(print)}) end)
      assert.matches("cannot send a thread (at value.co)", err, 1, true)
    end)

    it("refuses nil, so that get's nil always means no message", function()
      local ch = par.channel()
      local ok, err = pcall(function() ch:put(nil) end)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'put' (cannot send nil", err, 1, true)
    end)

    it("checks the timeout", function()
      local ch = par.channel()
      assert.has_error(function() ch:get(-1) end)
      assert.has_error(function() ch:get(0 / 0) end)
      assert.has_error(function() ch:get("soon") end)
    end)

    it("says why a big message cannot be put when no descriptor is left for it", function()
      local status, out, err = helpers.run_lua([[
        local par = require "par"
        local ch = par.channel({max_bytes = 1}) -- a ring of 1 MiB
        local files = {}
        for f in function() return io.open("/dev/null") end do files[#files + 1] = f end
        local ok, e = pcall(ch.put, ch, ("x"):rep(2000000)) -- too big for the ring: a memfd
        for _, f in ipairs(files) do f:close() end
        io.write(tostring(ok), " ", type(e) == "table" and e.kind or tostring(e))
      ]])
      assert.are.equal(0, status, err)
      assert.matches("^false .*par.channel: put failed: Too many open files", out)
    end)

    it("leaks no descriptor", function()
      collectgarbage(); collectgarbage() -- the channels of earlier tests
      local before = channel_fd_count()
      local probe = par.channel() -- the count does see a channel's two sockets
      assert.are.equal(before + 2, channel_fd_count())
      probe = nil
      for _ = 1, 200 do
        local ch = par.channel({max_bytes = 1})
        ch:put(message(1, 1, 1100000)) -- too big for the ring: a memfd
        ch:put(message(1, 2, 100000))
        assert.is_true(is_whole(ch:get()))
      end
      collectgarbage(); collectgarbage()
      assert.are.equal(before, channel_fd_count())
    end)
  end)

  describe("between processes", function()
    it("reaches workers forked after it was made, both ways", function()
      local ch = par.channel()
      ch:put("from the parent")
      local r = par.map(function()
        local got = ch:get(5)
        ch:put("from the worker")
        return got
      end, {1})
      assert.are.equal("from the parent", r[1])
      assert.are.equal("from the worker", ch:get(5))
    end)

    -- The other roles act once the process that sent its pid on 'waiting'
    -- is asleep: in the wait it went to next, with nothing else to block on.
    local function when_asleep(waiting, act)
      return function()
        local pid = waiting:get(30)
        assert(helpers.wait_until_asleep(pid), "process " .. tostring(pid) .. " never waited")
        act()
      end
    end

    it("gives a waiting get a message that arrives while it waits", function()
      local ch, waiting = par.channel(), par.channel()
      local r = run_roles({
        function()
          local before = {ch:get(0)}
          waiting:put(par.pid())
          return {before = before, got = {ch:get(30)}}
        end,
        when_asleep(waiting, function() ch:put("late") end),
      })
      assert.are.same({nil, "timeout"}, r[1].before) -- the message was not there yet
      assert.are.same({"late"}, r[1].got)
      assert.are.same({nil, "timeout"}, {ch:get(0)})
    end)

    it("wakes a get that waits without a timeout when another process closes", function()
      local ch, waiting = par.channel(), par.channel()
      local r = run_roles({
        function() waiting:put(par.pid()); return {ch:get()} end,
        when_asleep(waiting, function() ch:close() end),
      })
      assert.are.same({nil, "closed"}, r[1])
      assert.has_error(function() ch:put(1) end, "par.channel: put on a closed channel")
    end)

    it("makes a put waiting for room raise when another process closes, its message not sent", function()
      local ch, waiting = par.channel({capacity = 8}), par.channel()
      local r = run_roles({
        function()
          waiting:put(par.pid())
          local sent = 0
          local ok, err = pcall(function()
            while true do -- no reader: the 8 places fill up, and the last put waits
              ch:put(("x"):rep(1000))
              sent = sent + 1
            end
          end)
          return {sent = sent, err = not ok and err}
        end,
        when_asleep(waiting, function() ch:close() end),
      })
      assert.matches("par.channel: put on a closed channel", r[1].err, 1, true)
      assert.is_true(r[1].sent > 0)
      assert.are.equal(r[1].sent, #drain(ch)) -- every put that returned, and no more
      assert.are.same({nil, "closed"}, {ch:get(0)})
    end)

    it("stays open for the others when one process collects its channel", function()
      local ch = par.channel()
      par.map(function()
        ch:put("before")
        ch = nil
        collectgarbage(); collectgarbage()
      end, {1})
      assert.are.equal("before", ch:get(5))
      ch:put("still open")
      assert.are.equal("still open", ch:get(5))
    end)

    it("moves 3 writers' messages, 10 MB ones too, to 2 readers, each whole and once", function()
      local ch, done = par.channel(), par.channel()
      local per_writer = 40
      local function size(seq) return (seq == 10 or seq == 30) and 10 * MB or seq * 37 end
      local function writer(id)
        return function()
          for seq = 1, per_writer do ch:put(message(id, seq, size(seq))) end
          done:put(id)
          if id == 1 then -- the last writer to finish lets the readers go
            for _ = 1, 3 do done:get() end
            ch:close()
          end
        end
      end
      local function reader()
        local got = {}
        while true do
          local msg, why = ch:get()
          if msg == nil then
            assert(why == "closed", why)
            return got
          end
          got[#got + 1] = {writer = msg.writer, seq = msg.seq, size = #msg.body,
                           whole = is_whole(msg)}
        end
      end
      local r = run_roles({writer(1), writer(2), writer(3), reader, reader})

      local seen = {{}, {}, {}}
      for _, got in ipairs({r[4], r[5]}) do
        local last = {0, 0, 0}
        for _, m in ipairs(got) do
          assert.is_true(m.whole)
          assert.are.equal(size(m.seq), m.size)
          assert.is_nil(seen[m.writer][m.seq])
          assert.is_true(m.seq > last[m.writer]) -- one writer's messages stay in order
          seen[m.writer][m.seq] = true
          last[m.writer] = m.seq
        end
      end
      for w = 1, 3 do assert.are.equal(per_writer, #seen[w]) end
    end)

    it("keeps a queue full of big messages flowing to a slower reader", function()
      local ch, waiting = par.channel({capacity = 4}), par.channel()
      local count = 100
      local r = run_roles({
        function()
          waiting:put(par.pid())
          for seq = 1, count do ch:put(message(1, seq, MB)) end
        end,
        function()
          -- once the writer has filled the queue and waits for room
          local writer = waiting:get(30)
          assert(helpers.wait_until_asleep(writer), "the writer never filled the queue")
          for seq = 1, count do
            local msg = ch:get(30)
            assert(msg and msg.seq == seq and is_whole(msg), "message " .. seq)
          end
          return true
        end,
      })
      assert.is_true(r[2])
    end)

    it("is never torn or wedged by workers killed in the middle of put and get", function()
      local ch = par.channel()
      local sizes = {10, 1000, 100000, MB}
      local function writer(id) return endless_writer(ch, id, sizes) end
      local function reader()
        while true do
          local msg = ch:get()
          if not is_whole(msg) then error("torn message") end
        end
      end
      local function stopper()
        par.sleep(0.3)
        error("stop") -- par.map kills every other worker wherever it is
      end
      for _ = 1, 3 do
        local ok, err = pcall(run_roles, {writer(1), writer(2), reader, stopper})
        assert.is_false(ok)
        assert.are.equal(4, err.index)
        for _, msg in ipairs(drain(ch)) do assert.is_true(is_whole(msg)) end
      end
      assert_usable(ch)
    end)
  end)
end)

-- A moment between 0 and 'most' seconds that differs in every process and run.
local function random_moment(most)
  return (par.now() * 7919 + par.pid()) % 1 * most
end

describe("par.channel's count, capacity and overflow", function()
  after_each(function() helpers.settle() end)

  it("put returns true", function()
    local ch = par.channel()
    assert.is_true(ch:put(1))
  end)

  it("keeps every message whole as its ring wraps around", function()
    local ch = par.channel({max_bytes = 1}) -- a ring of 1 MiB: 400 KB messages wrap it
    local function big(i) return {i = i, body = ("x"):rep(400000) .. i} end
    local function take(i)
      local m = ch:get(0)
      assert.is_true(m ~= nil and m.i == i and m.body == big(i).body, "message " .. i)
    end
    ch:put(big(1)); ch:put(big(2))
    for i = 1, 6 do
      take(i)
      ch:put(big(i + 2))
    end
    take(7); take(8)
  end)

  it("counts the messages waiting with # and len", function()
    local ch = par.channel()
    assert.are.equal(0, #ch)
    for i = 1, 5 do ch:put(i) end
    ch:put(("x"):rep(MB)) -- travels in a memfd
    assert.are.equal(6, #ch)
    assert.are.equal(6, ch:len())
    ch:get(); ch:get()
    assert.are.equal(4, #ch)
    local seen = par.spawn(function() ch:get(); return #ch end):join()
    assert.are.equal(3, seen)
    assert.are.equal(3, #ch)
  end)

  it("takes a million small puts before any reader exists, without blocking, all in order", function()
    local n = os.getenv("PARLUA_SANITIZED") and 100000 or 1000000
    local ch = par.channel()
    for i = 1, n do ch:put(i) end
    assert.are.equal(n, #ch)
    local ok = par.spawn(function()
      for i = 1, n do
        local v = ch:get(0)
        if v ~= i then return ("message %d came as %s"):format(i, tostring(v)) end
      end
      return select(2, ch:get(0))
    end):join()
    assert.are.equal("timeout", ok)
    assert.are.equal(0, #ch)
  end)

  it("keeps big and small messages of one writer in order across the overflow", function()
    local ch = par.channel()
    local sizes = {10, 100000, 3, MB, 70000}
    local count = 3000
    for seq = 1, count do ch:put(message(1, seq, sizes[seq % #sizes + 1])) end
    for seq = 1, count do
      local msg = ch:get(0)
      assert(is_whole(msg) and msg.seq == seq, "message " .. seq)
    end
  end)

  it("raises a clear error when the overflow is full, and keeps what it holds", function()
    local ch = par.channel({max_bytes = MB})
    local put, err = 0, nil
    while true do
      local ok, e = pcall(ch.put, ch, ("y"):rep(10000))
      if not ok then err = e break end
      put = put + 1
    end
    assert.matches("par.channel: full (", err, 1, true)
    assert.matches("max_bytes = 1048576", err, 1, true)
    assert.are.equal(put, #ch)
    assert.are.equal(put, #drain(ch))
    assert.is_true(ch:put("room again"))
  end)

  it("with a capacity, times out a put once that many wait", function()
    local ch = par.channel({capacity = 2})
    assert.is_true(ch:put(1))
    assert.is_true(ch:put(2))
    assert.are.same({nil, "timeout"}, {ch:put(3, 0.05)})
    assert.are.same({nil, "timeout"}, {ch:put(3, 0)})
    assert.are.equal(2, #ch)
    assert.are.equal(1, ch:get())
    assert.is_true(ch:put(3, 0))
    assert.are.same({2, 3}, drain(ch))
  end)

  it("with a capacity, blocks a put until a reader takes a message", function()
    local ch, said = par.channel({capacity = 2}), par.channel()
    local writer = par.spawn(function()
      ch:put(1); ch:put(2)
      said:put("two in")
      ch:put(3) -- waits for room
      said:put("three in")
    end)
    assert.are.equal("two in", said:get(30))
    assert.are.same({nil, "timeout"}, {said:get(0.1)})
    assert.are.equal(1, ch:get())
    assert.are.equal("three in", said:get(30))
    writer:join()
    assert.are.same({2, 3}, drain(ch))
  end)

  it("makes a put waiting for room raise when the channel is closed", function()
    local ch = par.channel({capacity = 1})
    ch:put(1)
    local waiter = par.spawn(function()
      local ok, err = pcall(ch.put, ch, 2)
      return not ok and tostring(err)
    end)
    ch:close()
    assert.matches("par.channel: put on a closed channel", waiter:join(), 1, true)
  end)

  it("checks its options", function()
    assert.has_error(function() par.channel({capacity = 0}) end)
    assert.has_error(function() par.channel({max_bytes = "big"}) end)
    assert.has_error(function() par.channel({size = 3}) end)
    assert.has_error(function() par.channel():put(1, -1) end)
  end)

  it("delivers what overflowed before close, then nil, 'closed'", function()
    local ch = par.channel()
    for i = 1, 5000 do ch:put(i) end
    ch:close()
    assert.are.equal(5000, #drain(ch))
    assert.are.same({nil, "closed"}, {ch:get()})
    assert.has_error(function() ch:put(1) end, "par.channel: put on a closed channel")
  end)

  describe("with writers killed at random moments", function()
    local sizes = {5, 300, 100000, 20, MB, 7}
    local function writer(ch, id) return endless_writer(ch, id, sizes) end
    local function stopper()
      par.sleep(random_moment(0.4))
      error("stop") -- par.map kills every other worker wherever it is
    end

    it("loses, tears and repeats no message that was put", function()
      for _ = 1, 4 do
        local ch = par.channel()
        local ok, err = pcall(run_roles, {writer(ch, 1), writer(ch, 2), stopper})
        assert.is_false(ok)
        assert.are.equal(3, err.index)
        local next_seq = {1, 1}
        for _, msg in ipairs(drain(ch)) do
          assert.is_true(is_whole(msg))
          assert.are.equal(next_seq[msg.writer], msg.seq) -- in order, none lost, none twice
          next_seq[msg.writer] = msg.seq + 1
        end
        assert_usable(ch)
      end
    end)

    it("and a reader killed too, gives each reader whole messages in each writer's order", function()
      local ch = par.channel()
      local function reader()
        local last = {0, 0}
        while true do
          local msg = ch:get()
          if not is_whole(msg) then error("torn message") end
          if msg.seq <= last[msg.writer] then error("out of order") end
          last[msg.writer] = msg.seq
        end
      end
      for _ = 1, 4 do
        local ok, err = pcall(run_roles, {writer(ch, 1), writer(ch, 2), reader, stopper})
        assert.is_false(ok)
        assert.are.equal(4, err.index)
        local last = {0, 0}
        for _, msg in ipairs(drain(ch)) do
          assert.is_true(is_whole(msg))
          assert.is_true(msg.seq > last[msg.writer])
          last[msg.writer] = msg.seq
        end
      end
      assert_usable(ch)
    end)
  end)
end)
