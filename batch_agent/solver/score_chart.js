// Attempt scores over elapsed training time, with the best-so-far line, as an SVG string.
// Shared by the dashboard (served at /static/score_chart.js) and report.html (inlined), so it
// has no dependencies and touches no DOM: callers put the returned markup where they want it.
// Attempts run one after another, so an attempt's x is the sum of the seconds of those before
// it plus its own: when it finished, counted in training seconds.
(function (root) {
  "use strict";

  // Inside the SVG so the chart looks the same wherever it is put.
  var STYLE =
    "<style>.chart-axes line{stroke:#888}.chart-axes text,.chart-empty{font:11px sans-serif;fill:#555}" +
    ".best-line{stroke:#1a8a5a;stroke-width:2}.attempt-point{fill:#2f5fc4}" +
    ".attempt-failed{stroke:#c33;stroke-width:2}.final-line{stroke:#b86e00;stroke-width:1.5;stroke-dasharray:6 4}" +
    ".final-label{font:11px sans-serif;fill:#b86e00}</style>";

  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function niceNumber(value) {
    if (!isFinite(value)) return "";
    var abs = Math.abs(value);
    if (abs !== 0 && (abs < 0.001 || abs >= 100000)) return value.toExponential(2);
    return String(+value.toPrecision(4));
  }

  // attempts: [{number, program, ok, cv_score, seconds}];
  // options: {higherIsBetter, width, height, finalScore, finalLabel}.
  function scoreChartSvg(attempts, options) {
    options = options || {};
    var width = options.width || 640;
    var height = options.height || 260;
    var higher = options.higherIsBetter !== false;
    var pad = { left: 64, right: 16, top: 16, bottom: 40 };
    var elapsed = 0;
    var points = [];
    var failures = [];
    (attempts || []).forEach(function (a) {
      elapsed += Math.max(0, Number(a.seconds) || 0);
      var score = a.cv_score;
      if (a.ok && typeof score === "number" && isFinite(score)) {
        points.push({ x: elapsed, y: score, a: a });
      } else {
        failures.push({ x: elapsed, a: a });
      }
    });
    var parts = [];
    parts.push(
      '<svg class="score-chart" xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 ' +
        width + " " + height + '" preserveAspectRatio="xMidYMid meet" aria-label="attempt scores over elapsed time">' + STYLE
    );
    if (!points.length && !failures.length) {
      parts.push('<text x="' + width / 2 + '" y="' + height / 2 + '" text-anchor="middle" class="chart-empty">no attempts yet</text></svg>');
      return parts.join("");
    }
    var xMax = Math.max(elapsed, 1);
    // The submitted score (a blend can beat every attempt) as a dashed line of its own.
    var final = options.finalScore;
    var hasFinal = typeof final === "number" && isFinite(final);
    var ys = points.map(function (p) { return p.y; });
    if (hasFinal && ys.length) ys.push(final);
    var yMin = ys.length ? Math.min.apply(null, ys) : 0;
    var yMax = ys.length ? Math.max.apply(null, ys) : 1;
    if (yMax - yMin < 1e-12) {
      var spread = Math.abs(yMax) * 0.05 || 0.05;
      yMin -= spread;
      yMax += spread;
    } else {
      var margin = (yMax - yMin) * 0.08;
      yMin -= margin;
      yMax += margin;
    }
    var plotW = width - pad.left - pad.right;
    var plotH = height - pad.top - pad.bottom;
    function sx(x) { return pad.left + (x / xMax) * plotW; }
    function sy(y) { return pad.top + (1 - (y - yMin) / (yMax - yMin)) * plotH; }

    // Axes and ticks.
    parts.push('<g class="chart-axes">');
    parts.push('<line x1="' + pad.left + '" y1="' + (pad.top + plotH) + '" x2="' + (pad.left + plotW) + '" y2="' + (pad.top + plotH) + '"/>');
    parts.push('<line x1="' + pad.left + '" y1="' + pad.top + '" x2="' + pad.left + '" y2="' + (pad.top + plotH) + '"/>');
    for (var i = 0; i <= 4; i++) {
      var yv = yMin + ((yMax - yMin) * i) / 4;
      var xv = (xMax * i) / 4;
      parts.push('<text x="' + (pad.left - 6) + '" y="' + (sy(yv) + 4) + '" text-anchor="end">' + esc(niceNumber(yv)) + "</text>");
      parts.push('<text x="' + sx(xv) + '" y="' + (pad.top + plotH + 16) + '" text-anchor="middle">' + esc(niceNumber(Math.round(xv))) + "</text>");
    }
    parts.push('<text x="' + (pad.left + plotW / 2) + '" y="' + (height - 4) + '" text-anchor="middle">training seconds elapsed</text>');
    parts.push("</g>");

    // Best-so-far: a step line that changes only when an attempt beats the best before it.
    if (points.length) {
      var best = null;
      var path = [];
      points.forEach(function (p) {
        var better = best === null || (higher ? p.y > best : p.y < best);
        if (better) {
          if (best !== null) path.push("L" + sx(p.x).toFixed(1) + "," + sy(best).toFixed(1));
          best = p.y;
          path.push((path.length ? "L" : "M") + sx(p.x).toFixed(1) + "," + sy(best).toFixed(1));
        }
      });
      path.push("L" + sx(xMax).toFixed(1) + "," + sy(best).toFixed(1));
      parts.push('<path class="best-line" fill="none" d="' + path.join(" ") + '"/>');
    }
    if (hasFinal && points.length) {
      parts.push('<line class="final-line" x1="' + pad.left + '" x2="' + (pad.left + plotW) + '" y1="' + sy(final).toFixed(1) +
        '" y2="' + sy(final).toFixed(1) + '"/><text class="final-label" text-anchor="end" x="' + (pad.left + plotW - 4) +
        '" y="' + (sy(final) - 5).toFixed(1) + '">' + esc((options.finalLabel || "submission") + " " + niceNumber(final)) + "</text>");
    }
    points.forEach(function (p) {
      parts.push(
        '<circle class="attempt-point" r="5" cx="' + sx(p.x).toFixed(1) + '" cy="' + sy(p.y).toFixed(1) + '"><title>' +
          esc("#" + p.a.number + " " + p.a.program + ": " + niceNumber(p.y) + " at " + Math.round(p.x) + " s") +
          "</title></circle>"
      );
    });
    failures.forEach(function (f) {
      var x = sx(f.x);
      var y = pad.top + plotH - 8;
      parts.push(
        '<path class="attempt-failed" d="M' + (x - 4) + "," + (y - 4) + " L" + (x + 4) + "," + (y + 4) + " M" + (x + 4) + "," + (y - 4) + " L" + (x - 4) + "," + (y + 4) +
          '"><title>' + esc("#" + f.a.number + " " + f.a.program + " failed: " + (f.a.reason || "")) + "</title></path>"
      );
    });
    parts.push("</svg>");
    return parts.join("");
  }

  root.scoreChartSvg = scoreChartSvg;
})(typeof window !== "undefined" ? window : this);
