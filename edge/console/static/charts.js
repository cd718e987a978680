"use strict";
// Small inline-SVG charts built with DOM calls (labels via textContent): no library, no inline script.
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;  // shown, never obeyed (see app.js)
  const COLORS = {allow: "#2e7d32", reject: "#c62828", captcha: "#ef6c00", menu: "#1565c0", voicemail: "#6a1b9a",
                  intercept: "#546e7a"};
  const PALETTE = ["#1565c0", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a", "#546e7a", "#00838f"];

  function svg(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text).replace(BIDI, (c) => `[U+${c.codePointAt(0).toString(16).toUpperCase()}]`);
    return node;
  }

  function frame(width, height, label) {
    return svg("svg", {viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label, class: "chart"});
  }

  // items: [{label, value}]; vertical bars, or horizontal bars with the label on the left.
  function bars(items, opts) {
    opts = opts || {};
    const max = Math.max(1, ...items.map((i) => i.value));
    if (opts.horizontal) {
      const rowH = 22, width = 460, labelW = 200, height = Math.max(rowH, items.length * rowH) + 4;
      const root = frame(width, height, "bar chart");
      if (!items.length) root.append(svg("text", {x: 4, y: 16, class: "empty"}, "no data"));
      items.forEach((item, i) => {
        const w = Math.max(1, (width - labelW - 50) * item.value / max);
        const y = i * rowH + 2;
        root.append(svg("text", {x: labelW - 6, y: y + 15, "text-anchor": "end", class: "label"}, item.label),
                    svg("rect", {x: labelW, y, width: w, height: rowH - 6, fill: PALETTE[i % PALETTE.length], class: "bar"}),
                    svg("text", {x: labelW + w + 4, y: y + 15, class: "value"}, item.value));
      });
      return root;
    }
    const width = Math.max(240, items.length * 34 + 20), height = opts.height || 160, base = height - 22;
    const root = frame(width, height, "bar chart");
    items.forEach((item, i) => {
      const h = (base - 14) * item.value / max;
      const x = 10 + i * 34;
      root.append(svg("rect", {x, y: base - h, width: 26, height: Math.max(h, 0.5), fill: "#1565c0", class: "bar"}),
                  svg("text", {x: x + 13, y: height - 6, "text-anchor": "middle", class: "label"}, item.label),
                  svg("text", {x: x + 13, y: base - h - 3, "text-anchor": "middle", class: "value"}, item.value || ""));
    });
    return root;
  }

  // series: [{name, values[]}] sharing one x axis; labels(i) names a bucket.
  function lines(series, opts) {
    opts = opts || {};
    const width = 640, height = 200, left = 36, base = height - 26, right = width - 110;
    const root = frame(width, height, "line chart");
    const n = Math.max(1, ...series.map((s) => s.values.length));
    const max = Math.max(1, ...series.flatMap((s) => s.values));
    const x = (i) => left + (right - left) * (n === 1 ? 0.5 : i / (n - 1));
    const y = (v) => base - (base - 10) * v / max;
    root.append(svg("line", {x1: left, y1: base, x2: right, y2: base, class: "axis"}),
                svg("text", {x: 2, y: 14, class: "label"}, max.toFixed(max < 10 ? 1 : 0)),
                svg("text", {x: 2, y: base, class: "label"}, "0"));
    for (const i of [0, Math.floor((n - 1) / 2), n - 1]) {
      if (opts.labels) root.append(svg("text", {x: x(i), y: height - 8, "text-anchor": "middle", class: "label"}, opts.labels(i)));
    }
    if (!series.length) root.append(svg("text", {x: left + 10, y: base / 2, class: "empty"}, "no contacts in this window"));
    series.forEach((s, k) => {
      const color = COLORS[s.name] || PALETTE[k % PALETTE.length];
      const points = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
      root.append(svg("polyline", {points, fill: "none", stroke: color, "stroke-width": 2, class: "series"}),
                  svg("text", {x: right + 8, y: 16 + k * 16, fill: color, class: "legend"}, s.name));
    });
    return root;
  }

  window.charts = {bars, lines};
})();
