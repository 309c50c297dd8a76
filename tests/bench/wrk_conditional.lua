-- wrk request generator for test_cache_front.py: every request carries If-None-Match
-- (args[1], the ETag of the answer), as nginx's revalidation of an expired copy does.
local etag

function init(args)
  etag = args[1]
end

function request()
  return wrk.format(nil, nil, {["If-None-Match"] = etag})
end
