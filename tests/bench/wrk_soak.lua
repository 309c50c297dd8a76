-- The soak's readers: mixed dates and formats, and every answer checked (tests/bench/test_soak.py).
--   wrk ... -s this.lua URL -- <first unix second> <seed> <IFU id of seat 031 in version 1> <base>
-- Requests: GET /fplane/<date>?actual_pos=0|1&full_fplane=0|1[&format=json], the date one of
-- latest / now / (empty) / fixed old dates / a random instant since <first> / an instant of the
-- last 90 s (the versions the writer is committing now).
-- Checks, per answer: HTTP 200; the X-FPlane-Version header is the version the body names
-- ("# version N:" in the text file, "version": N in JSON); and the body's rows are that
-- version's: the versions alternate between two configurations that differ in the IFU on
-- seat 031, so its IFU id must be the one of the version's parity. The counts are summed
-- over wrk's threads in soak_done() and printed as one SOAK_JSON line (test_soak.py
-- appends wrk_report.lua and a done() that calls both).

local first, ifu_first, ifu_base = 0, 0, 0
local threads = {}
local fixed = {"", "latest", "now", "current", "20180707", "2018-06-15", "20180707T02:27:24",
               "2018-07-01T00:00:00Z", "20180601"}

odd_statuses = ""   -- the first few HTTP statuses other than 200, for the report
checked, not_ok, version_mismatch, rows_mismatch, no_version, max_version, json_answers = 0, 0, 0, 0, 0, 0, 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  first = tonumber(args[1])
  math.randomseed(tonumber(args[2]) * 1000 + id)
  ifu_first = tonumber(args[3])
  ifu_base = tonumber(args[4])
end

function request()
  local r = math.random()
  local date
  if r < 0.45 then
    date = fixed[math.random(#fixed)]
  elseif r < 0.75 then
    date = os.date("!%Y%m%dT%H%M%S", os.time() - math.random(0, 90))
  else
    date = os.date("!%Y%m%dT%H%M%S", math.random(first, os.time()))
  end
  local query = "?actual_pos=" .. math.random(0, 1) .. "&full_fplane=" .. math.random(0, 1)
  if math.random() < 0.5 then
    query = query .. "&format=json"
  end
  return wrk.format("GET", "/fplane/" .. date .. query)
end

function response(status, headers, body)
  checked = checked + 1
  if status ~= 200 then
    not_ok = not_ok + 1
    if #odd_statuses < 200 then
      odd_statuses = odd_statuses .. status .. " " .. (headers["X-FPlane-Code"] or "-") .. "; "
    end
    return
  end
  local header = tonumber(headers["X-FPlane-Version"])
  local named = string.match(body, "^# fplane file[^\n]*\n# version (%d+):")
  local ifu
  if named then
    ifu = string.match(body, "\n#?031\t[^\t]*\t[^\t]*\t%d+\t%d+\t(%d+)")
  else
    named = string.match(body, '\n "version": (%d+),')
    ifu = string.match(body, '"ifuslot": "031",.-"ifuid": "(%d+)"')
    json_answers = json_answers + 1
  end
  named = tonumber(named)
  if header == nil or named == nil then
    no_version = no_version + 1
    return
  end
  if header ~= named then
    version_mismatch = version_mismatch + 1
  end
  if ifu ~= nil then
    local expected = ifu_base + named - 1
    if named == 1 then expected = ifu_first end
    if tonumber(ifu) ~= expected then
      rows_mismatch = rows_mismatch + 1
    end
  end
  if named > max_version then
    max_version = named
  end
end

function soak_done(summary, latency, requests)
  local totals = {checked = 0, not_ok = 0, version_mismatch = 0, rows_mismatch = 0,
                  no_version = 0, json_answers = 0}
  local highest = 0
  local odd = ""
  for _, thread in ipairs(threads) do
    odd = odd .. thread:get("odd_statuses")
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + thread:get(name)
    end
    highest = math.max(highest, thread:get("max_version"))
  end
  io.write(string.format(
    'SOAK_JSON {"checked": %d, "not_ok": %d, "version_mismatch": %d, "rows_mismatch": %d, ' ..
    '"no_version": %d, "json_answers": %d, "max_version": %d, "odd_statuses": "%s"}\n',
    totals.checked, totals.not_ok, totals.version_mismatch, totals.rows_mismatch,
    totals.no_version, totals.json_answers, highest, odd))
end
