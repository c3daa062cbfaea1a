/* The K/M explorer without a kernel.
 *
 * It draws, never computes: window.GPIPE_EXPLORER (written at build time from
 * gpipe_core by book/_ext/gpipe_book.py) holds the tick of every action of every
 * schedule for K = 1..8 and M = 1..32, with the bubble and memory numbers
 * gpipe_core gives. Any <div class="gpipe-explorer"> becomes sliders, a Gantt
 * chart (SVG) and readouts. Optional attributes: data-k, data-m, data-schedule.
 */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, parent, ns) {
    var node = ns ? document.createElementNS(SVG, tag) : document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function slider(parent, label, role, min, max, value) {
    var wrap = el("label", { "class": "gpipe-explorer-control" }, parent);
    wrap.appendChild(document.createTextNode(label + " "));
    var input = el("input", { type: "range", min: min, max: max, step: 1, value: value,
                              "data-role": role, "aria-label": label }, wrap);
    var shown = el("output", { "data-role": role + "-value" }, wrap);
    shown.textContent = value;
    return input;
  }

  function draw(svg, entry, K, M, colors) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var cell = Math.max(6, Math.min(28, Math.floor(760 / entry.length)));
    var left = 62, row = 26, top = 20;
    var width = left + entry.length * cell + 10, height = top + K * row + 6;
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    var axis = el("text", { x: left, y: 12, "class": "gpipe-explorer-axis" }, svg, true);
    axis.textContent = "clock tick 0 \u2192 " + (entry.length - 1);
    for (var j = 0; j < K; j++) {
      var y = top + j * row;
      var name = el("text", { x: 0, y: y + row / 2 + 4, "class": "gpipe-explorer-axis" }, svg, true);
      name.textContent = "stage " + j;
      el("rect", { x: left, y: y + 2, width: entry.length * cell, height: row - 4,
                   "class": "gpipe-explorer-idle" }, svg, true);
      entry.ticks[j].forEach(function (t, a) {
        var kind = a < M ? "F" : "B", mb = a < M ? a : a - M;
        var box = el("rect", { x: left + t * cell, y: y + 2, width: cell - 1, height: row - 4,
                               fill: colors[kind], "data-action": kind + mb + "@" + j }, svg, true);
        var tip = el("title", {}, box, true);
        tip.textContent = (kind === "F" ? "forward" : "backward") + " of micro-batch " + mb +
                          " on stage " + j + " at tick " + t;
        if (cell >= 20) {
          var label = el("text", { x: left + t * cell + cell / 2, y: y + row / 2 + 4,
                                   "class": "gpipe-explorer-label" }, svg, true);
          label.textContent = kind + mb;
        }
      });
    }
  }

  function fmt(x) { return x.toLocaleString("en", { maximumFractionDigits: 1 }); }

  function build(root, data) {
    root.textContent = "";
    var controls = el("div", { "class": "gpipe-explorer-controls" }, root);
    var k = slider(controls, "K stages", "K", 1, data.maxK, root.dataset.k || 4);
    var m = slider(controls, "M micro-batches", "M", 1, data.maxM, root.dataset.m || 4);
    var pick = el("label", { "class": "gpipe-explorer-control" }, controls);
    pick.appendChild(document.createTextNode("schedule "));
    var select = el("select", { "data-role": "schedule", "aria-label": "schedule" }, pick);
    Object.keys(data.schedules).forEach(function (name) {
      var option = el("option", { value: name }, select);
      option.textContent = name;
    });
    select.value = root.dataset.schedule || "gpipe";
    var figure = el("div", { "class": "gpipe-explorer-figure" }, root);
    var svg = el("svg", { role: "img", "aria-label": "pipeline schedule Gantt chart" }, figure, true);
    var readout = el("dl", { "class": "gpipe-explorer-readout" }, root);
    function item(term, role) {
      el("dt", {}, readout).textContent = term;
      return el("dd", { "data-role": role }, readout);
    }
    var ticks = item("clock ticks", "ticks");
    var bubble = item("bubble read off the table", "bubble");
    var formula = item("(K-1)/(M+K-1)", "bubble-formula");
    var memory = item("activation memory per stage", "memory");
    var inflight = item("most micro-batches a stage holds", "inflight");

    function update() {
      var K = +k.value, M = +m.value, name = select.value;
      k.parentNode.querySelector("output").textContent = K;
      m.parentNode.querySelector("output").textContent = M;
      var entry = data.schedules[name][K + "," + M];
      draw(svg, entry, K, M, data.colors);
      ticks.textContent = entry.length;
      bubble.textContent = entry.bubble_table.toFixed(3);
      formula.textContent = "(" + K + "-1)/(" + M + "+" + K + "-1) = " + entry.bubble_formula.toFixed(3);
      memory.textContent = fmt(entry.memory_remat) + " units with re-materialisation, N + (L/K)(N/M); " +
        fmt(entry.memory_stored) + " without, N\u00b7L/K (N=" + data.N + ", L=" + data.L +
        "; one unit = one sample's activation at one layer)";
      inflight.textContent = "[" + entry.inflight.join(", ") + "] of M=" + M + " (stage 0 first)";
    }
    [k, m].forEach(function (input) { input.addEventListener("input", update); });
    select.addEventListener("change", update);
    update();
  }

  function start() {
    var data = window.GPIPE_EXPLORER;
    document.querySelectorAll(".gpipe-explorer").forEach(function (root) {
      if (!data) { root.textContent = "The explorer's data (gpipe-explorer-data.js) did not load."; return; }
      build(root, data);
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
