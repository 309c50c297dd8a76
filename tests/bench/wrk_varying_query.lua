-- wrk request generator for test_cache_front.py: every request adds a query parameter of
-- its own (the app ignores unknown ones), so the app's per-worker response cache misses and
-- each answer is built anew.
local counter = 0

function request()
  counter = counter + 1
  return wrk.format(nil, wrk.path .. "&n=" .. counter)
end
