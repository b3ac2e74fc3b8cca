(function () {
  "use strict";
  /* The raw data is base64(gzip(JSON)) in <script id="hwlab-data">; unpacked only here, in the page. */
  var data = (function () {
    var node = document.getElementById("hwlab-data");
    if (!node) { return Promise.resolve({ columns: [], rows: [], samples: {} }); }
    if (typeof DecompressionStream === "undefined") {
      return Promise.reject(new Error("this browser cannot unpack the embedded data (no DecompressionStream)"));
    }
    var bin = atob(node.textContent.trim());
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text().then(JSON.parse);
  })();
  data.catch(function () {});  /* reported when a download is asked for, not as a console error */

  function cell(v) {
    if (v === null || v === undefined) { return ""; }
    var s = String(v);
    if (/^[=+\-@\t\r]/.test(s) && isNaN(Number(s))) { s = "'" + s; }  /* no formula injection in spreadsheets */
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function resultsCsv(d) {
    var lines = [d.columns.join(",")];
    d.rows.forEach(function (r) { lines.push(r.map(cell).join(",")); });
    return lines.join("\n") + "\n";
  }
  function samplesCsv(d) {
    var lines = ["job_id,trial,idx,ms"];
    Object.keys(d.samples).forEach(function (job) {
      d.samples[job].forEach(function (trial, t) {
        trial.forEach(function (ms, i) { lines.push(cell(job) + "," + t + "," + i + "," + ms); });
      });
    });
    return lines.join("\n") + "\n";
  }
  function download(name, text) {
    var blob = new Blob([text], { type: "text/csv;charset=utf-8" });
    var a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 0);
  }
  function wire(id, make) {
    var b = document.getElementById(id);
    if (!b) { return; }
    b.addEventListener("click", function () {
      data.then(function (d) { download(b.dataset.name, make(d)); }, function (e) {
        document.getElementById("dl-status").textContent = " " + e.message;
      });
    });
  }
  window.hwlabCsv = {
    results: function () { return data.then(resultsCsv); },
    samples: function () { return data.then(samplesCsv); }
  };
  wire("dl-results", resultsCsv);
  wire("dl-samples", samplesCsv);
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  });
})();
