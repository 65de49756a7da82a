-- par.channel's capacity, count, unbounded queue and time-outs (docs/channel-capacity.md).
local helpers = require "tests.helpers"
local par = helpers.par

local MB = 1024 * 1024

local function body(writer, seq, size)
  local unit = ("%d:%d;"):format(writer, seq)
  return unit:rep(size // #unit + 1):sub(1, size)
end

local function is_whole(msg)
  return type(msg) == "table" and msg.body == body(msg.writer, msg.seq, #msg.body)
end

local function drain(ch)
  local got = {}
  while true do
    local v = ch:get(0)
    if v == nil then return got end
    got[#got + 1] = v
  end
end

-- A moment between 0 and 'most' seconds that differs in every process and run.
local function random_moment(most)
  return (par.now() * 7919 + par.pid()) % 1 * most
end

describe("par.channel, more", function()
  after_each(function() helpers.settle() end)

  it("put returns true", function()
    local ch = par.channel()
    assert.is_true(ch:put(1))
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
    for seq = 1, count do ch:put({writer = 1, seq = seq, body = body(1, seq, sizes[seq % #sizes + 1])}) end
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
    local function writer(ch, id)
      return function()
        local seq = 0
        while true do
          seq = seq + 1
          ch:put({writer = id, seq = seq, body = body(id, seq, sizes[seq % #sizes + 1])})
        end
      end
    end
    local function stopper()
      par.sleep(random_moment(0.4))
      error("stop") -- par.map kills every other worker wherever it is
    end

    it("loses, tears and repeats no message that was put", function()
      for _ = 1, 4 do
        local ch = par.channel()
        local ok, err = pcall(par.map, function(role) return role() end,
                              {writer(ch, 1), writer(ch, 2), stopper}, {workers = 3})
        assert.is_false(ok)
        assert.are.equal(3, err.index)
        local next_seq = {1, 1}
        for _, msg in ipairs(drain(ch)) do
          assert.is_true(is_whole(msg))
          assert.are.equal(next_seq[msg.writer], msg.seq) -- in order, none lost, none twice
          next_seq[msg.writer] = msg.seq + 1
        end
        ch:put("alive")
        assert.are.equal("alive", ch:get(5))
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
        local ok, err = pcall(par.map, function(role) return role() end,
                              {writer(ch, 1), writer(ch, 2), reader, stopper}, {workers = 4})
        assert.is_false(ok)
        assert.are.equal(4, err.index)
        local last = {0, 0}
        for _, msg in ipairs(drain(ch)) do
          assert.is_true(is_whole(msg))
          assert.is_true(msg.seq > last[msg.writer])
          last[msg.writer] = msg.seq
        end
      end
      ch:put("alive")
      assert.are.equal("alive", ch:get(5))
    end)
  end)
end)
