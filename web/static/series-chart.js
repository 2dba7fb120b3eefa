/* The series page's chart: reads the page's <script type="application/json" id="series-data"> block and draws
   it with uPlot (vendored under /static/uplot/). A static file, so the page needs no inline script (the
   Content-Security-Policy allows scripts from 'self' only). Without JavaScript the page shows the server's SVG
   (<noscript>) and the points table. */
(function () {
  "use strict";
  var host = document.getElementById("series-chart");
  var block = document.getElementById("series-data");
  if (!host || !block || typeof uPlot === "undefined") return;
  var d = JSON.parse(block.textContent);
  var unit = d.unit || "";
  // What the shaded band is: the baseline that judged each run (series page), or the levels around a change.
  var band = d.band_label || "baseline band";

  function fmt(v) {
    if (v == null || !isFinite(v)) return "—";
    var a = Math.abs(v);
    if (a >= 1e5 || (a > 0 && a < 1e-3)) return v.toPrecision(3);
    return v.toLocaleString(undefined, { maximumSignificantDigits: 4 });
  }
  function valueOf(u, v) { return v == null ? "—" : fmt(v) + " " + unit; }

  var data = [d.x, d.main, d.pr, d.band_high, d.band_low];
  var series = [
    { label: "time (UTC)", value: function (u, t) { return t == null ? "—" : new Date(t * 1000).toISOString().slice(0, 16).replace("T", " "); } },
    { label: d.hardware + " main", stroke: d.palette[0], width: 2, spanGaps: true, points: { size: 5 }, value: valueOf },
    { label: "presubmit / PR", stroke: d.palette[1], width: 0, paths: function () { return null; },
      points: { show: true, size: 8, fill: d.palette[1], stroke: d.palette[1] }, value: valueOf },
    { label: band + " high", stroke: "rgba(31,119,180,0.25)", width: 1, spanGaps: true, value: valueOf },
    { label: band + " low", stroke: "rgba(31,119,180,0.25)", width: 1, spanGaps: true, value: valueOf },
  ];
  d.overlay.forEach(function (o, i) {
    data.push(o.values);
    series.push({ label: o.label, stroke: d.palette[(i + 2) % d.palette.length], width: 1.5, dash: [6, 3],
                  spanGaps: true, points: { size: 4 }, value: valueOf });
  });

  function drawMarks(u) {
    var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
    ctx.save();
    ctx.font = Math.round(11 * devicePixelRatio) + "px sans-serif";
    d.marks.forEach(function (m, i) {
      var x = Math.round(u.valToPos(m.t, "x", true));
      ctx.strokeStyle = m.kind === "change" ? "#d62728" : "#9467bd";
      ctx.fillStyle = ctx.strokeStyle;
      ctx.lineWidth = devicePixelRatio;
      ctx.setLineDash(m.kind === "change" ? [] : [4 * devicePixelRatio, 3 * devicePixelRatio]);
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + h); ctx.stroke();
      ctx.fillText(m.label, x + 3 * devicePixelRatio, top + (12 + 13 * (i % 3)) * devicePixelRatio);
    });
    ctx.restore();
  }

  function size() {
    var w = Math.max(280, host.clientWidth || 600);
    return { width: w, height: w < 500 ? 240 : 320 };
  }
  var opts = Object.assign(size(), {
    series: series,
    bands: [{ series: [3, 4], fill: "rgba(31,119,180,0.12)" }],
    axes: [{}, { label: unit, size: 60, values: function (u, ticks) { return ticks.map(fmt); } }],
    scales: { x: { time: true } },
    legend: { show: true, live: true },
    cursor: { focus: { prox: 16 } },
    hooks: { draw: [drawMarks] },
  });
  var plot = new uPlot(opts, data, host);
  host.dataset.ready = "1";

  // Keyboard: arrows step the cursor through the runs (the legend shows that run's values); Enter opens it.
  var idx = d.x.length - 1;
  function show(i) {
    idx = Math.max(0, Math.min(d.x.length - 1, i));
    var v = d.main[idx] != null ? d.main[idx] : (d.pr[idx] != null ? d.pr[idx] : null);
    var top = v == null ? plot.bbox.height / devicePixelRatio / 2 : plot.valToPos(v, "y");
    plot.setCursor({ left: plot.valToPos(d.x[idx], "x"), top: top });
  }
  host.addEventListener("keydown", function (e) {
    if (e.key === "ArrowRight") { show(idx + 1); e.preventDefault(); }
    else if (e.key === "ArrowLeft") { show(idx - 1); e.preventDefault(); }
    else if (e.key === "Home") { show(0); e.preventDefault(); }
    else if (e.key === "End") { show(d.x.length - 1); e.preventDefault(); }
    else if (e.key === "Enter" && d.runs[idx]) { window.location.href = "/runs/" + d.runs[idx].run; }
  });
  host.addEventListener("focus", function () { show(idx); });
  // Touch: a tap moves the cursor there (uPlot follows mouse events; a touch gives it one).
  host.addEventListener("touchstart", function (e) {
    var r = plot.over.getBoundingClientRect(), t = e.touches[0];
    plot.setCursor({ left: t.clientX - r.left, top: t.clientY - r.top });
  }, { passive: true });
  window.addEventListener("resize", function () { plot.setSize(size()); });
})();
