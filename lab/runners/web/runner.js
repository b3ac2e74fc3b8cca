/* hwlab Paddle.js runner: one trial of one model in this page, same protocol as pi_runner.py.
 *
 * Why a page: Paddle.js runs in a browser; the host drives this page over the DevTools protocol
 * (lab/web/cdp.py) and reads window.__hwlab.doc, a hwlab.runner/1 document (docs/architecture.md).
 * Parameters come from the query string (see params()). Measured, in order:
 *   load_ms   new Runner(...) + await runner.init(): fetch model.json + chunks, build the graph and
 *             the WebGL programs (needPreheat:false, so no inference hides in here).
 *   first_ms  the first await runner.predictWithFeed(input): upload + execute + read back.
 *   warm-up   at least `warmup` runs AND at least `warmup_seconds`.
 *   steady    until min_iters, min_seconds and the target relative 95% CI of the median are all
 *             met (order-statistic CI, as pi_runner.py), else max_seconds (converged=false);
 *             max_iters adds a count limit. Each sample is performance.now() around one
 *             predictWithFeed (it reads the output back, so the GPU work is included).
 * The input is inputs.bin (raw little-endian float32), made by the host with its seeded
 * generator, so the outputs recorded here can be compared with Paddle Inference's. It may hold
 * several samples back to back (the job's reference set): the timed loop feeds sample 0.
 *   check     after the loop (reference_samples > 0, the job's last trial): each of the first
 *             reference_samples samples once, outputs in doc.outputs_check (compared on the host,
 *             lab/runtimes/checks.py); never inside the timed loop.
 * Any error ends in ok=false with a one-line error (also written with console.error).
 */
(function () {
  "use strict";
  var SCHEMA = "hwlab.runner/1", RUNNER = "paddlejs_runner", RUNNER_VERSION = "1.0.0";
  var MAX_OUTPUT_VALUES = 1 << 20;
  var state = window.__hwlab = {done: false, doc: null, phase: "start"};

  function params() {
    var q = new URLSearchParams(window.location.search);
    function num(name, dflt) {
      var v = q.get(name);
      if (v === null || v === "") return dflt;
      var x = Number(v);
      if (!isFinite(x) || x < 0) throw new Error("bad query parameter " + name + "=" + v);
      return x;
    }
    return {
      backend: q.get("backend") || "webgl",
      model: q.get("model") || "model/",
      inputs: q.get("inputs") || "inputs.bin",
      input: q.get("input") || "",
      post: q.get("post") === "1",
      seed: num("seed", 0),
      protocol: {
        warmup: num("warmup", 10), warmup_seconds: num("warmup_seconds", 1),
        min_iters: num("min_iters", 50), min_seconds: num("min_seconds", 2),
        max_seconds: num("max_seconds", 20), target_rel_ci: num("target_rel_ci", 0.02),
        max_iters: num("max_iters", 0) || null,
        reference_samples: num("reference_samples", 0)
      }
    };
  }

  function parseInput(text) {
    var parts = text.split(":");
    if (parts.length !== 3 || !parts[0]) throw new Error("bad input " + JSON.stringify(text) + ": expected name:1x3x224x224:float32");
    var shape = parts[1].toLowerCase().split("x").map(Number);
    if (!shape.length || shape.some(function (d) { return !(d > 0) || Math.floor(d) !== d; })) throw new Error("bad input shape " + parts[1]);
    if (parts[2] !== "float32") throw new Error("Paddle.js feeds float32 only, not " + parts[2]);
    return {name: parts[0], shape: shape, dtype: parts[2]};
  }

  // ---------------------------------------------------------- order-statistic CI of the median
  var logFact = [0];
  function lnFact(n) {
    for (var i = logFact.length; i <= n; i++) logFact.push(logFact[i - 1] + Math.log(i));
    return logFact[n];
  }
  function medianCiIndices(n) {  // same rule as pi_runner.median_ci_indices at 95%
    var alphaHalf = 0.025, cdf = 0, logNorm = n * Math.log(2);
    var k = Math.max(0, Math.floor(n / 2 - 3 * Math.sqrt(n)));
    while (k <= Math.floor(n / 2)) {
      var pk = Math.exp(lnFact(n) - lnFact(k) - lnFact(n - k) - logNorm);
      if (cdf + pk > alphaHalf) break;
      cdf += pk; k += 1;
    }
    if (k >= 1) { var lo = k - 1, hi = n - 1 - lo; if (lo < hi) return [lo, hi]; }
    return null;
  }
  function medianCi(samples) {
    var s = samples.slice().sort(function (a, b) { return a - b; });
    var n = s.length;
    if (!n) return [null, null, null, null];
    var med = n % 2 ? s[(n - 1) / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    var idx = medianCiIndices(n);
    if (!idx) return [med, null, null, null];
    var lo = s[idx[0]], hi = s[idx[1]];
    return [med, lo, hi, med > 0 ? (hi - lo) / 2 / med : null];
  }
  function checkEvery(n) { return Math.max(10, Math.floor(n / 50)); }
  // Exposed so that the tests check them against pi_runner.py's (one protocol, two languages).
  state.medianCi = medianCi;
  state.medianCiIndices = medianCiIndices;
  state.checkEvery = checkEvery;

  // ----------------------------------------------------------------------------- environment
  function webglInfo() {
    var c = document.createElement("canvas");
    var gl = c.getContext("webgl2") || c.getContext("webgl");
    if (!gl) return {renderer: null, vendor: null, version: null, source: null, note: "no WebGL context"};
    var ext = gl.getExtension("WEBGL_debug_renderer_info");
    var info = {
      renderer: ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER),
      vendor: ext ? gl.getParameter(ext.UNMASKED_VENDOR_WEBGL) : gl.getParameter(gl.VENDOR),
      version: gl.getParameter(gl.VERSION),
      source: ext ? "WEBGL_debug_renderer_info" : "gl.RENDERER (masked: no WEBGL_debug_renderer_info)"
    };
    var lose = gl.getExtension("WEBGL_lose_context");
    if (lose) lose.loseContext();
    return info;
  }
  var heapPeak = null;
  function sampleHeap() {
    var m = performance.memory;
    if (m && typeof m.usedJSHeapSize === "number") heapPeak = Math.max(heapPeak || 0, m.usedJSHeapSize);
  }
  function utcNow() { return new Date().toISOString(); }
  function now() { return performance.now(); }

  function newDoc(p) {
    return {
      schema: SCHEMA, runner: RUNNER, runner_version: RUNNER_VERSION, ok: false, error: null,
      command: [window.location.href],
      model: {path: p.model, format: "paddlejs", sha256: null},
      config: {backend: p.backend, device: "webgl", precision: "fp32", threads: null, batch: null,
               inputs: [], seed: p.seed, paddlejs: {}},
      protocol: p.protocol,
      env: {user_agent: navigator.userAgent, hardware_concurrency: navigator.hardwareConcurrency || null,
            device_memory_gb: navigator.deviceMemory || null, webgl: null},
      timings: {load_ms: null, first_ms: null, warmup_iters: 0, warmup_ms_total: null, samples_ms: [],
                steady_seconds: null, converged: false, stop_reason: null, rel_ci: null,
                clock: "performance.now() around await runner.predictWithFeed() (upload + execute + read back)"},
      memory: {peak_rss_mb: null, rss_note: "a page cannot see its browser process RSS",
               js_heap_peak_mb: null, js_heap_source: null, gpu_mem_mb: null,
               gpu_mem_note: "WebGL exposes no GPU memory figure"},
      outputs: [], started_at: utcNow(), finished_at: null
    };
  }

  async function fetchInput(url, spec) {
    var resp = await fetch(url, {cache: "no-store"});
    if (!resp.ok) throw new Error("input " + url + ": HTTP " + resp.status);
    var buf = await resp.arrayBuffer();
    var want = spec.shape.reduce(function (a, b) { return a * b; }, 1);
    if (!buf.byteLength || buf.byteLength % (want * 4) !== 0) throw new Error("input " + url + ": " + buf.byteLength + " bytes, want a multiple of " + (want * 4) + " for " + spec.shape.join("x") + " float32");
    var all = new Float32Array(buf), samples = [];
    for (var i = 0; i < all.length / want; i++) samples.push(all.slice(i * want, (i + 1) * want));
    return samples;  // one Float32Array per sample
  }

  function outputRecord(out) {
    var values = Array.prototype.slice.call(out || []);
    var rec = {name: "output0", shape: [values.length], dtype: "float32", count: values.length};
    if (values.length <= MAX_OUTPUT_VALUES) rec.values = values; else rec.values_note = "more than " + MAX_OUTPUT_VALUES + " values: not kept";
    if (values.some(function (v) { return !isFinite(v); })) rec.non_finite = true;
    return rec;
  }

  // The reference pass (after timing): one run per sample, outputs for the host to compare.
  async function referencePass(runner, spec, samples, wanted) {
    var n = Math.min(wanted, samples.length), outputs = [], t0 = now();
    for (var i = 0; i < n; i++) {
      var out = await runner.predictWithFeed([{data: samples[i], shape: spec.shape, name: "image", persistable: true}]);
      outputs.push([outputRecord(out)]);
    }
    return {schema: "hwlab.outputs_check/1", n: n, requested: wanted, available: samples.length,
            outputs: outputs, seconds: (now() - t0) / 1000};
  }

  async function measure(p, doc) {
    if (p.backend !== "webgl") throw new Error("backend " + p.backend + " is not served by this page (webgl only)");
    if (!window.paddlejs || !window.paddlejs.core || !window.paddlejs.webglBackend) throw new Error("Paddle.js bundles missing (vendor/paddlejs-core.js, vendor/paddlejs-backend-webgl.js)");
    var spec = parseInput(p.input);
    doc.config.inputs = [spec];
    doc.config.batch = spec.shape[0];
    doc.env.webgl = webglInfo();
    var inputs = await fetchInput(p.inputs, spec), data = inputs[0];
    var t = doc.timings, pr = p.protocol, core = window.paddlejs.core;

    state.phase = "load";
    var t0 = now();
    var feedShape = spec.shape.length === 4 ? {fc: spec.shape[1], fh: spec.shape[2], fw: spec.shape[3]}
      : {fh: spec.shape[spec.shape.length - 2] || 1, fw: spec.shape[spec.shape.length - 1]};
    var runner = new core.Runner({modelPath: p.model, feedShape: feedShape, needPreheat: false});
    await runner.init();
    t.load_ms = now() - t0;
    sampleHeap();
    doc.config.paddlejs = {feed_shape: feedShape, env_backend: core.env ? core.env.get("backend") : null};

    // An array of {data, shape, name}: a bare Float32Array is taken for ImageData-like
    // {width, height, data} by predictWithFeed and feeds nothing (all-zero outputs).
    var feed = [{data: data, shape: spec.shape, name: "image", persistable: true}];
    function run() { return runner.predictWithFeed(feed); }
    state.phase = "first";
    t0 = now();
    var out = await run();
    t.first_ms = now() - t0;
    sampleHeap();
    doc.outputs = [outputRecord(out)];

    state.phase = "warmup";
    var wIters = 0, wTotal = 0, wStart = now();
    while (wIters < pr.warmup || (now() - wStart) / 1000 < pr.warmup_seconds) {
      t0 = now(); await run(); wTotal += now() - t0; wIters += 1; t.warmup_iters = wIters;
    }
    t.warmup_ms_total = wTotal;
    sampleHeap();

    state.phase = "steady";
    var samples = t.samples_ms, sStart = now(), nextCheck = checkEvery(0), converged = false, reason = "max_seconds", rel;
    while (true) {
      t0 = now(); await run(); samples.push(now() - t0);
      var n = samples.length, el = (now() - sStart) / 1000;
      if (pr.max_iters && n >= pr.max_iters) {
        rel = medianCi(samples)[3];
        if (rel !== null && rel <= pr.target_rel_ci && el >= pr.min_seconds) { converged = true; reason = "converged"; } else { reason = "max_iters"; }
        break;
      }
      if (n >= nextCheck || el >= pr.max_seconds) {
        nextCheck = n + checkEvery(n);
        sampleHeap();
        if (n >= pr.min_iters && el >= pr.min_seconds) {
          rel = medianCi(samples)[3];
          if (rel !== null && rel <= pr.target_rel_ci) { converged = true; reason = "converged"; break; }
        }
        t.steady_seconds = el;
        if (el >= pr.max_seconds) break;
      }
    }
    t.steady_seconds = (now() - sStart) / 1000;
    t.converged = converged;
    t.stop_reason = reason;
    t.rel_ci = medianCi(samples)[3];
    sampleHeap();
    if (pr.reference_samples > 0) {
      state.phase = "check";
      doc.outputs_check = await referencePass(runner, spec, inputs, pr.reference_samples);
      sampleHeap();
    }
  }

  async function main() {
    var doc = null, p = null;
    try {
      p = params();
      doc = newDoc(p);
      state.doc = doc;
      await measure(p, doc);
      doc.ok = true;
    } catch (e) {
      if (!doc) doc = newDoc({model: null, backend: null, seed: null, protocol: null});
      doc.ok = false;
      doc.error = "page: " + String((e && e.message) || e).split("\n")[0].slice(0, 500) + " (phase " + state.phase + ")";
      console.error("hwlab runner failed: " + doc.error);
    }
    if (heapPeak !== null) {
      doc.memory.js_heap_peak_mb = heapPeak / 1048576;
      doc.memory.js_heap_source = "performance.memory.usedJSHeapSize, max of samples at phase ends";
    }
    doc.finished_at = utcNow();
    document.getElementById("status").textContent = doc.ok ? "done" : doc.error;
    // POST before done: the host closes the tab once done is seen.
    try {
      if (p && p.post) await fetch("result", {method: "POST", body: JSON.stringify(doc), headers: {"Content-Type": "application/json"}});
    } catch (e2) { console.error("hwlab runner: could not POST the result: " + e2); }
    state.doc = doc;
    state.done = true;
  }
  window.addEventListener("load", main);
})();
