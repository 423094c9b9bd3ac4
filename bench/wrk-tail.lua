-- Prints the tail wrk's --latency table leaves out, in a form compare-wasmtime.sh parses:
--   wrk-tail: p99 <us> p99.9 <us> max <us> errors <n>
-- wrk's latency histogram counts microseconds.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("wrk-tail: p99 %d p99.9 %d max %d errors %d\n",
    latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect + e.read + e.write + e.status + e.timeout))
end
