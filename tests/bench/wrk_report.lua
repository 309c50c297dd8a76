-- wrk reporting: one machine-readable line after the run, read by harness.py.
-- (Appended to wrk_random_instants.lua too: wrk takes a single script.)
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "latency_mean_us": %.1f, ' ..
    '"latency_p50_us": %d, "latency_p99_us": %d, "latency_max_us": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, summary.bytes, latency.mean,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
