(function () {
  "use strict";
  var node = document.getElementById("hwlab-data");
  var data = node ? JSON.parse(node.textContent) : { columns: [], rows: [], samples: {} };

  function cell(v) {
    if (v === null || v === undefined) { return ""; }
    var s = String(v);
    if (/^[=+\-@\t\r]/.test(s)) { s = "'" + s; }  /* no formula injection when opened in a spreadsheet */
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function resultsCsv() {
    var lines = [data.columns.join(",")];
    data.rows.forEach(function (r) { lines.push(r.map(cell).join(",")); });
    return lines.join("\n") + "\n";
  }
  function samplesCsv() {
    var lines = ["job_id,trial,idx,ms"];
    Object.keys(data.samples).forEach(function (job) {
      data.samples[job].forEach(function (trial, t) {
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
  window.hwlabCsv = { results: resultsCsv, samples: samplesCsv };
  var b1 = document.getElementById("dl-results");
  var b2 = document.getElementById("dl-samples");
  if (b1) { b1.addEventListener("click", function () { download(b1.dataset.name, resultsCsv()); }); }
  if (b2) { b2.addEventListener("click", function () { download(b2.dataset.name, samplesCsv()); }); }
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  });
})();
