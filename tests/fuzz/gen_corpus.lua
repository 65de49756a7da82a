-- tests/fuzz/gen_corpus.lua: writes the seed corpora of the fuzz targets.
--
--   lua5.4 tests/fuzz/gen_corpus.lua [dir]      (dir: tests/fuzz/corpus)
--
-- The seeds are committed; this script documents how the binary ones
-- are made and regenerates them all. Each target's directory is written
-- afresh except for files this script does not know, which stay.

local dir = arg[1] or "tests/fuzz/corpus"

local function write(target, name, bytes)
  os.execute(("mkdir -p '%s/%s'"):format(dir, target))
  local f = assert(io.open(("%s/%s/%s"):format(dir, target, name), "wb"))
  f:write(bytes)
  f:close()
end

-- ---------------------------------------------------------------------
-- fuzz_decode: messages, valid ones covering docs/wire.md and bad ones

local decode = {
  wire_example = '{"id":7,"score":2.0,"tags":["a",null,"c"],1.5:true,'
    .. '"ratio":0.3333333333333333}',
  typed_keys = '{1:"a",2.5:"b",true:"c",false:"d",-7:"e",Infinity:1,'
    .. '-Infinity:2,1e300:3,"k":4,-0:5,"":6,9223372036854775807:7}',
  float_words = '[Infinity,-Infinity,NaN,-0.0,-0,0.0]',
  floats = '[5e-324,1.7976931348623157e+308,2.2250738585072014e-308,1e-05,'
    .. '1e+17,0.0001,12345.678,0.1,1E5,1e+5,1.5E-3,2.5e-308,1e-07]',
  floats_slow = '[0.1000000000000000055511151231257827,'
    .. '2.4703282292062327e-324,2.4703282292062328e-324,1e999999,-1e999999,'
    .. '1e-999999,72057594037927933.0,9007199254740993.0,'
    .. '100000000000000000000000.0,4.9406564584124654e-324]',
  integers = '[-9223372036854775808,9223372036854775807,9223372036854775808,'
    .. '-9223372036854775809,123456789012345678901234567890,'
    .. '9999999999999999999,0,-1,1]',
  number_float = '-123.456e-7',
  number_big = '18446744073709551616',
  number_min = '-9223372036854775808',
  escapes = '["\\"\\\\\\/\\b\\f\\n\\r\\t","\\u0000\\u001f\\u00e9\\u20AC",'
    .. '"\\ud83d\\ude00","\\ud800","\\udc00","\\ud800\\u0041",'
    .. '"\\uDBFF\\uDFFF","\\ud800\\ud800"]',
  raw_bytes = '["caf\xc3\xa9","\xe2\x82\xac","\xff\xfe\x80","\x7f",'
    .. '"\xed\xa0\x80"]',
  holes = '[1,null,3,null,null,6]',
  object_nulls = '{"a":null,"b":1,"a":2,"b":null}',
  empties = '[{},[],[[]],{"":{}},""]',
  whitespace = ' \t\n\r[ 1 , { "a" : [ ] , 2 : true } ]\n ',
  scalar_true = 'true',
  scalar_null = 'null',
  scalar_string = '"a string"',
  bad_missing_comma = '[1 2]',
  bad_truncated = '{"a":[1,',
  bad_raw_newline = '"a\nb"',
  bad_leading_zero = '[01]',
  bad_plus = '+1',
  bad_dot = '[.5,5.]',
  bad_hex = '0x10',
  bad_trailing_comma = '[1,]',
  bad_key = '{"a"}',
  bad_nan_key = '{NaN:1}',
  bad_null_key = '{null:1}',
  bad_word = '[tru]',
  bad_unicode = '"\\u12"',
  bad_escape = '"\\x"',
  bad_unterminated = '"abc',
  bad_trailing = '[1]x',
  bad_empty = '',
  bad_exponent = '[1e,1e+]',
  bad_infinity = '-Inf',
  bad_garbage = '\x00\xff{[}]"\\',
  -- fixed in bfa2a3d: 3 bytes, so fuzz_decode puts the last element at
  -- LUA_MAXINTEGER, which overflowed the index after it
  regress_index_edge = '[1]',
  -- 7 bytes, 3 elements: also from one past the largest index, refused
  index_past_largest = '[1,2,3]',
}

-- Containers longer than the decoder's batch of 16, repeated keys across it.
local items, members = {}, {}
for i = 1, 40 do
  items[#items + 1] = ({ tostring(i), "null", '"s"', "1.5", "[]", "{}" })[i % 6 + 1]
  members[#members + 1] = ('"k%d":%d'):format(i % 25, i)
end
decode.long_array = "[" .. table.concat(items, ",") .. "]"
decode.long_object = "{" .. table.concat(members, ",") .. "}"

-- Nesting: 1000 levels is the limit, 1001 an error.
decode.nested_1000 = ("["):rep(1000) .. ("]"):rep(1000)
decode.nested_1001 = ("["):rep(1001) .. ("]"):rep(1001)
decode.nested_mixed = ('{"a":['):rep(499) .. "1" .. (']}'):rep(499)

-- A long string with an escape every few bytes.
decode.long_string = '"' .. ('ab\\n\\u00e9\\"'):rep(400) .. '"'

for name, text in pairs(decode) do
  write("fuzz_decode", name .. ".json", text)
end

-- ---------------------------------------------------------------------
-- fuzz_roundtrip: programs for build_value in fuzz_roundtrip.c.
-- A value is a kind byte (mod 16) and its operands:
--   0 nil b (b >= 248: function, light userdata, userdata, thread,
--     {[{}] = true}, t = {t}, t = {x = {t}}, the last table built)
--   1 bool b | 2 small int b | 3 special int b | 4 int64 (8 bytes)
--   5 special float b | 6 float bits (8) | 7 integral float b
--   8 decimal u16 b b | 9 string n bytes | 10 special string b
--   11 long string u16 k pattern(k) | 12 array n values | 13 sparse n (gap value)*
--   14 object n (key value)* | 15 chain sel [b] value style
-- A key is a kind byte (mod 8): 0 small int b | 1 special int b | 2 int64
--   3 special float b | 4 float bits | 5 bool b (b >= 252: function, light
--   userdata, table, thread) | 6 special string b | 7 string n bytes

local function u16(v) return string.char(v % 256, v // 256) end
local function u64(v) return string.pack("<i8", v) end
local function f64(v) return string.pack("<d", v) end

local function array(values)
  return string.char(12, #values) .. table.concat(values)
end

local function leaves(kind, from, to)
  local t = {}
  for i = from, to do t[#t + 1] = string.char(kind, i) end
  return array(t)
end

-- Long chains count only in inputs whose FNV-1a hash passes the test in
-- chain_budget_of: a padding byte after the value (which the builder
-- never reads) makes it pass.
local function deep(bytes)
  for pad = 0, 255 do
    local h, s = 2166136261, bytes .. string.char(pad)
    for i = 1, #s do h = ((h ~ s:byte(i)) * 16777619) & 0xffffffff end
    if (h >> 24) % 16 == 0 then return s end
  end
  error("no padding byte makes the input deep")
end

local roundtrip = {
  special_ints = leaves(3, 0, 17),
  special_floats_a = leaves(5, 0, 39),
  special_floats_b = leaves(5, 40, 57),
  special_strings = leaves(10, 0, 31),
  small_ints = leaves(2, 120, 140),
  integral_floats = leaves(7, 0, 20),
  raw_numbers = array({
    "\4" .. u64(math.mininteger), "\4" .. u64(-2), "\6" .. f64(-0.0),
    "\6" .. f64(1 / 3), "\6" .. f64(2 ^ -1074), "\6" .. f64(-(2 ^ -1022)),
    "\6" .. f64(1e300), "\6" .. f64(0.1 + 0.2),
    "\6" .. string.pack("<I8", 0xFFF8000000000001),
  }),
  decimals = array({
    "\8" .. u16(12345) .. "\40\0", "\8" .. u16(65535) .. "\1\0",
    "\8" .. u16(7) .. "\0\1", "\8" .. u16(3) .. "\63\1",
    "\8" .. u16(1) .. "\10\0",
  }),
  strings = array({
    "\9\5hello", "\9\4\0\1\2\3", "\9\3\255\"\\", "\9\0",
    "\11" .. u16(3000) .. "\2\"\n\255", "\11" .. u16(8191) .. "\0\0",
  }),
  booleans_nils = array({ "\1\1", "\1\0", "\0\0", "\0\7", "\1\1" }),
  unsendable_values = array({ "\2\1", "\0\248" }),
  unsendable_userdata = "\14\2\6\27\0\250\6\28\0\249",
  unsendable_thread = array({ array({ "\0\251" }) }),
  unsendable_table_key = "\14\1\6\1\0\252",
  unsendable_cycles = array({ "\0\253", "\0\254" }),
  unsendable_keys = "\14\4\5\252\2\1\5\253\2\2\5\254\2\3\5\255\2\4",
  unsendable_deep_path = "\15\30\0\248\1",
  shared_tables = array({ array({ "\2\1", "\2\2" }), "\0\255", "\0\255",
    array({ "\0\255", "\0\255" }) }),
  object_keys = "\14\9" .. "\0\5\2\1" .. "\1\3\10\3" .. "\2" .. u64(-7) .. "\10\5"
    .. "\3\1\1\0" .. "\4" .. f64(2.5) .. "\2\9" .. "\5\1\2\8" .. "\5\0\2\7"
    .. "\6\28\2\6" .. "\7\3a b\2\5",
  sparse = "\13\20" .. ("\1\2\3"):rep(20),
  sparse_edge = "\13\8" .. ("\0\2\2"):rep(4) .. ("\3\2\2"):rep(4),
  nested = array({ array({ array({ "\2\1" }), "\14\1\6\0\2\2" }), "\12\0" }),
  chain_short = "\15\9\2\5\2",
  chain_1000 = deep("\15\255\2\10\1\1"),
  chain_1001 = deep("\15\255\3\2\1\2"),
  chain_in_array = deep(array({ "\15\255\1\2\1\0", "\2\2" })),
}

for name, bytes in pairs(roundtrip) do
  write("fuzz_roundtrip", name .. ".bin", bytes)
end

-- ---------------------------------------------------------------------
-- fuzz_frames: a setting byte (low 3 bits: chunk sizes; high bit: append
-- ((setting >> 4) & 7) * 64 KiB of 0xFF filler) and then the stream.

local function frame(type, payload)
  return type .. string.pack("<I8", #payload) .. payload
end

local function header(type, length)
  return type .. string.pack("<I8", length)
end

local three = frame("R", "hello") .. frame("E", "") .. frame("X", "abc")
local frames = {
  three_whole = "\7" .. three,
  three_bytewise = "\0" .. three,
  three_by_3 = "\1" .. three,
  three_by_9 = "\2" .. three,
  three_varied = "\6" .. three,
  empty_stream = "\0",
  empty_frames = "\5" .. ("\0"):rep(90),
  payload_1000 = "\4" .. frame("P", ("x"):rep(1000)) .. frame("Q", "y"),
  truncated_header = "\0" .. three .. "R\5\0\0",
  truncated_payload = "\3" .. frame("R", "hello"):sub(1, 12),
  at_frame_max = "\2" .. header("B", 16 << 30) .. "abc",
  over_frame_max = "\2" .. header("B", (16 << 30) + 1) .. "abc",
  all_ones_length = "\0" .. header("B", -1),
  large_in_filler = "\240" .. header("L", 300000) .. "start",
  large_just_short = "\166" .. header("L", 2 * 65536 + 10) .. ("z"):rep(5),
  large_exact = "\151" .. header("L", 65536 + 5) .. "12345",
  -- fixed in bfa2a3d: 9 + this length wrapped to 0, "header not here yet"
  regress_length_wraps = "\0" .. header("R", -9),
}

for name, bytes in pairs(frames) do
  write("fuzz_frames", name .. ".bin", bytes)
end
