-- Every request asks for a different instant, so the per-worker response cache misses and
-- each request does the as-of lookup (and, on a store with many configurations, the row
-- fetch and rendering):  GET /fplane/<YYYYMMDDTHHMMSS>?actual_pos=0&full_fplane=1
-- wrk ... -s this.lua URL -- <first unix second> <span in seconds> <seed>
local first, span = 0, 1

function init(args)
  first = tonumber(args[1])
  span = tonumber(args[2])
  math.randomseed(tonumber(args[3]) or os.time())
end

function request()
  local t = first + math.random(0, span - 1)
  return wrk.format("GET", "/fplane/" .. os.date("!%Y%m%dT%H%M%S", t) .. "?actual_pos=0&full_fplane=1")
end
