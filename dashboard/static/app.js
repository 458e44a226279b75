// multichannel dashboard: live overview (server-sent events) and its SVG chart. Every value from Kafka
// reaches the page through textContent or an SVG text node, never through HTML parsing.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const fmt = new Intl.NumberFormat("en-US");

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function when(iso) {
  return iso ? iso.slice(0, 19).replace("T", " ") : "";
}

function seg(value) {
  return encodeURIComponent(value);
}

function chip(decision, label, prefix) {
  return el("span", { class: `chip ${prefix}-${decision}` }, label || decision);
}

function drawChart(container, points) {
  const width = 960, height = 220, left = 44, right = 10, top = 12, bottom = 26;
  const max = Math.max(1, ...points.map((p) => p.count));
  const step = niceStep(max);
  const ceiling = Math.ceil(max / step) * step;
  const plotW = width - left - right, plotH = height - top - bottom;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none" });
  for (let v = 0; v <= ceiling; v += step) {
    const y = top + plotH - (v / ceiling) * plotH;
    root.append(svg("line", { class: "grid-line", x1: left, x2: width - right, y1: y, y2: y }));
    const label = svg("text", { class: "axis", x: left - 8, y: y + 4, "text-anchor": "end" });
    label.textContent = fmt.format(v);
    root.append(label);
  }
  const slot = plotW / Math.max(1, points.length);
  points.forEach((p, i) => {
    const h = (p.count / ceiling) * plotH;
    const bar = svg("rect", {
      class: "bar", x: left + i * slot + 1, y: top + plotH - h, width: Math.max(1, slot - 2), height: h, rx: 1.5,
    });
    const title = svg("title");
    title.textContent = `${p.minute.slice(11, 16)} UTC: ${fmt.format(p.count)} decisions`;
    bar.append(title);
    root.append(bar);
    if (i % 10 === 0 || i === points.length - 1) {
      const label = svg("text", { class: "axis", x: left + i * slot + slot / 2, y: height - 8, "text-anchor": "middle" });
      label.textContent = p.minute.slice(11, 16);
      root.append(label);
    }
  });
  container.replaceChildren(root);
}

function niceStep(max) {
  const raw = max / 4;
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return Math.max(1, m * power);
  return Math.max(1, 10 * power);
}

function barRows(tbody, items, key, prefix) {
  const top = Math.max(0, ...items.map((i) => i.count));
  tbody.replaceChildren(...items.map((item) => {
    const fill = el("span", { class: `${prefix}-${item[key]}`, style: `width: ${top ? (100 * item.count / top).toFixed(1) : 0}%` });
    return el("tr", {},
      el("td", {}, chip(item[key], item.label, prefix)),
      el("td", { class: "num" }, fmt.format(item.count)),
      el("td", { class: "bar" }, fill));
  }));
}

function renderOverview(data) {
  for (const [name, value] of Object.entries({
    accounts: data.accounts, partners: data.partners, subscriptions: data.subscriptions, decisions_seen: data.decisions_seen,
  })) {
    const node = document.querySelector(`[data-kpi="${name}"]`);
    if (node) node.textContent = fmt.format(value);
  }
  const service = data.status.service;
  const lag = document.querySelector('[data-kpi="lag"]');
  if (lag) lag.textContent = service && service.lag !== null ? fmt.format(Math.round(service.lag)) : "–";
  const rate = document.querySelector('[data-kpi="throughput"]');
  if (rate) rate.textContent = service && service.events_per_s !== null ? `${fmt.format(Math.round(service.events_per_s))} ev/s` : "–";
  barRows(document.querySelector("#decisions tbody"), data.decisions, "decision", "d");
  barRows(document.querySelector("#statuses tbody"), data.statuses, "status", "s");
  const dead = document.querySelector("#dead-letters tbody");
  dead.replaceChildren(...(data.dead_letters.length ? data.dead_letters.map((r) =>
    el("tr", {}, el("td", {}, el("code", {}, r.reason)), el("td", { class: "num" }, fmt.format(r.count))))
    : [el("tr", {}, el("td", { class: "muted" }, "none"), el("td"))]));
  const recent = document.querySelector("#recent tbody");
  recent.replaceChildren(...(data.recent.length ? data.recent.map((r) => el("tr", {},
    el("td", { class: "time" }, when(r.decided_at)),
    el("td", {}, el("a", { href: `/partners/${seg(r.partner_id)}` }, r.partner_id)),
    el("td", {}, el("a", { href: `/partners/${seg(r.partner_id)}/customers/${seg(r.customer_id)}` }, r.customer_id)),
    el("td", {}, el("code", {}, r.subscription_id)),
    el("td", {}, chip(r.decision, r.decision_label, "d")),
    el("td", {}, el("a", { class: "rule", href: r.rule_link, title: r.rule_text }, r.rule)),
  )) : [el("tr", {}, el("td", { colspan: "6", class: "muted" }, "No decision yet."))]));
  drawChart(document.getElementById("chart"), data.per_minute);
  renderStatus(data.status);
}

function renderStatus(status) {
  const banner = document.getElementById("banner");
  const live = document.getElementById("live");
  if (status.feed_error) {
    banner.textContent = `Kafka: ${status.feed_error}`;
    banner.hidden = false;
  } else if (!status.caught_up) {
    banner.textContent = `catching up: ${fmt.format(status.behind)} records behind`;
    banner.hidden = false;
  } else {
    banner.hidden = true;
  }
  live.className = `live ${status.caught_up ? "on" : "off"}`;
  live.textContent = status.caught_up ? "Live" : "Loading";
}

function startOverview() {
  const initial = document.getElementById("overview-data");
  if (initial) drawChart(document.getElementById("chart"), JSON.parse(initial.textContent).per_minute);
  const source = new EventSource("/api/stream");
  source.addEventListener("overview", (event) => {
    const data = JSON.parse(event.data);
    renderOverview(data);
    document.body.dataset.version = String(data.version);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.page === "overview") startOverview();
});
