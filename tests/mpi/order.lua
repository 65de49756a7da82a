-- Results in order and exact on every rank; every rank computed some.
local items = {}
for i = 1, 500 do
  items[i] = {i, i + 0.1, "s" .. i, {nested = {i, -0.0, 2^53 + i, math.maxinteger - i}}, i % 2 == 0}
end
local out = par.map(function(it) return {it, par.rank()} end, items, {workers = 1})
local by = {}
for i = 1, #items do
  assert(par.encode(out[i][1]) == par.encode(items[i]), "item " .. i .. " differs")
  by[out[i][2]] = (by[out[i][2]] or 0) + 1
end
assert(#out == #items)
print(("rank %d ok %d ranks computed"):format(par.rank(), (by[0] and 1 or 0) + (by[1] and 1 or 0) + (by[2] and 1 or 0)))
-- a map inside a worker stays in that worker's rank
local nested = par.map(function(x) return par.map(function(y) return y * x end, {1, 2, 3}) end, {1, 2, 3, 4})
assert(nested[4][3] == 12 and #nested == 4)
