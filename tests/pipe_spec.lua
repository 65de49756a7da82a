local helpers = require "tests.helpers"
local par = helpers.par

local MB = 1024 * 1024

describe("par.pipe", function()
  after_each(function() helpers.settle() end)

  it("carries values both ways between a parent and a spawned child", function()
    local mine, theirs = par.pipe()
    local child = par.spawn(function()
      mine:close()
      local n = 0
      while true do
        local v = theirs:recv()
        if v == nil then return n end
        n = n + 1
        theirs:send({got = v, twice = v * 2})
      end
    end)
    theirs:close()
    for i = 1, 100 do
      mine:send(i)
      assert.are.same({got = i, twice = 2 * i}, mine:recv())
    end
    mine:close()
    assert.are.equal(100, child:join())
  end)

  it("keeps values exact, big ones included, in both directions", function()
    local a, b = par.pipe()
    local big = ("0123456789"):rep(MB // 10 * 3)
    a:send({int = 3, float = 3.0, big = big})
    b:send(false)
    local v = b:recv()
    assert.are.equal("integer", math.type(v.int))
    assert.are.equal("float", math.type(v.float))
    assert.are.equal(big, v.big)
    assert.are.equal(false, a:recv())
  end)

  it("polls: false with nothing waiting, true once a message is there", function()
    local a, b = par.pipe()
    assert.is_false(b:poll())
    assert.is_false(b:poll(0.01))
    local child = par.spawn(function() a:send("hello") end)
    assert.is_true(b:poll(30))
    assert.are.equal("hello", b:recv())
    child:join()
  end)

  it("returns nil, 'timeout' when nothing comes in time", function()
    local a, b = par.pipe()
    assert.are.same({nil, "timeout"}, {b:recv(0.05)})
    assert.are.same({nil, "timeout"}, {a:recv(0)})
  end)

  it("reports closed only once every copy of the other end is closed", function()
    local a, b = par.pipe()
    local go, told = par.pipe() -- the child tells the parent what it saw
    local child = par.spawn(function()
      b:close()
      a:send("from the child")
      a:close() -- the parent's copy of a is still open
      told:send("closed mine")
      return told:recv()
    end)
    assert.are.equal("closed mine", go:recv(30))
    assert.are.equal("from the child", b:recv(30))
    assert.are.same({nil, "timeout"}, {b:recv(0.05)})
    a:close()
    assert.are.same({nil, "closed"}, {b:recv()})
    assert.is_true(b:poll())
    go:send("done")
    assert.are.equal("done", child:join())
  end)

  it("raises when used after close, and on send once the other end is closed", function()
    local a, b = par.pipe()
    a:close()
    a:close()
    assert.has_error(function() a:send(1) end, "par.pipe: this end is closed")
    assert.has_error(function() a:recv() end, "par.pipe: this end is closed")
    assert.has_error(function() b:send(1) end, "par.pipe: send on a closed pipe")
  end)

  it("refuses nil and names what cannot be sent", function()
    local a = par.pipe()
    local ok, err = pcall(function() a:send(nil) end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'send' (cannot send nil", err, 1, true)
    ok, err = pcall(function() a:send({f = print}) end)
    assert.matches("cannot send a function (at value.f)", err, 1, true)
  end)

  it("closes its descriptor when collected", function()
    helpers.settle()
    local before = helpers.fd_count()
    for _ = 1, 100 do
      local a, b = par.pipe()
      a:send(1)
      assert.are.equal(1, b:recv())
    end
    helpers.settle()
    assert.are.equal(before, helpers.fd_count())
  end)
end)
