-- Rank 1 calls par.map with other items: every rank raises kind "mismatch" naming it.
local items = {1, 2, 3, 4}
if par.rank() == 1 then items[3] = 30 end
local ok, e = pcall(par.map, function(x) return x end, items)
print(par.rank(), ok, e.kind, e.rank)
-- keys in any order hash the same
local t = {}
if par.rank() == 1 then for i = 100, 1, -1 do t["k" .. i] = i end else for i = 1, 100 do t["k" .. i] = i end end
print(par.rank(), pcall(par.map, function(x) return 1 end, {t, t}))
