-- gather = "root": only rank 0 gets the results.
local items = {}
for i = 1, 50 do items[i] = i end
local out = par.map(function(x) return x * x end, items, {gather = "root"})
print(par.rank(), out and #out, out and out[50])
-- an item's error still reaches every rank
local ok, e = pcall(par.map, function(x) if x == 33 then error("g", 0) end return x end, items, {gather = "root"})
print(par.rank(), ok, e.index, e.message)
