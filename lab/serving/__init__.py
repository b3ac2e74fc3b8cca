"""Serving scenario, host side: drive a KServe v2 (or Paddle Serving pipeline) HTTP endpoint with
MLPerf LoadGen and turn LoadGen's logs into typed records.

Modules (each one job, all transport-agnostic so a runtime module can call them):
  protocol   request bodies and response parsing for the v2 and pipeline formats (pure)
  client     a keep-alive HTTP/1.1 client: one epoll thread, N connections, prepared requests
  endpoint   the serving runner's command line, its ready file, and a local process handle
  loadgen    run_scenario(url, model, inputs, settings) -> LoadResult; LoadGen summary parser
  sweep      sweep(...) -> SweepResult: the highest QPS that holds a latency bound, by bisection
  stats      the endpoint's statistics around a run -> EndpointSplit: where a request's time goes
"""
