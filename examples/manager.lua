-- A port of the Python tutorials' Manager script: workers tally sales into
-- a shared dict, a lock keeps two related keys in step, and a shared
-- counter counts the orders. Run: build/parlua examples/manager.lua
--
-- The Python it ports (multiprocessing, 4 processes):
--
--   def worker(orders, totals, lock, processed):
--       for product, qty, price in orders:
--           with lock:
--               totals[product] = totals.get(product, 0) + qty
--               totals["revenue"] = totals.get("revenue", 0) + qty * price
--           with processed.get_lock():
--               processed.value += 1
--
--   with Manager() as m:
--       totals, lock, processed = m.dict(), m.Lock(), Value("i", 0)
--       ps = [Process(target=worker, args=(chunk, totals, lock, processed)) for chunk in chunks]
--       ...
--
-- par needs no manager process: the dict, the lock and the value are
-- shared memory made before the workers are forked.
local par = require "par"

local PRODUCTS = {"apple", "pear", "plum", "fig"}
local PRICES = {apple = 3, pear = 4, plum = 2, fig = 7}

-- 40,000 orders of a product, a quantity and a price, in 8 chunks.
local chunks = {}
for c = 1, 8 do
  local orders = {}
  for i = 1, 5000 do
    local product = PRODUCTS[(c * 7 + i) % #PRODUCTS + 1]
    orders[i] = {product, i % 5 + 1, PRICES[product]}
  end
  chunks[c] = orders
end

local totals, lock, processed = par.dict(), par.lock(), par.value(0)

par.map(function(orders)
  for _, order in ipairs(orders) do
    local product, qty, price = order[1], order[2], order[3]
    lock:with(function() -- both keys change together, as one step
      totals:incr(product, qty)
      totals:incr("revenue", qty * price)
    end)
    processed:add(1)
  end
end, chunks, {workers = 4})

local units = 0
for _, product in ipairs(PRODUCTS) do
  print(("%-6s %6d units"):format(product, totals[product]))
  units = units + totals[product]
end
print(("orders %d, units %d, revenue %d"):format(processed:get(), units, totals.revenue))

-- The same totals computed in this process alone, to check the shared ones.
local revenue = 0
for _, orders in ipairs(chunks) do
  for _, order in ipairs(orders) do revenue = revenue + order[2] * order[3] end
end
assert(revenue == totals.revenue and processed:get() == 40000, "lost updates")
print("checked: no update was lost")
