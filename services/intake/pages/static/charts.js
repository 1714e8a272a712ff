// The dashboard's and the community page's charts: Chart.js (Debian's libjs-chart.js,
// served by intake) draws each <canvas> from the JSON block beside it. No inline script,
// no inline style: the pages' CSP stays strict. The exact counts are in the table
// beside each chart; without Chart.js the tables alone remain.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  if (typeof window.Chart === "undefined") {
    return;
  }
  var palette = ["#a4161a", "#0a4fb3", "#1a7f37", "#b7791f", "#6f42c1", "#4a5560", "#d63384"];
  window.Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
  window.Chart.defaults.animation = false;
  document.querySelectorAll("script[type='application/json'][data-chart]").forEach(function (block) {
    var spec = JSON.parse(block.textContent);
    var canvas = document.getElementById(block.getAttribute("data-chart"));
    if (!canvas) {
      return;
    }
    var round = spec.kind === "doughnut";
    var datasets = spec.datasets.map(function (set, i) {
      return {
        label: set.label,
        data: set.data,
        backgroundColor: round ? palette.slice(0, set.data.length) : palette[i % palette.length]
      };
    });
    var options = {
      responsive: true,
      maintainAspectRatio: false,
      plugins: { legend: { position: "bottom" } }
    };
    if (!round) {
      options.scales = {
        x: { stacked: true },
        y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } }
      };
    }
    new window.Chart(canvas, { type: spec.kind, data: { labels: spec.labels, datasets: datasets }, options: options });
    canvas.setAttribute("data-drawn", "yes");
  });
});
