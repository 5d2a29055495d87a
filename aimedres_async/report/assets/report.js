/* aimedres-async run report: hand-written SVG from the JSON in #data. No library, no network. */
(function () {
  "use strict";
  var T_START = performance.now();
  var D = JSON.parse(document.getElementById("data").textContent);
  var app = document.getElementById("app");
  var JOBS = D.jobs;

  // ------------------------------------------------------------------ formatting
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    }).replace(/[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]/g, function (c) {
      // a bidi control shown, never obeyed: it would draw a name reversed
      return "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0");
    });
  }
  function fmtDur(s) {
    if (s == null || !isFinite(s)) return "";
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 60) return s.toFixed(1) + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + "m " + String(Math.round(s % 60)).padStart(2, "0") + "s";
    var h = Math.floor(m / 60);
    return h + "h " + String(m % 60).padStart(2, "0") + "m";
  }
  function fmtBytes(n) {
    if (!n) return "";
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(n < 10 ? 2 : 1) : n) + " " + u[i];
  }
  function fmtNum(v) {
    if (typeof v !== "number") return v == null ? "" : String(v);
    if (Number.isInteger(v)) return String(v);
    var a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
    return String(+v.toPrecision(4));
  }
  function clock(rel) { return new Date((D.t0 + rel) * 1000).toISOString().slice(11, 19); }
  function dateTime(rel) { return new Date((D.t0 + rel) * 1000).toISOString().slice(0, 19).replace("T", " ") + " UTC"; }
  function shellJoin(argv) {
    if (!argv) return "";
    return argv.map(function (a) { return /^[\w@%+=:,./-]+$/.test(a) ? a : "'" + a.replace(/'/g, "'\\''") + "'"; }).join(" ");
  }
  function niceStep(range, n) {
    var raw = range / Math.max(1, n), p = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
  }
  function ticks(lo, hi, n) {
    if (!(hi > lo)) return [lo];
    var st = niceStep(hi - lo, n), out = [];
    for (var v = Math.ceil(lo / st) * st; v <= hi + st * 1e-9; v += st) out.push(+v.toPrecision(12));
    return out;
  }
  var TSTEPS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
  function timeTicks(lo, hi, n) {
    var want = (hi - lo) / Math.max(1, n), st = TSTEPS[TSTEPS.length - 1];
    for (var i = 0; i < TSTEPS.length; i++) if (TSTEPS[i] >= want) { st = TSTEPS[i]; break; }
    var out = [];
    for (var k = Math.ceil(lo / st - 1e-9); k * st <= hi + 1e-9; k++) out.push(+(k * st).toFixed(3));
    return out;
  }
  function tfmt(t) {
    if (t === 0) return "0";
    if (t < 60) return "+" + (Number.isInteger(t) ? t : t.toFixed(1)) + "s";
    if (t < 3600) return "+" + (t % 60 ? (t / 60).toFixed(1) : t / 60) + "m";
    return "+" + (t % 3600 ? (t / 3600).toFixed(1) : t / 3600) + "h";
  }

  // an x-axis label centred on its tick, but kept inside [0, W]: a label cut at the edge, or one
  // that pokes out of its card and makes a phone's page scroll sideways, is moved in
  function fit(text, px) {  // a label cut to about px pixels of 12-px text
    var n = Math.max(4, Math.floor(px / 6.6));
    return text.length > n ? text.slice(0, n - 1) + "…" : text;
  }
  function tickText(x, y, text, W) {
    var half = String(text).length * 3.2, anchor = "middle";
    if (x + half > W) { x = W; anchor = "end"; } else if (x - half < 0) { x = 0; anchor = "start"; }
    return '<text x="' + x.toFixed(1) + '" y="' + y + '" text-anchor="' + anchor + '">' + text + "</text>";
  }

  // ------------------------------------------------------------------ colours and names
  var OC = { succeeded: "#2f9e62", failed: "#d94848", timed_out: "#e8912d", stalled: "#c7a224", oom: "#8b4fc7",
    cancelled: "#9aa3ae", spawn_failed: "#7d2a2a", running: "#3d7fd9", skipped: "#c3c9d1", queued: "#c3c9d1",
    backoff: "#e8912d", unknown: "#b8bec7" };
  var ON = { succeeded: "succeeded", failed: "failed", timed_out: "timed out", stalled: "stalled", oom: "out of memory",
    cancelled: "cancelled", spawn_failed: "could not start", running: "running", skipped: "skipped (resumed)",
    queued: "queued", backoff: "waiting to retry", unknown: "unknown" };
  // Series (one colour per job or fold) never take an outcome's colour: no red, orange, yellow, green,
  // purple or grey here, so a red bar always means a failure and never "the best job".
  var PAL = ["#1f4e9c", "#17a2b8", "#c2409a", "#2b2f3a", "#8fb3ff", "#0b6e6e", "#e377c2", "#7a1f5c", "#7ec8d8"];
  var LIMIT = "#1d2330";  // the worker limit: a bound, not an outcome
  function jobColor(i) { return PAL[i % PAL.length]; }
  function stChip(s) { return '<span class="st" style="background:' + (OC[s] || OC.unknown) + '">' + esc(ON[s] || s) + "</span>"; }
  var LOWER = /(loss|err|rmse|mse|mae|mape|perplex|wer|cer|time|dur|latency)/i;
  function lowerBetter(k) { return LOWER.test(k); }
  // settings and counts a script echoes with its metrics: in the table, but not compared as results
  var SETTING = /^(n_|num_)|^(epochs?|folds?|steps?|seed|batch(_size)?|workers|attempts?|model)$|_size$/i;

  // ------------------------------------------------------------------ tooltips
  var TIPS = [], CHARTS = [];
  function tip(fn) { TIPS.push(fn); return TIPS.length - 1; }
  var tipEl = document.createElement("div");
  tipEl.id = "tip";
  document.body.appendChild(tipEl);
  function showTip(html, ev) {
    tipEl.innerHTML = html;
    tipEl.style.display = "block";
    var w = tipEl.offsetWidth, h = tipEl.offsetHeight;
    var x = ev.clientX + 14, y = ev.clientY + 14;
    if (x + w > window.innerWidth - 8) x = ev.clientX - w - 14;
    if (y + h > window.innerHeight - 8) y = Math.max(8, ev.clientY - h - 14);
    tipEl.style.left = x + "px";
    tipEl.style.top = y + "px";
  }
  function hideTip() { tipEl.style.display = "none"; }
  document.addEventListener("mousemove", function (ev) {
    var t = ev.target, el = t.closest ? t.closest("rect.att,[data-tip],[data-chart]") : null;
    if (!el) { hideTip(); return; }
    if (el.classList.contains("att")) { var jj = JOBS[+el.getAttribute("data-open")]; showTip(attemptTip(jj, jj.att[+el.getAttribute("data-att")]), ev); return; }
    if (el.hasAttribute("data-tip")) { showTip(TIPS[+el.getAttribute("data-tip")](), ev); return; }
    var html = chartHover(CHARTS[+el.getAttribute("data-chart")], el, ev);
    if (html) showTip(html, ev); else hideTip();
  });
  document.addEventListener("mouseleave", hideTip);

  // ------------------------------------------------------------------ line chart
  // o: {w, h, title, series: [{name, color, x: [], y: []}], xfmt, yfmt, step, area, limit: [[x, y]...], xmax}
  function lineChart(o) {
    var W = o.w, H = o.h, m = { l: o.ml != null ? o.ml : 46, r: o.mr != null ? o.mr : 10, t: o.title ? 20 : 8, b: 20 };
    var xlo = Infinity, xhi = -Infinity, ylo = Infinity, yhi = -Infinity;
    o.series.forEach(function (s) {
      for (var i = 0; i < s.x.length; i++) {
        var y = s.y[i];
        if (y == null || (o.logy && !(y > 0))) continue;
        if (s.x[i] < xlo) xlo = s.x[i];
        if (s.x[i] > xhi) xhi = s.x[i];
        if (y < ylo) ylo = y;
        if (y > yhi) yhi = y;
      }
    });
    if (o.limit) o.limit.forEach(function (p) { if (p[1] > yhi) yhi = p[1]; });
    var LOG = !!o.logy && ylo > 0;  // a log axis: values spanning orders of magnitude (loss of different tasks)
    var tr = LOG ? function (v) { return v > 0 ? Math.log10(v) : null; } : function (v) { return v; };
    if (LOG) { ylo = Math.log10(ylo); yhi = Math.log10(yhi); }
    if (o.xmin != null) xlo = o.xmin;
    if (o.xmax != null) xhi = o.xmax;
    if (o.y0) ylo = Math.min(0, ylo);
    if (!isFinite(xlo)) return '<svg width="' + W + '" height="' + H + '"></svg>';
    if (xhi === xlo) { xhi = xlo + 1; xlo = xlo - (o.step ? 0 : 1); }
    if (yhi === ylo) { var d = Math.abs(yhi) * 0.1 || 1; yhi += d; ylo -= o.y0 ? 0 : d; }
    else if (!o.y0) { var pad = (yhi - ylo) * 0.06; yhi += pad; ylo -= pad; }
    else yhi += (yhi - ylo) * 0.06;
    var pw = W - m.l - m.r, ph = H - m.t - m.b;
    function sx(v) { return m.l + (v - xlo) / (xhi - xlo) * pw; }
    function sy0(v) { return m.t + ph - (v - ylo) / (yhi - ylo) * ph; }
    function sy(v) { return sy0(tr(v)); }
    var yf = o.yfmt || fmtNum, xf = o.xfmt || fmtNum;
    var out = [];
    out.push('<svg class="chart" width="' + W + '" height="' + H + '" viewBox="0 0 ' + W + " " + H + '" data-chart="' + CHARTS.length + '">');
    if (o.title) {  // from the plot's left edge, or the chart's when it is long; cut to the width
      var tx = o.title.length * 6.6 > W - m.l ? 0 : m.l;
      out.push('<text class="title" x="' + tx + '" y="13">' + esc(fit(o.title, W - tx)) + "</text>");
    }
    out.push('<g class="grid">');
    var yt = ticks(ylo, yhi, Math.max(2, Math.round(ph / 34)));  // in axis units (log10 of the value on a log axis)
    if (LOG) yt = yt.filter(function (v) { return Math.abs(v - Math.round(v)) < 1e-9; }).concat(yt.length < 2 ? [ylo, yhi] : []);
    yt.forEach(function (v) {
      out.push('<line x1="' + m.l + '" x2="' + (W - m.r) + '" y1="' + sy0(v).toFixed(1) + '" y2="' + sy0(v).toFixed(1) + '"/>');
    });
    out.push("</g>");
    yt.forEach(function (v) {
      out.push('<text x="' + (m.l - 5) + '" y="' + (sy0(v) + 3.5).toFixed(1) + '" text-anchor="end">' + esc(yf(LOG ? +Math.pow(10, v).toPrecision(2) : v)) + "</text>");
    });
    if (LOG) out.push('<text x="' + (W - m.r) + '" y="' + (m.t - 6) + '" text-anchor="end">log scale</text>');
    var xt = o.xticks ? o.xticks(xlo, xhi, Math.max(2, Math.round(pw / 70))) : ticks(xlo, xhi, Math.max(2, Math.round(pw / 60)));
    xt.forEach(function (v) {
      if (v < xlo - 1e-9 || v > xhi + 1e-9) return;
      out.push(tickText(sx(v), H - 5, esc(xf(v)), W));
    });
    out.push('<g class="axis"><line x1="' + m.l + '" x2="' + (W - m.r) + '" y1="' + (m.t + ph) + '" y2="' + (m.t + ph) + '"/></g>');
    o.series.forEach(function (s) {
      var dd = "", pen = false, lastY = null;
      for (var i = 0; i < s.x.length; i++) {
        var y = s.y[i];
        if (y == null || (LOG && !(y > 0))) { pen = false; continue; }
        var X = sx(s.x[i]).toFixed(1), Y = sy(y).toFixed(1);
        if (o.step && pen) dd += "L" + X + " " + lastY;
        dd += (pen ? "L" : "M") + X + " " + Y;
        pen = true;
        lastY = Y;
      }
      if (o.step && pen && o.xmax != null) dd += "L" + sx(xhi).toFixed(1) + " " + lastY;
      if (o.area && dd) {
        var first = dd.slice(1).split(" ")[0];
        out.push('<path d="' + dd + "L" + (o.xmax != null ? sx(xhi) : sx(s.x[s.x.length - 1])).toFixed(1) + " " + sy(Math.max(ylo, 0)).toFixed(1) +
          "L" + first + " " + sy(Math.max(ylo, 0)).toFixed(1) + 'Z" fill="' + s.color + '" fill-opacity="0.16" stroke="none"/>');
      }
      out.push('<path class="series" d="' + dd + '" stroke="' + s.color + '"' + (s.width ? ' stroke-width="' + s.width + '"' : "") +
        (s.dash ? ' stroke-dasharray="5 3"' : "") + "/>");
      if (s.x.length <= 12 && !o.step) {
        for (var k = 0; k < s.x.length; k++) {
          if (s.y[k] != null && !(LOG && !(s.y[k] > 0))) out.push('<circle cx="' + sx(s.x[k]).toFixed(1) + '" cy="' + sy(s.y[k]).toFixed(1) + '" r="2.2" fill="' + s.color + '"/>');
        }
      }
    });
    if (o.limit && o.limit.length) {
      var ld = "";
      o.limit.forEach(function (p, i) {
        var X = sx(Math.max(p[0], xlo)).toFixed(1), Y = sy(p[1]).toFixed(1);
        ld += (i ? "L" + X + " " + sy(o.limit[i - 1][1]).toFixed(1) + "L" : "M") + X + " " + Y;
      });
      ld += "L" + sx(xhi).toFixed(1) + " " + sy(o.limit[o.limit.length - 1][1]).toFixed(1);
      out.push('<path class="limit" d="' + ld + '" fill="none" stroke="' + LIMIT + '" stroke-width="1.3" stroke-dasharray="5 4"/>');
      var lastLim = o.limit[o.limit.length - 1][1];
      out.push('<text x="' + (W - m.r) + '" y="' + (sy(lastLim) - 4).toFixed(1) + '" text-anchor="end" style="fill:' + LIMIT + '">worker limit ' + lastLim + "</text>");
    }
    out.push('<line class="guide" x1="' + m.l + '" x2="' + m.l + '" y1="' + m.t + '" y2="' + (m.t + ph) + '"/>');
    out.push("</svg>");
    CHARTS.push({ o: o, m: m, W: W, pw: pw, xlo: xlo, xhi: xhi, sx: sx });
    return out.join("");
  }
  function nearest(xs, v) {
    var lo = 0, hi = xs.length - 1;
    if (hi < 0) return -1;
    if (xs[hi] >= xs[0]) {
      while (hi - lo > 1) { var mid = (lo + hi) >> 1; if (xs[mid] < v) lo = mid; else hi = mid; }
      return Math.abs(xs[lo] - v) <= Math.abs(xs[hi] - v) ? lo : hi;
    }
    var best = 0;
    for (var i = 1; i < xs.length; i++) if (Math.abs(xs[i] - v) < Math.abs(xs[best] - v)) best = i;
    return best;
  }
  function chartHover(c, svg, ev) {
    if (!c) return "";
    if (c.hover) return c.hover(svg, ev);
    var r = svg.getBoundingClientRect(), px = (ev.clientX - r.left) * c.W / r.width;
    if (px < c.m.l - 4 || px > c.m.l + c.pw + 4) return "";
    var xv = c.xlo + (px - c.m.l) / c.pw * (c.xhi - c.xlo);
    var o = c.o, rows = [], gx = null;
    o.series.forEach(function (s) {
      if (o.step) {  // a step function: the last point at or before xv
        var j = -1;
        for (var i = 0; i < s.x.length && s.x[i] <= xv; i++) j = i;
        if (j >= 0) rows.push([s, s.y[j], xv]);
        gx = xv;
        return;
      }
      var k = nearest(s.x, xv);
      if (k >= 0 && s.y[k] != null) { rows.push([s, s.y[k], s.x[k]]); if (gx == null || Math.abs(s.x[k] - xv) < Math.abs(gx - xv)) gx = s.x[k]; }
    });
    if (gx == null) return "";
    var g = svg.querySelector(".guide");
    if (g) { g.setAttribute("x1", c.sx(gx)); g.setAttribute("x2", c.sx(gx)); }
    rows = rows.filter(function (r) { return r[2] === gx || o.step; });
    rows.sort(function (a, b) { return b[1] - a[1]; });
    var more = rows.length > 12 ? rows.length - 12 : 0;
    var xf = o.xfmt || fmtNum, yf = o.yfmt || fmtNum;
    var html = "<b>" + esc(o.xname || "x") + " " + esc(xf(gx)) + "</b>";
    rows.slice(0, 12).forEach(function (r) {
      html += '<br><span class="sw" style="background:' + r[0].color + '"></span> ' + esc(r[0].name) + ": <b>" + esc(yf(r[1])) + "</b>";
    });
    if (more) html += '<br><span class="k">… ' + more + " more</span>";
    return html;
  }

  // ------------------------------------------------------------------ bar chart
  // items: [{label, value, color, tipHtml}], horizontal with labels for few items, columns for many
  function barChart(o) {
    var items = o.items.filter(function (it) { return typeof it.value === "number"; });
    if (!items.length) return "";
    var vmin = Math.min.apply(null, items.map(function (i) { return i.value; }));
    var vmax = Math.max.apply(null, items.map(function (i) { return i.value; }));
    var lo = Math.min(0, vmin), hi = Math.max(0, vmax);
    // scores close together (0.979 and 0.969) would be bars of the same length from 0: the axis
    // starts near the smallest value instead, and says so
    var base = 0;
    if (o.zoom && items.length > 1 && vmin > 0 && vmax > vmin && vmax - vmin < 0.5 * vmax) {
      var zs = niceStep(vmax - vmin, 4);
      base = Math.max(0, +(Math.floor((vmin - (vmax - vmin) * 0.5) / zs) * zs).toPrecision(12));
      lo = base;
    }
    if (hi === lo) hi = lo + 1;
    var f = o.fmt || fmtNum, out = [];
    if (items.length <= 40) {
      var lw = Math.min(170, Math.max(50, o.w * 0.36), 14 + 6.6 * Math.max.apply(null, items.map(function (i) { return Math.min(26, String(i.label).length); })));
      var rh = 19, W = o.w, H = items.length * rh + (o.title ? 22 : 4) + (base ? 14 : 0), top = o.title ? 20 : 2, pw = W - lw - 62;
      var sx = function (v) { return lw + (v - lo) / (hi - lo) * pw; };
      out.push('<svg class="bars' + (base ? " zoomed" : "") + '" width="' + W + '" height="' + H + '" viewBox="0 0 ' + W + " " + H + '">');
      if (o.title) out.push('<text class="title" x="0" y="13">' + esc(fit(o.title, W)) + "</text>");
      if (base) {  // a broken-axis mark at the bars' start and where the axis starts
        var yb = top + items.length * rh;
        out.push('<path class="axisbreak" d="M' + (lw - 3) + " " + (top + 2) + "V" + (yb + 2) + "M" + (lw - 6) + " " + (yb + 6) + "l6 -5M" + (lw - 6) + " " + (yb + 10) +
          'l6 -5" stroke="#5d6675" fill="none"/><text class="zoomnote" x="' + (lw - 6) + '" y="' + (yb + 12) + '" text-anchor="start" dx="8">axis starts at ' +
          esc(f(base)) + " (zoomed: not from 0)</text>");
      }
      items.forEach(function (it, i) {
        var y = top + i * rh, x0 = sx(Math.max(lo, Math.min(0, it.value))), x1 = sx(Math.max(lo, it.value));
        out.push('<g data-tip="' + tip(function () { return it.tipHtml || "<b>" + esc(it.label) + "</b>: " + esc(f(it.value)); }) + '">');
        out.push('<text x="' + (lw - 6) + '" y="' + (y + 13) + '" text-anchor="end" style="fill:#1d2330">' + esc(String(it.label).slice(0, 26)) + "</text>");
        out.push('<rect x="' + x0.toFixed(1) + '" y="' + (y + 3) + '" width="' + Math.max(1, x1 - x0).toFixed(1) + '" height="' + (rh - 6) + '" rx="2" fill="' + it.color + '"/>');
        out.push('<text x="' + (x1 + 5).toFixed(1) + '" y="' + (y + 13) + '">' + esc(f(it.value)) + "</text></g>");
      });
      out.push("</svg>");
      return out.join("");
    }
    // many items: sorted columns drawn as one path per colour, hover by position (no element per bar)
    var W2 = o.w, H2 = 170, m = { l: 50, r: 6, t: o.title ? 22 : 6, b: 8 }, pw2 = W2 - m.l - m.r, ph = H2 - m.t - m.b;
    var bw = pw2 / items.length;
    var sy = function (v) { return m.t + ph - (v - lo) / (hi - lo) * ph; };
    out.push('<svg class="bars chart' + (base ? " zoomed" : "") + '" width="' + W2 + '" height="' + H2 + '" viewBox="0 0 ' + W2 + " " + H2 + '" data-chart="' + CHARTS.length + '">');
    if (o.title) out.push('<text class="title" x="0" y="13">' + esc(fit(o.title + (base ? " · axis from " + f(base) + " (zoomed)" : ""), W2)) + "</text>");
    ticks(lo, hi, 4).forEach(function (v) {
      out.push('<text x="' + (m.l - 5) + '" y="' + (sy(v) + 3.5).toFixed(1) + '" text-anchor="end">' + esc(f(v)) + "</text>");
      out.push('<line x1="' + m.l + '" x2="' + (W2 - m.r) + '" y1="' + sy(v).toFixed(1) + '" y2="' + sy(v).toFixed(1) + '" stroke="#eceef2"/>');
    });
    var byColor = {};
    items.forEach(function (it, i) {
      var y0 = sy(Math.max(lo, it.value)), y1 = sy(Math.max(lo, Math.min(0, it.value))), x = m.l + i * bw;
      byColor[it.color] = (byColor[it.color] || "") + "M" + x.toFixed(2) + " " + y0.toFixed(1) + "h" + Math.max(0.6, bw - (bw > 3 ? 1 : 0)).toFixed(2) +
        "V" + Math.max(y0 + 0.5, y1).toFixed(1) + "H" + x.toFixed(2) + "Z";
    });
    Object.keys(byColor).forEach(function (c) { out.push('<path d="' + byColor[c] + '" fill="' + c + '"/>'); });
    out.push("</svg>");
    CHARTS.push({ hover: function (svg, ev) {
      var r = svg.getBoundingClientRect(), px = (ev.clientX - r.left) * W2 / r.width, i = Math.floor((px - m.l) / bw);
      if (i < 0 || i >= items.length) return "";
      var it = items[i];
      return it.tipHtml || "<b>" + esc(it.label) + "</b>: " + esc(f(it.value)) + ' <span class="k">(' + (i + 1) + " of " + items.length + ")</span>";
    } });
    return out.join("");
  }

  // ------------------------------------------------------------------ derived data
  var JI = {};
  JOBS.forEach(function (j, i) { JI[j.id] = i; j.i = i; });
  function kindOf(j) {
    var last = j.att[j.att.length - 1];
    if (j.status !== "succeeded" && last && last.k === "oom") return "oom";
    return j.status;
  }
  var counts = {};
  JOBS.forEach(function (j) { var k = kindOf(j); counts[k] = (counts[k] || 0) + 1; });
  var run0 = D.runs[0] || {};
  var totalAttempts = 0;
  JOBS.forEach(function (j) { totalAttempts += j.att.length; });

  // ------------------------------------------------------------------ sections
  var parts = [];
  function header() {
    var h = [];
    var name = D.since ? (D.tickets ? "Tickets " : "Runs ") + esc(D.title) : "Run <code>" + esc(D.title) + "</code>";
    h.push("<header><h1>" + name + "</h1>");
    var sub = [];
    sub.push("started " + dateTime(0));
    sub.push("span " + fmtDur(D.span));
    if (!D.since && run0.max_workers) sub.push(run0.max_workers + " worker" + (run0.max_workers > 1 ? "s" : ""));
    if (run0.host) sub.push("on " + esc(run0.host));
    if (run0.git && run0.git.commit) sub.push("commit <code>" + esc(run0.git.commit.slice(0, 10)) + "</code>" + (run0.git.dirty ? " (dirty)" : ""));
    if (D.runs.length > 1) sub.push(D.runs.length + " runs");
    h.push('<div class="sub">' + sub.join(" · ") + "</div>");
    h.push('<div class="chips">');
    h.push('<span class="chip"><b>' + JOBS.length + "</b> job" + (JOBS.length === 1 ? "" : "s") + "</span>");
    h.push('<span class="chip"><b>' + totalAttempts + "</b> attempt" + (totalAttempts === 1 ? "" : "s") + "</span>");
    Object.keys(OC).forEach(function (k) {
      if (counts[k]) h.push('<span class="chip"><span class="dot" style="background:' + OC[k] + '"></span><b>' + counts[k] + "</b> " + esc(ON[k]) + "</span>");
    });
    Object.keys(counts).forEach(function (k) { if (!OC[k]) h.push('<span class="chip"><b>' + counts[k] + "</b> " + esc(k) + "</span>"); });
    if (!D.since && run0.exit_code != null) h.push('<span class="chip">exit code <b>' + esc(run0.exit_code) + "</b></span>");
    h.push("</div>");
    if (D.in_progress) {
      h.push('<div class="banner warn"><b>In progress.</b> ' + (D.since ? "A run in this window has" : "This run has") +
        " no <code>run.finished</code> record yet: it is still running, or its supervisor was killed. Showing what was recorded up to " +
        dateTime(D.span) + "; bars still open end there.</div>");
    }
    D.runs.forEach(function (r) {
      if (r.stopped_by) h.push('<div class="banner info">Run <code>' + esc(r.run) + "</code> was stopped by <b>" + esc(r.stopped_by) + "</b>: what had not finished is marked cancelled.</div>");
    });
    D.notes.forEach(function (n) { h.push('<div class="banner info">' + esc(n) + "</div>"); });
    var failed = JOBS.filter(function (j) { return ["succeeded", "skipped", "running", "queued", "backoff"].indexOf(j.status) < 0; });
    if (failed.length) {
      h.push('<ul class="fails">');
      failed.slice(0, 12).forEach(function (j) {
        var a = j.att[j.att.length - 1] || {};
        var why = a.err || (a.tail && a.tail.length ? a.tail[a.tail.length - 1] : "") || "";
        h.push('<li data-open="' + j.i + '"><span class="dot" style="background:' + OC[kindOf(j)] + '"></span> <b>' + esc(j.id) + "</b> " +
          esc(ON[kindOf(j)] || j.status) + (j.optional ? " (optional)" : "") + (a.fail ? " · " + esc(a.fail) : "") +
          (a.code != null ? " · exit " + a.code : a.sig ? " · " + esc(a.sig) : "") + ' <span class="why mono">' + esc(why.slice(0, 160)) + "</span></li>");
      });
      if (failed.length > 12) h.push('<li class="muted">… and ' + (failed.length - 12) + " more (see the table)</li>");
      h.push("</ul>");
    }
    var compared = JOBS.filter(function (j) { return j.curves; }).length >= 2;
    h.push('<nav><a href="#results">Final metrics</a>' + (D.leaderboard ? '<a href="#leaderboard">Leaderboard</a>' : "") + (compared ? '<a href="#compare">Curves compared</a>' : "") + '<a href="#timeline">Timeline</a>' +
      '<a href="#curves">Curves per job</a><a href="#memory">Memory</a><a href="#provenance">Provenance</a></nav></header>');
    return h.join("");
  }

  // ---- final metrics. Jobs are grouped by the metrics they report: a classifier's accuracy/auc and a
  // regressor's rmse/r2 in one table would be mostly empty cells, and their "loss" on one axis would
  // compare an MSE with a log loss. Each group gets its own table and its own bar chart per metric
  // (each with its own axis). Jobs that did not succeed are listed apart and never ranked: the last
  // object they printed is a progress record, not a result.
  var FINAL_OK = { succeeded: 1, skipped: 1 };
  function numKeys(j) { return Object.keys(j.final).filter(function (k) { return typeof j.final[k] === "number"; }); }
  function metricKeys(j) { return numKeys(j).filter(function (k) { return !SETTING.test(k); }); }
  // a name whose meaning depends on the task (an MSE or a log loss): it does not make two jobs alike
  var GENERIC = /^(val_|valid_|train_|test_)?(loss|score|objective|cost)$/i;
  function makeGroups(jobs, keysOf) {  // [{keys, jobs}]: jobs whose specific metrics mostly overlap
    var bySig = {}, list = [];
    jobs.forEach(function (j) {
      var ks = keysOf(j), sig = ks.slice().sort().join("\u0000");  // the keys in the order the job printed them
      if (!bySig[sig]) { bySig[sig] = { keys: ks, jobs: [] }; list.push(bySig[sig]); }
      bySig[sig].jobs.push(j);
    });
    var specific = function (ks) { return ks.filter(function (k) { return !GENERIC.test(k); }); };
    // a set of keys joins a group when at least half of the smaller set's specific metrics are the
    // group's (digits' accuracy and macro_f1 beside breast_cancer's accuracy, roc_auc and f1), or
    // both have none (only a loss); a classifier's and a regressor's share none
    var alike = function (a, b) {
      var sa = specific(a), sb = specific(b);
      if (!sa.length || !sb.length) return !sa.length && !sb.length;
      var common = sa.filter(function (k) { return sb.indexOf(k) >= 0; }).length;
      return common * 2 >= Math.min(sa.length, sb.length);
    };
    list.sort(function (a, b) { return b.jobs.length - a.jobs.length || b.keys.length - a.keys.length; });
    var out = [];
    list.forEach(function (g) {
      var home = null;
      if (g.keys.length) out.forEach(function (h) { if (!home && alike(h.core, g.keys)) home = h; });
      else home = out[0] || null;  // jobs that printed no metrics: with the biggest group
      if (home) {
        home.jobs = home.jobs.concat(g.jobs);
        g.keys.forEach(function (k) { if (home.keys.indexOf(k) < 0) home.keys.push(k); });
      } else out.push({ core: g.keys, keys: g.keys.slice(), jobs: g.jobs });
    });
    out.forEach(function (g) { g.jobs.sort(function (a, b) { return a.i - b.i; }); });
    out.sort(function (a, b) { return a.jobs[0].i - b.jobs[0].i; });
    return out;
  }
  function groupTable(jobs, ranked) {  // the table's columns: metrics that vary first, then settings
    var seen = {}, order = [];
    jobs.forEach(function (j) {
      numKeys(j).forEach(function (k) {
        if (!(k in seen)) { seen[k] = { n: 0, vals: {} }; order.push(k); }
        seen[k].n++;
        seen[k].vals[j.final[k]] = 1;
      });
    });
    var varying = order.filter(function (k) { return !SETTING.test(k) && Object.keys(seen[k].vals).length > 1; });
    var rest = order.filter(function (k) { return varying.indexOf(k) < 0 && !SETTING.test(k); })  // metrics, then settings
      .concat(order.filter(function (k) { return SETTING.test(k); }));
    var shared = ranked ? varying.filter(function (k) { return seen[k].n >= 2; }) : [];
    var best = {};
    shared.forEach(function (k) {
      var vs = jobs.map(function (j) { return j.final[k]; }).filter(function (v) { return typeof v === "number"; });
      best[k] = lowerBetter(k) ? Math.min.apply(null, vs) : Math.max.apply(null, vs);
    });
    return { jobs: jobs, cols: ranked ? varying.concat(rest).slice(0, 14) : [], shared: shared, best: best, ranked: ranked,
      sort: { key: null, dir: 1 }, all: false };
  }
  var GROUPS = makeGroups(JOBS.filter(function (j) { return FINAL_OK[j.status]; }), metricKeys);
  var TABLES = GROUPS.map(function (g) { var t = groupTable(g.jobs, true); t.keys = g.keys; return t; });
  var unranked = JOBS.filter(function (j) { return !FINAL_OK[j.status]; });
  if (unranked.length) TABLES.push(groupTable(unranked, false));
  TABLES.forEach(function (t, ti) { t.jobs.forEach(function (j) { j.tbl = ti; }); });
  var TABLE_ROWS = 100;
  function tableRows(t) {
    var rows = t.jobs.slice(), sortState = t.sort;
    if (sortState.key) {
      var k = sortState.key;
      var val = function (j) {
        if (k === "#id") return j.id;
        if (k === "#status") return j.status;
        if (k === "#att") return j.att.length;
        if (k === "#dur") return j.att.reduce(function (s, a) { return s + (a.dur || 0); }, 0);
        if (k === "#peak") return j.peak;
        return j.final[k];
      };
      rows.sort(function (a, b) {
        var x = val(a), y = val(b);
        if (x == null && y == null) return 0;
        if (x == null) return 1;
        if (y == null) return -1;
        return (x < y ? -1 : x > y ? 1 : 0) * sortState.dir;
      });
    }
    var total = rows.length;
    if (!t.all && rows.length > TABLE_ROWS) rows = rows.slice(0, TABLE_ROWS);
    var more = total > rows.length ? '<tr><td colspan="99"><a href="#" class="tall">show all ' + total + " rows</a> (" + rows.length + " shown; sorting uses all)</td></tr>" : "";
    return rows.map(function (j) {
      var dur = j.att.reduce(function (s, a) { return s + (a.dur || 0); }, 0);
      // the metrics right after the job and its status: on a phone they are what shows before scrolling
      var tds = '<td><a href="#" data-open="' + j.i + '">' + esc(j.id) + "</a>" + (j.optional ? ' <span class="muted">(optional)</span>' : "") + "</td>" +
        "<td>" + stChip(kindOf(j)) + "</td>";
      t.cols.forEach(function (k) {
        var v = j.final[k];
        tds += '<td class="num' + (v != null && v === t.best[k] ? " best" : "") + '">' + esc(fmtNum(v)) + "</td>";
      });
      if (!t.ranked) tds += '<td class="muted last">' + (j.last ? Object.keys(j.last).map(function (k2) { return esc(k2) + "=" + esc(fmtNum(j.last[k2])); }).join(" ") : "") + "</td>";
      tds += '<td class="num">' + j.att.length + '</td><td class="num">' + fmtDur(dur) + '</td><td class="num">' + fmtBytes(j.peak) + "</td>";
      return "<tr>" + tds + "</tr>";
    }).join("") + more;
  }
  function tableHead(t) {
    var cols = [["#id", "job", ""], ["#status", "status", ""]];
    t.cols.forEach(function (k) { cols.push([k, k, "num"]); });
    if (!t.ranked) cols.push(["", "last object printed (not a final result)", "last"]);
    cols.push(["#att", "attempts", "num"], ["#dur", "time", "num"], ["#peak", "peak RSS", "num"]);
    return cols.map(function (c) {
      if (!c[0]) return '<th class="' + c[2] + '">' + esc(c[1]) + "</th>";
      var arrow = t.sort.key === c[0] ? ' <span class="arrow">' + (t.sort.dir > 0 ? "▲" : "▼") + "</span>" : "";
      var hint = t.shared.indexOf(c[0]) >= 0 ? ' title="' + (lowerBetter(c[0]) ? "lower is better (bold: best)" : "higher is better (bold: best)") + '"' : "";
      return '<th class="sort ' + c[2] + '" data-sort="' + esc(c[0]) + '"' + hint + ">" + esc(c[1]) + arrow + "</th>";
    }).join("");
  }
  function results() {
    var h = ['<section id="results"><h2>Final metrics</h2>'];
    h.push('<p class="sub">The last JSON object each job that succeeded printed. Click a column to sort; bold is the best value of a metric shared by several jobs (lower is better for loss/error-like names).' +
      (GROUPS.length > 1 ? " Jobs that report different metrics (a classifier and a regressor, say) are in separate tables, each metric charted on its own axis." : "") + "</p>");
    TABLES.forEach(function (t, ti) {
      if (!t.ranked) {
        h.push('<h3 class="group" id="unranked">Not ranked: ' + t.jobs.length + " job" + (t.jobs.length === 1 ? "" : "s") + " that did not succeed" + (D.in_progress ? " or are not finished" : "") + "</h3>" +
          '<p class="sub">The last object a failed, cancelled or unfinished job printed is a progress record, not its result.</p>');
      } else if (TABLES.length > 1) {
        h.push('<h3 class="group">' + t.jobs.length + " job" + (t.jobs.length === 1 ? "" : "s") + (t.keys.length ? " reporting " + esc(t.keys.slice(0, 6).join(", ")) + (t.keys.length > 6 ? ", …" : "") : " with no final metrics") + "</h3>");
      }
      h.push('<div class="tablewrap"><table class="ftable' + (t.ranked ? "" : " unranked") + '" id="ftable-' + ti + '" data-t="' + ti + '"><thead><tr>' + tableHead(t) + "</tr></thead><tbody>" + tableRows(t) + "</tbody></table></div>");
      if (t.shared.length) {
        h.push('<div class="grid wide" style="margin-top:12px">');
        t.shared.slice(0, 12).forEach(function (k) {
          var items = t.jobs.filter(function (j) { return typeof j.final[k] === "number"; }).map(function (j) {
            return { label: j.id, value: j.final[k], color: jobColor(j.i) };
          });
          items.sort(function (a, b) { return lowerBetter(k) ? a.value - b.value : b.value - a.value; });
          h.push("<div>" + barChart({ items: items, w: Math.min(420, contentWidth), zoom: true, title: k + (lowerBetter(k) ? " (lower is better)" : "") }) + "</div>");
        });
        h.push("</div>");
      }
    });
    if (!TABLES.length) h.push('<p class="empty">No job has finished.</p>');
    h.push("</section>");
    return h.join("");
  }
  function bindTable() {
    var tables = document.querySelectorAll("table.ftable");
    Array.prototype.forEach.call(tables, function (el) {
      var t = TABLES[+el.getAttribute("data-t")];
      el.querySelector("tbody").addEventListener("click", function (ev) {
        if (!ev.target.classList.contains("tall")) return;
        ev.preventDefault();
        t.all = true;
        el.querySelector("tbody").innerHTML = tableRows(t);
      });
      el.querySelector("thead").addEventListener("click", function (ev) {
        var th = ev.target.closest("th.sort");
        if (!th) return;
        var k = th.getAttribute("data-sort");
        if (t.sort.key === k) t.sort.dir = -t.sort.dir;
        else { t.sort.key = k; t.sort.dir = (k.charAt(0) !== "#" && !lowerBetter(k)) || k === "#dur" || k === "#peak" ? -1 : 1; }
        el.querySelector("thead tr").innerHTML = tableHead(t);
        el.querySelector("tbody").innerHTML = tableRows(t);
      });
    });
  }

  // ---- leaderboard: job groups (base id and parameters), seeds folded into mean ± std
  function fmtPM(st) { return st ? fmtNum(st.mean) + (st.std == null ? "" : " ± " + fmtNum(st.std)) : "—"; }
  function paramText(v) { return typeof v === "string" ? v : JSON.stringify(v); }
  function leaderboardSection() {
    var L = D.leaderboard;
    if (!L) return "";
    var metric = L.sort ? L.sort.replace(/:(desc|asc)$/, "") : null;
    var h = ['<section id="leaderboard"><h2>Leaderboard</h2>'];
    h.push('<p class="sub">Jobs grouped by base id and parameters (the seed left out): each metric is the mean ± sample std over the group\'s jobs that succeeded (n); failed jobs are not counted. Ranked by ' +
      esc(L.sort || "nothing (no final metric)") + "; the same as <code>aimedres-async leaderboard</code>.</p>");
    h.push('<div class="tablewrap"><table id="lbtable"><thead><tr><th class="num">rank</th><th>job</th><th class="num">n</th>');
    L.metrics.forEach(function (k) { h.push('<th class="num">' + esc(k) + "</th>"); });
    h.push("</tr></thead><tbody>");
    L.rows.forEach(function (r) {
      var n = r.n === r.jobs ? String(r.n) : r.n + " of " + r.jobs;
      h.push('<tr><td class="num">' + (r.rank == null ? "—" : r.rank) + "</td><td>" + esc(r.label) + '</td><td class="num">' + n + "</td>");
      L.metrics.forEach(function (k) { h.push('<td class="num">' + esc(fmtPM(r.metrics[k])) + "</td>"); });
      h.push("</tr>");
    });
    h.push("</tbody></table></div>");
    var swept = Object.keys(L.swept);
    if (metric && swept.length) {
      h.push('<div class="grid wide" style="margin-top:16px">');
      swept.forEach(function (p) { h.push('<div class="lbplot" data-param="' + esc(p) + '">' + sweepChart(L, p, metric) + "</div>"); });
      h.push("</div>");
    }
    h.push("</section>");
    return h.join("");
  }
  // the metric's mean (error bar: ± std) at each value of parameter p; a line per combination of the rest
  function sweepChart(L, p, metric) {
    var xs = L.swept[p].slice();
    if (xs.every(function (v) { return typeof v === "number"; })) xs.sort(function (a, b) { return a - b; });
    var xi = {};
    xs.forEach(function (v, i) { xi[paramText(v)] = i; });
    var series = {}, order = [];
    L.rows.forEach(function (r) {
      var st = r.metrics[metric];
      if (!st || !(paramText(r.params[p]) in xi)) return;
      var rest = Object.keys(r.params).filter(function (k) { return k !== p; }).map(function (k) { return k + "=" + paramText(r.params[k]); });
      var name = r.job + (rest.length ? " " + rest.join(",") : "");
      if (!series[name]) { series[name] = []; order.push(name); }
      series[name].push({ i: xi[paramText(r.params[p])], st: st, r: r });
    });
    var left = order.length > 12 ? order.length - 12 : 0;
    order = order.slice(0, 12);  // the lines of the best-ranked groups: rows come best first
    var W = Math.min(420, contentWidth), H = 220, m = { l: 50, r: 12, t: 22, b: 34 }, pw = W - m.l - m.r, ph = H - m.t - m.b;
    var lo = Infinity, hi = -Infinity;
    order.forEach(function (name) {
      series[name].forEach(function (pt) { var e = pt.st.std || 0; lo = Math.min(lo, pt.st.mean - e); hi = Math.max(hi, pt.st.mean + e); });
    });
    if (!isFinite(lo)) return "";
    if (hi === lo) { var d = Math.abs(hi) * 0.1 || 1; hi += d; lo -= d; } else { var pad = (hi - lo) * 0.08; hi += pad; lo -= pad; }
    var band = pw / xs.length, ns = order.length, shift = Math.min(8, band / (ns + 1));
    function sx(i, si) { return m.l + (i + 0.5) * band + (si - (ns - 1) / 2) * shift; }
    function sy(v) { return m.t + ph - (v - lo) / (hi - lo) * ph; }
    var out = ['<svg class="sweep" width="' + W + '" height="' + H + '" viewBox="0 0 ' + W + " " + H + '">'];
    out.push('<text class="title" x="0" y="13">' + esc(fit(metric + " by " + p + (lowerBetter(metric) ? " (lower is better)" : ""), W)) + "</text>");
    out.push('<g class="grid">');
    var yt = ticks(lo, hi, 5);
    yt.forEach(function (v) { out.push('<line x1="' + m.l + '" x2="' + (W - m.r) + '" y1="' + sy(v).toFixed(1) + '" y2="' + sy(v).toFixed(1) + '"/>'); });
    out.push("</g>");
    yt.forEach(function (v) { out.push('<text x="' + (m.l - 5) + '" y="' + (sy(v) + 3.5).toFixed(1) + '" text-anchor="end">' + esc(fmtNum(v)) + "</text>"); });
    var every = Math.max(1, Math.ceil(xs.length * 48 / pw));  // labels at least 48 px apart
    xs.forEach(function (v, i) {
      if (i % every === 0) out.push('<text x="' + sx(i, (ns - 1) / 2).toFixed(1) + '" y="' + (H - 18) + '" text-anchor="middle">' + esc(paramText(v).slice(0, 14)) + "</text>");
    });
    out.push('<text x="' + (m.l + pw / 2).toFixed(1) + '" y="' + (H - 3) + '" text-anchor="middle">' + esc(p) + "</text>");
    out.push('<g class="axis"><line x1="' + m.l + '" x2="' + (W - m.r) + '" y1="' + (m.t + ph) + '" y2="' + (m.t + ph) + '"/></g>');
    order.forEach(function (name, si) {
      var pts = series[name].slice().sort(function (a, b) { return a.i - b.i; }), c = PAL[si % PAL.length];
      if (pts.length > 1) out.push('<path class="series" stroke="' + c + '" d="' + pts.map(function (pt, k) { return (k ? "L" : "M") + sx(pt.i, si).toFixed(1) + " " + sy(pt.st.mean).toFixed(1); }).join("") + '"/>');
      pts.forEach(function (pt) {
        var x = sx(pt.i, si).toFixed(1), e = pt.st.std || 0;
        out.push('<g class="pt" data-tip="' + tip(function () {
          return "<b>" + esc(pt.r.label) + "</b><br>" + esc(metric) + ": <b>" + esc(fmtPM(pt.st)) + "</b> (n=" + pt.st.n + ")" + (pt.r.rank != null ? "<br>rank " + pt.r.rank : "");
        }) + '">');
        if (e > 0) {
          var y0 = sy(pt.st.mean - e).toFixed(1), y1 = sy(pt.st.mean + e).toFixed(1);
          out.push('<path d="M' + x + " " + y0 + "V" + y1 + "M" + (x - 3) + " " + y0 + "h6M" + (x - 3) + " " + y1 + 'h6" stroke="' + c + '" stroke-width="1.2" fill="none"/>');
        }
        out.push('<circle cx="' + x + '" cy="' + sy(pt.st.mean).toFixed(1) + '" r="3.2" fill="' + c + '"/></g>');
      });
    });
    out.push("</svg>");
    if (ns > 1) {
      out.push('<div class="legend">' + order.map(function (name, si) {
        return '<span><span class="sw" style="background:' + PAL[si % PAL.length] + '"></span>' + esc(name) + "</span>";
      }).join("") + (left ? "<span>… " + left + " more, not drawn</span>" : "") + "</div>");
    }
    return out.join("");
  }

  // ---- curves compared: one chart per metric, one line per job (mean over its folds)
  function meanCurve(c, key) {  // the mean over a job's folds (of its last attempt that printed records)
    var j = c.keys.indexOf(key);
    var folds = c.series.filter(function (s) { return !s.aux; });  // the final fit is not a fold
    if (!folds.length) folds = c.series;
    var top = 0;
    folds.forEach(function (s) { if ((s.a || 0) > top) top = s.a || 0; });
    folds = folds.filter(function (s) { return (s.a || 0) === top; });
    if (folds.length === 1) return { x: folds[0].x, y: folds[0].y[j] };
    var acc = new Map();
    folds.forEach(function (s) {
      var ys = s.y[j];
      for (var i = 0; i < s.x.length; i++) {
        if (ys[i] == null) continue;
        var a = acc.get(s.x[i]);
        if (!a) acc.set(s.x[i], a = [0, 0]);
        a[0] += ys[i];
        a[1]++;
      }
    });
    var xs = Array.from(acc.keys()).sort(function (a, b) { return a - b; });
    return { x: xs, y: xs.map(function (x) { var a = acc.get(x); return a[0] / a[1]; }) };
  }
  // Many jobs: the 10th-90th percentile band and median across jobs, and the best few jobs by their last value.
  var MANY = 24, BEST = 6;
  function spread(series, k) {
    var at = new Map();
    series.forEach(function (s) {
      for (var i = 0; i < s.x.length; i++) {
        if (s.y[i] == null) continue;
        var v = at.get(s.x[i]);
        if (!v) at.set(s.x[i], v = []);
        v.push(s.y[i]);
      }
    });
    var xs = Array.from(at.keys()).sort(function (a, b) { return a - b; });
    var sorted = xs.map(function (x) { return Float64Array.from(at.get(x)).sort(); });  // numeric, no comparator
    var q = function (p) { return sorted.map(function (v) { return v[Math.min(v.length - 1, Math.floor(p * v.length))]; }); };
    var lastOf = new Map();
    series.forEach(function (s) { for (var i = s.y.length - 1; i >= 0; i--) if (s.y[i] != null) { lastOf.set(s, s.y[i]); return; } });
    var ranked = series.filter(function (s) { return lastOf.has(s) && s.ok !== false; });  // a failed job is not "best"
    ranked.sort(function (a, b) { return lowerBetter(k) ? lastOf.get(a) - lastOf.get(b) : lastOf.get(b) - lastOf.get(a); });
    var out = [{ name: "90th percentile of " + series.length + " jobs", color: "#b9c3d0", x: xs, y: q(0.9), width: 1 },
      { name: "median of " + series.length + " jobs", color: "#5d6675", x: xs, y: q(0.5), width: 2.2 },
      { name: "10th percentile of " + series.length + " jobs", color: "#b9c3d0", x: xs, y: q(0.1), width: 1 }];
    return out.concat(ranked.slice(0, BEST).map(function (s, i) { s.name = s.name + " (best " + (i + 1) + ")"; return s; }));
  }
  function compare() {
    var withC = JOBS.filter(function (j) { return j.curves; });
    if (withC.length < 2) return "";  // nothing to compare: the per-job section says why
    // grouped like the final metrics, by the metrics the jobs' records carry: a regressor's loss and a
    // classifier's loss are not drawn on one axis
    var groups = makeGroups(withC, function (j) { return j.curves.keys; }).filter(function (g) { return g.jobs.length >= 2; });
    if (!groups.length) return "";
    var h = ['<section id="compare"><h2>Learning curves compared</h2>'];
    h.push('<p class="sub">Each job\'s mean over its folds, per ' + esc(withC[0].curves.x) + "." + (withC.length > MANY ?
      " With more than " + MANY + " jobs: the median and the 10th–90th percentiles across jobs (grey), and the " + BEST + " best jobs that succeeded, by their last value." : "") +
      (groups.length > 1 ? " Jobs whose records carry different metrics are compared in separate groups." : "") +
      " A dashed line is a job that did not succeed. Hover for values.</p>");
    var cw = Math.min(420, contentWidth);
    groups.forEach(function (g) {
      var js = g.jobs, n = {};
      js.forEach(function (j) { j.curves.keys.forEach(function (k) { n[k] = (n[k] || 0) + 1; }); });
      var shared = g.keys.filter(function (k) { return n[k] >= 2; });  // a metric only one job has: its own card shows it
      g.keys = shared.length ? shared : g.keys;
      if (groups.length > 1) h.push('<h3 class="group">' + js.length + " jobs: " + esc(g.keys.slice(0, 6).join(", ")) + (g.keys.length > 6 ? ", …" : "") + "</h3>");
      if (js.length <= MANY) {
        h.push('<div class="legend">' + js.map(function (j) { return '<span><span class="sw" style="background:' + jobColor(j.i) + '"></span>' + esc(j.id) + "</span>"; }).join("") + "</div>");
      }
      h.push('<div class="grid wide">');
      g.keys.slice(0, 12).forEach(function (k) {
        var series = [];
        js.forEach(function (j) {
          if (j.curves.keys.indexOf(k) < 0) return;
          var mc = meanCurve(j.curves, k);
          series.push({ name: j.id, color: jobColor(j.i), x: mc.x, y: mc.y, dash: !FINAL_OK[j.status], ok: !!FINAL_OK[j.status] });
        });
        if (series.length > MANY) series = spread(series, k);
        var lo = Infinity, hi = -Infinity;
        series.forEach(function (s) { s.y.forEach(function (v) { if (v != null) { if (v < lo) lo = v; if (v > hi) hi = v; } }); });
        var logy = lo > 0 && hi / lo >= 100;  // jobs on different scales that report the same metrics
        h.push("<div>" + lineChart({ w: cw, h: 230, title: k, series: series, xname: js[0].curves.x, logy: logy }) + "</div>");
      });
      h.push("</div>");
    });
    h.push("</section>");
    return h.join("");
  }

  // ---- timeline: a lane per job, a bar per attempt, backoff gaps; concurrency and worker limit under it
  var selected = null, contentWidth = 1000, zoom = null, TL = null, dragged = false;
  function timelineSection() {
    var h = ['<section id="timeline"><h2>Timeline</h2><div class="legend">'];
    var present = {}, retried = false;
    JOBS.forEach(function (j) { j.att.forEach(function (a) { present[a.k] = 1; if (a.backoff) retried = true; }); });
    ["succeeded", "failed", "timed_out", "stalled", "oom", "cancelled", "spawn_failed", "running", "unknown"].forEach(function (k) {
      if (present[k] || k === "succeeded" || k === "failed") h.push('<span><span class="sw" style="background:' + OC[k] + '"></span>' + ON[k] + "</span>");
    });
    if (retried) h.push('<span><svg width="22" height="9"><line x1="0" x2="22" y1="4.5" y2="4.5" stroke="#e8912d" stroke-width="2" stroke-dasharray="3 2"/></svg>backoff before a retry</span>');
    h.push('<span><svg width="22" height="9"><line x1="0" x2="22" y1="4.5" y2="4.5" stroke="#c9ced6"/></svg>waiting for a worker</span>');
    h.push('</div><div class="tl-wrap" id="tl">' + timelineHtml(contentWidth) + '</div><div class="detail" id="detail"></div></section>');
    return h.join("");
  }
  function drawTimeline() {
    var box = document.getElementById("tl");
    box.innerHTML = timelineHtml(box.clientWidth);
    markSelected();
  }
  function timelineHtml(width) {
    var n = JOBS.length, W = Math.max(240, width);  // the whole run fits the width, a phone's too
    var maxLen = 4;
    JOBS.forEach(function (j) { if (j.id.length > maxLen) maxLen = j.id.length; });
    var lh = n <= 12 ? 26 : n <= 40 ? 20 : n <= 120 ? 13 : n <= 400 ? 8 : 5;
    var labels = lh >= 13;
    var lab = labels ? Math.min(Math.max(128, Math.min(210, 18 + 6.8 * Math.min(maxLen, 28))), Math.round(W * 0.3)) : 16;
    var labChars = Math.max(4, Math.floor((lab - 14) / 6.8));
    var pw = W - lab - 14, span = D.span;
    var lo = zoom ? zoom[0] : 0, hi = zoom ? zoom[1] : span, vw = hi - lo;
    TL = { lab: lab, pw: pw, lo: lo, hi: hi };
    function sx(t) { return lab + (t - lo) / vw * pw; }
    function cl(x) { return Math.max(lab, Math.min(lab + pw, x)); }
    function hline(cls, t0, t1, y) {  // a horizontal line, cut to the window
      var a = sx(t0), b = sx(t1);
      if (b < lab || a > lab + pw) return "";
      return '<line class="' + cls + '" x1="' + cl(a).toFixed(1) + '" x2="' + cl(b).toFixed(1) + '" y1="' + y + '" y2="' + y + '"/>';
    }
    var tt = timeTicks(lo, hi, Math.max(2, Math.round(pw / 90)));
    var axis = ['<svg width="' + W + '" height="22">'];
    tt.forEach(function (t) { axis.push(tickText(sx(t), 15, tfmt(t), W)); });
    var fromLab = lab >= 128;  // the start time in the label column when it fits, else in the hint
    if (labels && fromLab) axis.push('<text x="' + (lab - 12) + '" y="15" text-anchor="end">from ' + clock(0) + " UTC</text>");
    var hint = (fromLab ? "" : "From " + clock(0) + " UTC. ") + (zoom ? 'Showing ' + tfmt(lo) + " to " + tfmt(hi) + ' · <a href="#" id="unzoom">show all</a> (or double-click)' :
      "Drag across the lanes to zoom in on a stretch of time.");
    axis.push("</svg>");
    var H = n * lh + 2, s = ['<svg class="timeline" width="' + W + '" height="' + H + '">'];
    s.push('<g class="grid">');
    tt.forEach(function (t) { s.push('<line x1="' + sx(t).toFixed(1) + '" x2="' + sx(t).toFixed(1) + '" y1="0" y2="' + H + '"/>'); });
    s.push("</g>");
    var bh = Math.max(2, lh - (lh >= 13 ? 8 : lh >= 8 ? 3 : 1)), mid = lh / 2;
    JOBS.forEach(function (j, i) {
      var y = i * lh;
      s.push('<g class="lane' + (i % 2 ? " odd" : "") + '" data-job="' + esc(j.id) + '" transform="translate(0,' + y + ')">');
      if (labels) s.push('<rect class="stripe" x="0" y="0" width="' + W + '" height="' + lh + '"/>');
      if (labels) {
        s.push('<text class="lab" data-open="' + j.i + '" x="' + (lab - 8) + '" y="' + (mid + 4) + '" text-anchor="end">' + esc(j.id.length > labChars ? j.id.slice(0, labChars - 1) + "…" : j.id) + "</text>");
      }
      var prevEnd = j.q;
      j.att.forEach(function (a, k) {
        if (prevEnd != null && a.s - prevEnd > vw * 0.002) {
          var wStart = prevEnd;
          var prev = k ? j.att[k - 1] : null;
          if (prev && prev.backoff) {
            var bEnd = Math.min(a.s, prev.e + prev.backoff);
            s.push(hline("boff", prev.e, bEnd, mid));
            wStart = bEnd;
          }
          if (a.s - wStart > vw * 0.002) s.push(hline("wait", wStart, a.s, mid));
        }
        prevEnd = a.e;
        if (sx(a.e) < lab || sx(a.s) > lab + pw) return;
        var x0 = cl(sx(a.s)), w = Math.max(1.5, cl(sx(a.e)) - x0);
        s.push('<rect class="att" data-open="' + j.i + '" data-att="' + k + '" x="' + x0.toFixed(1) +
          '" y="' + (mid - bh / 2).toFixed(1) + '" width="' + w.toFixed(1) + '" height="' + bh + '" rx="' + (bh >= 8 ? 3 : 1) + '" fill="' + (OC[a.k] || OC.unknown) + '"/>');
      });
      if (!j.att.length && j.q != null && (j.status === "queued" || j.status === "cancelled")) {
        s.push(hline("wait", j.q, span, mid));  // never started: it waited to the end
      }
      var last = j.att[j.att.length - 1];
      if (last && last.backoff && j.status !== "succeeded" && (j.status === "cancelled" || j.status === "backoff")) {
        s.push(hline("boff", last.e, Math.min(span, last.e + last.backoff), mid));
      }
      s.push("</g>");
    });
    s.push("</svg>");
    // concurrency over time, with the worker limit
    var ev = [];
    JOBS.forEach(function (j) { j.att.forEach(function (a) { ev.push([a.s, 1]); ev.push([a.e, -1]); }); });
    ev.sort(function (a, b) { return a[0] - b[0] || a[1] - b[1]; });
    var cx = [0], cy = [0], cur = 0, peak = 0;
    ev.forEach(function (e) {
      cur += e[1];
      if (cur > peak) peak = cur;
      if (cx[cx.length - 1] === e[0]) cy[cy.length - 1] = cur; else { cx.push(e[0]); cy.push(cur); }
    });
    // the part of the step functions inside the window: the value at its start, then the changes in it
    var clip = function (xs, ys) {
      var ox = [lo], oy = [0];
      for (var i = 0; i < xs.length; i++) {
        if (xs[i] <= lo) oy[0] = ys[i];
        else if (xs[i] <= hi) { ox.push(xs[i]); oy.push(ys[i]); }
      }
      return [ox, oy];
    };
    var cw = clip(cx, cy), lim = clip(D.workers.map(function (p) { return p[0]; }), D.workers.map(function (p) { return p[1]; }));
    var limit = D.workers.length ? lim[0].map(function (x, i) { return [x, lim[1][i]]; }) : [];
    var conc = lineChart({ w: W, h: 110, ml: lab, mr: 14, series: [{ name: "running attempts", color: "#3d7fd9", x: cw[0], y: cw[1] }],
      step: true, area: true, y0: true, xmin: lo, xmax: hi, xfmt: tfmt, xname: "elapsed", limit: limit,
      yfmt: function (v) { return Number.isInteger(v) ? String(v) : ""; }, xticks: function () { return tt; } });
    var top = 0;  // the limit at the peak's time, to say "peak 2 of 2"
    D.workers.forEach(function (p) { if (p[1] > top) top = p[1]; });
    return '<p class="sub" style="margin:0 0 6px">' + hint + "</p>" + axis.join("") + '<div class="tl-scroll">' + s.join("") + "</div>" +
      '<h3 style="margin:10px 0 0">Running attempts over time <span class="muted" style="font-weight:400">(peak <span id="peak">' + peak + "</span>" +
      (top ? " of " + top + " worker" + (top === 1 ? "" : "s") + (D.runs.length > 1 ? ", summed over the runs going on at the time" : "") : "") + ")</span></h3>" + conc;
  }
  // drag across the lanes to zoom in on a stretch of time; double-click (or "show all") to zoom out
  function bindZoom() {
    var box = document.getElementById("tl"), sel = null, x0 = 0;
    function xOf(ev) { return ev.clientX - box.getBoundingClientRect().left; }
    function tOf(x) { return TL.lo + (Math.max(TL.lab, Math.min(TL.lab + TL.pw, x)) - TL.lab) / TL.pw * (TL.hi - TL.lo); }
    box.addEventListener("mousedown", function (ev) {
      if (ev.button !== 0 || !ev.target.closest(".tl-scroll")) return;
      x0 = xOf(ev);
      if (x0 < TL.lab) return;
      sel = document.createElement("div");
      sel.className = "zoomsel";
      sel.style.left = x0 + "px";
      box.appendChild(sel);
      ev.preventDefault();
    });
    window.addEventListener("mousemove", function (ev) {
      if (!sel) return;
      var x = xOf(ev);
      sel.style.left = Math.min(x0, x) + "px";
      sel.style.width = Math.abs(x - x0) + "px";
    });
    window.addEventListener("mouseup", function (ev) {
      if (!sel) return;
      var x = xOf(ev);
      sel.remove();
      sel = null;
      if (Math.abs(x - x0) < 6) return;  // a click, not a drag
      var a = tOf(Math.min(x0, x)), b = tOf(Math.max(x0, x));
      if (b - a < 0.05) b = a + 0.05;
      zoom = [a, b];
      dragged = true;
      setTimeout(function () { dragged = false; }, 0);
      drawTimeline();
    });
    box.addEventListener("dblclick", function () { if (zoom) { zoom = null; drawTimeline(); } });
  }
  function attemptTip(j, a) {
    var h = "<b>" + esc(j.id) + "</b> attempt " + a.n + (D.runs.length > 1 ? ' <span class="k">run ' + esc(a.run) + "</span>" : "") + "<br>";
    h += '<span class="dot" style="background:' + (OC[a.k] || OC.unknown) + '"></span> ' + esc(ON[a.k] || a.o) + (a.fail && a.fail !== a.o ? " · " + esc(a.fail) : "");
    if (a.code != null) h += " · exit " + a.code;
    if (a.sig) h += " · " + esc(a.sig);
    h += '<br><span class="k">start</span> ' + clock(a.s) + ' <span class="k">duration</span> ' + fmtDur(a.dur);
    if (a.peak) h += ' <span class="k">peak RSS</span> ' + fmtBytes(a.peak);
    if (a.backoff) h += '<br><span class="k">retried after a backoff of</span> ' + fmtDur(a.backoff);
    if (j.cmd) h += '<br><span class="k">command</span> <span class="mono">' + esc(shellJoin(j.cmd).slice(0, 300)) + "</span>";
    if (a.err) h += "<pre>" + esc(a.err) + "</pre>";
    else if (a.tail && a.tail.length) h += "<pre>" + esc(a.tail.slice(-5).join("\n")) + "</pre>";
    h += '<br><span class="k">click for details</span>';
    return h;
  }
  function markSelected() {
    var lanes = document.querySelectorAll(".timeline .lane.sel");
    for (var i = 0; i < lanes.length; i++) lanes[i].classList.remove("sel");
    if (selected == null) return;
    var g = document.querySelector('.timeline .lane[data-job="' + CSS.escape(JOBS[selected].id) + '"]');
    if (g) g.classList.add("sel");
  }
  function openDetail(i, k) {
    var j = JOBS[i], el = document.getElementById("detail");
    selected = i;
    markSelected();
    var h = ['<button class="close" title="close">×</button><h2>' + esc(j.id) + " " + stChip(kindOf(j)) + (j.optional ? ' <span class="muted">optional</span>' : "") + "</h2>"];
    if (j.reason) h.push('<p class="sub">' + esc(j.reason) + "</p>");
    h.push('<div class="tablewrap"><table><thead><tr><th>attempt</th><th>outcome</th><th>failure</th><th class="num">exit</th><th>start (UTC)</th><th class="num">duration</th><th class="num">peak RSS</th><th class="num">pid</th><th>GPUs</th><th class="num">backoff</th></tr></thead><tbody>');
    j.att.forEach(function (a) {
      h.push("<tr><td>" + a.n + (D.runs.length > 1 ? ' <span class="muted">' + esc(a.run) + "</span>" : "") + "</td><td>" + stChip(a.k) + "</td><td>" + esc(a.fail || "") +
        '</td><td class="num">' + esc(a.code != null ? a.code : a.sig || "") + "</td><td>" + clock(a.s) + '</td><td class="num">' + fmtDur(a.dur) +
        '</td><td class="num">' + fmtBytes(a.peak) + '</td><td class="num">' + esc(a.pid || "") + "</td><td>" + esc(a.gpus || "") +
        '</td><td class="num">' + (a.backoff ? fmtDur(a.backoff) : "") + "</td></tr>");
    });
    h.push("</tbody></table></div>");
    h.push('<dl class="kv" style="margin-top:10px">');
    if (j.params) h.push("<dt>parameters</dt><dd>" + Object.keys(j.params).map(function (k) { return esc(k) + "=<b>" + esc(String(j.params[k])) + "</b>"; }).join(" ") + "</dd>");
    if (j.cmd) h.push("<dt>command</dt><dd class=\"mono\">" + esc(shellJoin(j.cmd)) + "</dd>");
    if (j.cwd) h.push("<dt>cwd</dt><dd class=\"mono\">" + esc(j.cwd) + "</dd>");
    if (j.sha) h.push("<dt>script sha256</dt><dd class=\"mono\">" + esc(j.sha) + "</dd>");
    var fk = Object.keys(j.final);
    if (fk.length) h.push("<dt>final metrics</dt><dd>" + fk.map(function (k) { return esc(k) + "=<b>" + esc(fmtNum(j.final[k])) + "</b>"; }).join(" ") + "</dd>");
    if (j.last) h.push("<dt>last object printed</dt><dd>" + Object.keys(j.last).map(function (k) { return esc(k) + "=" + esc(fmtNum(j.last[k])); }).join(" ") +
      ' <span class="muted">(not a final result: the job did not succeed)</span></dd>');
    h.push("</dl>");
    var shown = k != null ? [j.att[k]] : j.att.filter(function (a) { return a.tail && a.tail.length || a.err; });
    shown.forEach(function (a) {
      if (!a || !(a.tail && a.tail.length || a.err)) return;
      h.push("<h3 style=\"margin-top:10px\">attempt " + a.n + ": last output lines</h3><pre>" + esc((a.err ? a.err + "\n" : "") + (a.tail || []).join("\n")) + "</pre>");
    });
    if (j.curves) h.push('<p><a href="#job-' + esc(j.id) + '">curves of ' + esc(j.id) + " ↓</a></p>");
    el.innerHTML = h.join("");
    el.querySelector(".close").addEventListener("click", function () { el.innerHTML = ""; selected = null; markSelected(); });
    document.getElementById("timeline").scrollIntoView({ block: "start" });
    el.scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("click", function (ev) {
    if (dragged) { dragged = false; ev.preventDefault(); return; }
    if (ev.target.id === "unzoom") { ev.preventDefault(); zoom = null; drawTimeline(); return; }
    var el = ev.target.closest ? ev.target.closest("[data-open]") : null;
    if (!el) return;
    ev.preventDefault();
    var k = el.getAttribute("data-att");
    openDetail(+el.getAttribute("data-open"), k == null ? null : +k);
  });

  // ---- curves per job: one small chart per metric, folds as separate series (drawn when scrolled to)
  function perJob() {
    var withC = JOBS.filter(function (j) { return j.curves; });
    var h = ['<section id="curves"><h2>Curves per job</h2>'];
    if (!withC.length) {
      h.push('<p class="empty">No job printed metric records to draw. A script that prints one JSON object per line, e.g. ' +
        '<code>{"epoch": 3, "fold": 1, "loss": 0.41, "val_acc": 0.87}</code>, gets a chart per metric here, one line per fold.</p></section>');
      return h.join("");
    }
    h.push('<p class="sub">From each job\'s JSON output records: x is epoch, step or fold when the records carry one, else their order; one line per fold.</p>');
    if (withC.length > 12) h.push('<input class="filter" id="cfilter" placeholder="filter jobs…" aria-label="filter jobs">');
    h.push('<div class="cards" id="cards">');
    withC.forEach(function (j) {
      h.push('<div class="card" id="job-' + esc(j.id) + '" data-card="' + j.i + '"><div class="head"><b>' + esc(j.id) + "</b> " + stChip(kindOf(j)) +
        ' <span class="sub">' + finalText(j) + '</span></div><div class="charts" style="min-height:160px"></div></div>');
    });
    h.push("</div></section>");
    return h.join("");
  }
  function finalText(j) {  // the job's final values of its group's compared metrics, for a card's header
    var t = TABLES[j.tbl];
    if (!t || !t.ranked) return "";
    var keys = t.shared.length ? t.shared : t.cols.filter(function (k) { return !SETTING.test(k); });
    return keys.slice(0, 4).filter(function (k) { return typeof j.final[k] === "number"; })
      .map(function (k) { return esc(k) + " <b>" + esc(fmtNum(j.final[k])) + "</b>"; }).join(" · ");
  }
  var cardInner = 0;
  function drawCard(card) {
    if (card.getAttribute("data-drawn")) return;
    card.setAttribute("data-drawn", "1");
    var j = JOBS[+card.getAttribute("data-card")], c = j.curves, out = [];
    var multi = c.series.length > 1;
    var charts = card.querySelector(".charts");
    // the card's full width: as many charts side by side as fit at 260 px or more each
    // every card is as wide as the section: measured once, not once per card (a layout each)
    if (!cardInner) cardInner = charts.clientWidth || contentWidth - 26;
    var inner = cardInner, gap = 14;
    var cols = Math.max(1, Math.min(c.keys.length, Math.floor((inner + gap) / (260 + gap))));
    var cw = Math.max(200, Math.floor((inner - (cols - 1) * gap) / cols) - 1);
    if (cw > inner) cw = Math.floor(inner);
    c.keys.forEach(function (k, ki) {
      var series = c.series.map(function (s, si) {
        return { name: s.n, color: multi ? PAL[si % PAL.length] : jobColor(j.i), x: s.x, y: s.y[ki], dash: s.aux };
      });
      out.push(lineChart({ w: cw, h: 180, title: k, series: series, xname: c.x }));
    });
    charts.innerHTML = out.join("") + (multi && c.series.length <= 12 ? '<div class="legend">' + c.series.map(function (s, si) {
      return '<span><span class="sw" style="background:' + PAL[si % PAL.length] + '"></span>' + esc(s.n) + "</span>";
    }).join("") + "</div>" : "");
    charts.style.minHeight = "";
  }
  function bindCards() {
    var cards = document.querySelectorAll("#cards .card");
    var eager = Math.min(cards.length, 12);
    for (var i = 0; i < eager; i++) drawCard(cards[i]);
    if (cards.length > eager) {
      if ("IntersectionObserver" in window) {
        var io = new IntersectionObserver(function (entries) {
          entries.forEach(function (e) { if (e.isIntersecting) { drawCard(e.target); io.unobserve(e.target); } });
        }, { rootMargin: "800px 0px" });
        for (var k = eager; k < cards.length; k++) io.observe(cards[k]);
      } else {
        for (var m = eager; m < cards.length; m++) drawCard(cards[m]);
      }
    }
    var f = document.getElementById("cfilter");
    if (f) f.addEventListener("input", function () {
      var q = f.value.trim().toLowerCase();
      for (var i2 = 0; i2 < cards.length; i2++) {
        var id = JOBS[+cards[i2].getAttribute("data-card")].id.toLowerCase();
        cards[i2].style.display = !q || id.indexOf(q) >= 0 ? "" : "none";
      }
    });
  }
  window.aimedresDrawAllCurves = function () {  // for tools and benchmarks: draw every card now
    var cards = document.querySelectorAll("#cards .card");
    for (var i = 0; i < cards.length; i++) drawCard(cards[i]);
    return cards.length;
  };

  // ---- memory: peak RSS per job and the group's RSS over time
  function memory() {
    var h = ['<section id="memory"><h2>Memory</h2><div class="grid wide">'];
    var items = JOBS.filter(function (j) { return j.peak; }).map(function (j) {
      return { label: j.id, value: j.peak, color: jobColor(j.i) };
    });
    items.sort(function (a, b) { return b.value - a.value; });
    h.push("<div>" + (items.length ? barChart({ items: items, w: Math.min(560, contentWidth), title: "peak RSS per job (whole process tree)", fmt: fmtBytes }) :
      '<p class="empty">No peak RSS was recorded.</p>') + "</div>");
    if (D.rss.length) {
      var x = D.rss.map(function (p) { return p[0]; }), y = D.rss.map(function (p) { return p[1]; });
      h.push("<div>" + lineChart({ w: Math.min(560, contentWidth), h: 220, title: "RSS of all running jobs (sampled once a second)", series: [{ name: "all running jobs", color: PAL[0], x: x, y: y }],
        step: true, area: true, y0: true, xmin: 0, xmax: D.span, xfmt: tfmt, yfmt: fmtBytes, xname: "elapsed",
        xticks: function (lo, hi, n) { return timeTicks(lo, hi, n); } }) + "</div>");
    } else {
      h.push('<div><p class="empty">No memory samples were recorded (jobs shorter than a second, or an executor that does not sample).</p></div>');
    }
    h.push("</div></section>");
    return h.join("");
  }

  // ---- provenance and the run summary
  function provenance() {
    var h = ['<section id="provenance"><h2>Provenance and summary</h2><div class="grid wide">'];
    D.runs.forEach(function (r) {
      var kv = [];
      function row(k, v, mono) { if (v != null && v !== "") kv.push("<dt>" + esc(k) + "</dt><dd" + (mono ? ' class="mono"' : "") + ">" + v + "</dd>"); }
      row("run", esc(r.run), true);
      row("started", esc(r.started_at || ""));
      row("finished", esc(r.finished_at || (r.finished ? "" : "not finished")));
      row("duration", r.duration_s != null ? fmtDur(r.duration_s) : "");
      row("exit code", r.exit_code != null ? esc(r.exit_code) : "");
      row("stopped by", esc(r.stopped_by || ""));
      if (r.counts) row("jobs", Object.keys(r.counts).map(function (k) { return esc(k) + " " + r.counts[k]; }).join(", "));
      row("max workers", r.max_workers != null ? esc(r.max_workers) : "");
      row("config", esc(r.config || "built-in defaults"), true);
      row("config sha256", esc(r.config_sha256 || ""), true);
      if (r.git) {
        row("git commit", esc(r.git.commit || "") + (r.git.dirty ? ' <span class="st" style="background:#e8912d">dirty</span>' : ' <span class="st" style="background:#2f9e62">clean</span>'), true);
        if (r.git.diff_sha256) row("diff sha256", esc(r.git.diff_sha256), true);
      } else row("git", '<span class="muted">not a git checkout</span>');
      row("host", esc(r.host || ""));
      row("python", esc((r.python || "") + (r.python_path ? " (" + r.python_path + ")" : "")));
      row("platform", esc(r.platform || ""));
      row("logs", esc(r.dir || ""), true);
      h.push('<div><dl class="kv">' + kv.join("") + "</dl></div>");
    });
    h.push("</div></section>");
    return h.join("");
  }

  // ------------------------------------------------------------------ draw
  try {
    if (JOBS.length > 100) document.body.classList.add("big");  // lay out off-screen parts only when seen
    // the width inside a section, measured before anything is drawn (the paddings shrink on a phone)
    app.innerHTML = '<section id="probe"></section>';
    var probe = document.getElementById("probe"), pcs = getComputedStyle(probe);
    contentWidth = Math.floor(probe.clientWidth - parseFloat(pcs.paddingLeft) - parseFloat(pcs.paddingRight));
    var times = window.aimedresTimes = {};  // milliseconds per step, for benchmarks
    var step = function (name, fn) { var t = performance.now(); var r = fn(); times[name] = Math.round(performance.now() - t); return r; };
    times.parse = Math.round(performance.now() - T_START);
    [["header", header], ["results", results], ["leaderboard", leaderboardSection], ["compare", compare], ["timeline", timelineSection], ["curves", perJob],
      ["memory", memory], ["provenance", provenance]].forEach(function (s) { parts.push(step(s[0], s[1])); });
    parts.push("<footer>aimedres-async " + esc(D.version) + " · report made " + esc(D.generated) + " · self-contained: no network, no external files</footer>");
    step("dom", function () { app.innerHTML = parts.join(""); });
    bindTable();
    step("cards", bindCards);
    bindZoom();
    step("layout", function () { return document.body.offsetHeight; });
    var resizeTimer = null;
    window.addEventListener("resize", function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(drawTimeline, 150);
    });
    window.aimedresReportMs = performance.now() - T_START;  // drawing alone
    window.aimedresReadyMs = performance.now();  // since navigation start: parse and draw
    document.body.setAttribute("data-ready", "1");
  } catch (e) {
    app.innerHTML = '<div class="banner warn">The report could not be drawn: ' + esc(e && e.message) + "</div>";
    throw e;
  }
})();
