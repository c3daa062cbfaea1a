/* The schedule explorer without a kernel.
 *
 * It draws, never computes: window.GPIPE_EXPLORER (written at build time from
 * gpipe_core by book/_ext/gpipe_book.py and explorer_data.py) holds, for every
 * built-in schedule, K and M, each device's actions in order, their start times
 * under every cost and link preset (gpipe_core's simulator), the bubble, and each
 * device's peak activation memory. A schedule's entries live in their own file
 * (gpipe-explorer-<name>.js), loaded when a reader first picks it. Any
 * <div class="gpipe-explorer"> becomes controls, a Gantt chart with a memory
 * bar beside every device's row, a legend and readouts.
 * Optional attributes: data-k, data-m, data-schedule, data-cost, data-link.
 *
 * The chart is laid out in CSS pixels for the width it is given (and again
 * when that width changes), so it always fits its column, phone included,
 * and its text stays at a readable size however many boxes it holds.
 */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var FONT = 13, ROW = 26, LEFT = 64, AXIS = 34, MEMORY = 84, GAP = 10;
  var scripts = document.getElementsByTagName("script");
  var BASE = (document.currentScript || scripts[scripts.length - 1]).src.replace(/[^/]*$/, "");

  // Run `then` once the entries of schedule `name` are loaded (they come in their own file).
  function load(data, name, then) {
    var schedule = data.schedules[name];
    if (schedule.entries) { then(); return; }
    if (!schedule.waiting) {
      schedule.waiting = [];
      var tag = el("script", { src: BASE + schedule.file }, document.head);
      tag.addEventListener("load", function () { schedule.waiting.forEach(function (f) { f(); }); });
    }
    schedule.waiting.push(then);
  }

  function el(tag, attrs, parent, ns) {
    var node = ns ? document.createElementNS(SVG, tag) : document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function text(parent, x, y, content, cls, anchor) {
    var t = el("text", { x: x, y: y, "class": cls, "text-anchor": anchor || "start" }, parent, true);
    t.textContent = content;
    return t;
  }

  function control(parent, label, role) {
    var wrap = el("label", { "class": "gpipe-explorer-control" }, parent);
    el("span", { "class": "gpipe-explorer-name" }, wrap).textContent = label;
    return wrap;
  }

  function slider(parent, label, role, max, value) {
    var wrap = control(parent, label, role);
    var input = el("input", { type: "range", min: 1, max: max, step: 1, value: value,
                              "data-role": role, "aria-label": label }, wrap);
    el("output", { "data-role": role + "-value" }, wrap).textContent = value;
    return input;
  }

  // A step of 1, 2 or 5 times a power of ten, so that tick labels are at least `room` pixels apart.
  function tickStep(span, width, room) {
    var raw = span * room / Math.max(width, 1), step = 1;
    while (step < raw) {
      step *= 10;
    }
    if (step / 5 >= raw) step /= 5;
    else if (step / 2 >= raw) step /= 2;
    return Math.max(step, 0.5);
  }

  function parse(token) {  // "F3:5" -> forward of micro-batch 3 on stage 5
    var colon = token.indexOf(":");
    return { kind: token[0], mb: +token.slice(1, colon), stage: +token.slice(colon + 1) };
  }

  // `at`: the preset (cost and link) whose timeline to draw; `cost`: the cost preset, which sets each box's length.
  function draw(svg, data, entry, at, cost, width) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var K = entry.order.length, T = entry.length[at] / data.unit, virtual = entry.virtual > 1;
    var starts = entry.start[at];
    if (typeof starts === "number") starts = entry.start[starts];  // the same timeline as that preset
    var chart = Math.max(width - LEFT - GAP - MEMORY, 60), scale = chart / T;
    var memory = entry.memory[at], height = K * ROW + AXIS, peak = Math.max.apply(null, memory.concat([1]));
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    var step = tickStep(T, chart, 44);
    for (var t = 0; t <= T + 1e-9; t += step) {
      var x = LEFT + t * scale;
      el("line", { x1: x, x2: x, y1: 0, y2: K * ROW, "class": "gpipe-explorer-grid" }, svg, true);
      text(svg, x, K * ROW + FONT + 4, String(+t.toFixed(2)), "gpipe-explorer-axis", "middle");
    }
    text(svg, LEFT + chart / 2, K * ROW + 2 * FONT + 6, "time (one forward = 1)", "gpipe-explorer-axis", "middle");
    text(svg, LEFT + chart + GAP, K * ROW + FONT + 4, "peak memory", "gpipe-explorer-axis");
    for (var d = 0; d < K; d++) {
      var y = d * ROW;
      text(svg, 0, y + ROW / 2 + FONT / 2 - 2, "device " + d, "gpipe-explorer-axis");
      el("rect", { x: LEFT, y: y + 2, width: chart, height: ROW - 4, "class": "gpipe-explorer-idle" }, svg, true);
      entry.order[d].split(" ").forEach(function (token, n) {
        var a = parse(token), start = starts[d][n] / data.unit, dur = data.costs[cost][a.kind];
        var box = el("rect", { x: LEFT + start * scale, y: y + 2, width: Math.max(dur * scale - 1, 1),
                               height: ROW - 4, fill: data.kinds[a.kind].color,
                               "data-action": a.kind + a.mb + "@" + a.stage, "data-device": d,
                               "data-start": start }, svg, true);
        el("title", {}, box, true).textContent = data.kinds[a.kind].label + " of micro-batch " + a.mb +
          " on stage " + a.stage + ", device " + d + ", from " + start + " to " + (start + dur);
        var label = a.kind + a.mb + (virtual ? ":" + a.stage : "");
        if (dur * scale >= label.length * 7 + 2) {
          text(svg, LEFT + (start + dur / 2) * scale, y + ROW / 2 + FONT / 2 - 2, label,
               "gpipe-explorer-label", "middle");
        }
      });
      var held = memory[d], bar = (MEMORY - 30) * held / peak;
      el("rect", { x: LEFT + chart + GAP, y: y + 5, width: Math.max(bar, 1), height: ROW - 10,
                   "class": "gpipe-explorer-memory", "data-memory": held }, svg, true);
      text(svg, LEFT + chart + GAP + bar + 4, y + ROW / 2 + FONT / 2 - 2, String(held), "gpipe-explorer-axis");
    }
  }

  function legend(parent, data, entry) {
    parent.textContent = "";
    var kinds = {};
    entry.order.forEach(function (row) { row.split(" ").forEach(function (t) { kinds[t[0]] = true; }); });
    Object.keys(data.kinds).filter(function (k) { return kinds[k]; }).forEach(function (k) {
      var item = el("span", { "class": "gpipe-explorer-key" }, parent);
      el("span", { "class": "gpipe-explorer-swatch", style: "background:" + data.kinds[k].color }, item);
      item.appendChild(document.createTextNode(k + " " + data.kinds[k].label));
    });
    var idle = el("span", { "class": "gpipe-explorer-key" }, parent);
    el("span", { "class": "gpipe-explorer-swatch gpipe-explorer-swatch-idle" }, idle);
    idle.appendChild(document.createTextNode("idle (the bubble)"));
    var mem = el("span", { "class": "gpipe-explorer-key" }, parent);
    el("span", { "class": "gpipe-explorer-swatch gpipe-explorer-swatch-memory" }, mem);
    mem.appendChild(document.createTextNode("peak micro-batches of activations held"));
  }

  function fmt(x) { return x.toLocaleString("en", { maximumFractionDigits: 1 }); }

  function build(root, data) {
    root.textContent = "";
    var controls = el("div", { "class": "gpipe-explorer-controls" }, root);
    var k = slider(controls, "K devices", "K", data.maxK, root.dataset.k || 4);
    var m = slider(controls, "M micro-batches", "M", data.maxM, root.dataset.m || 4);
    var pick = control(controls, "schedule", "schedule");
    var select = el("select", { "data-role": "schedule", "aria-label": "schedule" }, pick);
    Object.keys(data.schedules).forEach(function (name) {
      el("option", { value: name }, select).textContent = data.schedules[name].label;
    });
    select.value = root.dataset.schedule || Object.keys(data.schedules)[0];
    var costWrap = control(controls, "cost F : I : W", "cost");
    var cost = el("input", { type: "range", min: 0, max: data.costs.length - 1, step: 1,
                             value: root.dataset.cost || 0, "data-role": "cost",
                             "aria-label": "cost of forward : input gradient : weight gradient" }, costWrap);
    var costShown = el("output", { "data-role": "cost-value" }, costWrap);
    var links = data.comms || ["free"];
    var linkWrap = control(controls, "link between devices", "link");
    var link = el("input", { type: "range", min: 0, max: links.length - 1, step: 1,
                             value: root.dataset.link || 0, "data-role": "link",
                             "aria-label": "communication cost of a hop between devices" }, linkWrap);
    var linkShown = el("output", { "data-role": "link-value" }, linkWrap);
    var note = el("p", { "class": "gpipe-explorer-note", "data-role": "note" }, root);
    var figure = el("div", { "class": "gpipe-explorer-figure" }, root);
    var svg = el("svg", { role: "img", "aria-label": "pipeline schedule Gantt chart" }, figure, true);
    var keys = el("div", { "class": "gpipe-explorer-legend" }, root);
    var readout = el("dl", { "class": "gpipe-explorer-readout" }, root);
    function item(term, role) {
      el("dt", {}, readout).textContent = term;
      return el("dd", { "data-role": role }, readout);
    }
    var length = item("step time", "ticks");
    var bubble = item("bubble read off the chart", "bubble");
    var formula = item("GPipe's bubble (K-1)/(M+K-1)", "bubble-formula");
    var inflight = item("peak memory per device (micro-batches)", "inflight");
    var memory = item("GPipe's memory law per stage", "memory");

    function update() {
      var K = +k.value, M = +m.value, name = select.value, c = +cost.value, l = +link.value, preset = data.costs[c];
      k.parentNode.querySelector("output").textContent = K;
      m.parentNode.querySelector("output").textContent = M;
      costShown.textContent = preset.label;
      linkShown.textContent = links[l];
      load(data, name, function () { show(K, M, name, c, l, preset); });
    }

    function show(K, M, name, c, l, preset) {
      if (+k.value !== K || +m.value !== M || select.value !== name || +cost.value !== c ||
          +link.value !== l) return;  // moved on
      var at = l * data.costs.length + c;  // the preset of this cost and this link
      var schedule = data.schedules[name], entry = schedule.entries[K + "," + M];
      var ok = !entry.why;
      figure.style.display = keys.style.display = readout.style.display = ok ? "" : "none";
      note.textContent = ok ? (schedule.virtual > 1 ? "Each device holds " + schedule.virtual +
        " stages (chunks of the model); a box is one chunk's action, labelled micro-batch:stage, " +
        "and costs 1/" + schedule.virtual + " of a whole device's." : "")
        : schedule.label + " has no table for K = " + K + ", M = " + M + ": " + entry.why;
      if (!ok) return;
      draw(svg, data, entry, at, c, Math.floor(figure.clientWidth) || 600);
      legend(keys, data, entry);
      length.textContent = fmt(entry.length[at] / data.unit) + " (one forward = 1, one backward = " +
        fmt(preset.B) + ")";
      bubble.textContent = entry.bubble[at].toFixed(3);
      formula.textContent = "(" + K + "-1)/(" + M + "+" + K + "-1) = " + entry.bubble_formula.toFixed(3);
      inflight.textContent = "[" + entry.memory[at].map(fmt).join(", ") + "] of M = " + M + " (device 0 first)";
      memory.textContent = fmt(entry.memory_remat) + " units with re-materialisation, N + (L/K)(N/M); " +
        fmt(entry.memory_stored) + " without, N\u00b7L/K (N=" + data.N + ", L=" + data.L +
        "; one unit = one sample's activation at one layer)";
    }
    [k, m, cost, link].forEach(function (input) { input.addEventListener("input", update); });
    select.addEventListener("change", update);
    var width = 0;
    window.addEventListener("resize", function () {
      if (figure.clientWidth !== width) { width = figure.clientWidth; update(); }
    });
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
