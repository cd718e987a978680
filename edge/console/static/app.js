"use strict";
// The sip-edge console. Every value from the server is put into the page with textContent or as an
// attribute value through the DOM (never innerHTML), so caller names and numbers cannot become markup.

const state = {me: null, stream: null, filters: {since: "1d", number: "", decision: "", kind: "", flagged: false},
               rows: new Map()};

// Bidirectional controls (U+202A-202E, U+2066-2069, marks) in a caller name could reorder what an operator
// reads ("evil" shown as "live"): they are shown as visible code points instead of being obeyed.
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
function visible(text) {
  return text.replace(BIDI, (c) => `[U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}]`);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === "function") node.addEventListener(k.replace(/^on/, ""), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(visible(String(c))));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = {};
  if (method !== "GET") headers["X-CSRF-Token"] = state.me ? state.me.csrf : "";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {method, headers, credentials: "same-origin",
                                  body: body === undefined ? undefined : JSON.stringify(body)});
  if (resp.status === 401) {
    window.location.assign("/login");
    throw new ApiError(401, "logged out");
  }
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new ApiError(resp.status, data.error || `request failed (${resp.status})`);
  return data;
}

function notice(text, isError) {
  const n = document.getElementById("notice");
  n.textContent = text;
  n.className = isError ? "error" : "ok";
}

function fmtTime(ts) {
  if (ts === null || ts === undefined) return "-";
  return new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19);
}

function fmtLeft(seconds) {
  if (seconds <= 0) return "now";
  const d = Math.floor(seconds / 86400), h = Math.floor((seconds % 86400) / 3600), m = Math.floor((seconds % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m`;
}

// --- evidence in words --------------------------------------------------------------------------
const SIGNAL_WORDS = {
  "block": "blocked by rule", "allow": "allowed by rule", "block.dry_run": "would be blocked (dry run)",
  "allow.dry_run": "would be allowed (dry run)",
};

function evidenceWords(a) {
  const lines = [];
  let verdict = `${a.decision || "pending"}`;
  if (a.final_status) verdict += ` (SIP ${a.final_status})`;
  if (a.rule_id) verdict += ` by ${a.rule_id}`;
  if (a.reason) verdict += `: ${a.reason}`;
  lines.push(verdict);
  if (a.dry_run && a.would) lines.push(`dry run: would have been ${a.would}`);
  if (a.stir_status) {
    let stir = `STIR/SHAKEN ${a.stir_status}`;
    if (a.stir_attestation) stir += `, attestation ${a.stir_attestation}`;
    if (a.stir_code) stir += ` (${a.stir_code})`;
    lines.push(stir);
  }
  for (const e of a.evidence || []) {
    const what = SIGNAL_WORDS[e.signal] || e.signal.replace(/[._]/g, " ");
    let line = what;
    if (e.detail) line += `: ${e.detail}`;
    if (e.weight) line += ` (+${e.weight})`;
    lines.push(line);
  }
  if (a.score) lines.push(`Spam Detective score ${a.score}`);
  if (a.screening_mode) lines.push(`screening: ${a.screening_mode}${a.answered_at ? ", answered" : ""}`);
  if (a.target) lines.push(`delivered to ${a.target}`);
  if (a.voicemail_path) lines.push("left a voicemail");
  return lines;
}

// --- activities ---------------------------------------------------------------------------------
const DECISIONS = ["", "allow", "reject", "captcha", "menu", "voicemail", "intercept"];
const SINCE = {"15m": "last 15 minutes", "1h": "last hour", "1d": "last day", "7d": "last 7 days", "30d": "last 30 days"};

function matchesFilters(a) {
  const f = state.filters;
  if (f.decision && a.decision !== f.decision) return false;
  if (f.kind && a.kind !== f.kind) return false;
  if (f.flagged && !a.flagged) return false;
  if (f.number && !(a.calling_number.includes(f.number) || a.called_number.includes(f.number))) return false;
  return true;
}

function flagForm(a, cell) {
  const me = state.me;
  const scopes = [["number", `this number (${a.called_number})`], ["customer", "all my numbers"]];
  if (me.operator) scopes.push(["global", "every customer (global)"]);
  const by = el("select", {name: "by", "aria-label": "block by"},
                el("option", {value: "number"}, `number ${a.calling_number || "(anonymous)"}`),
                a.cnam ? el("option", {value: "cnam"}, `caller name ${a.cnam}`) : null);
  const scope = el("select", {name: "scope", "aria-label": "scope"}, scopes.map(([v, t]) => el("option", {value: v}, t)));
  const expiry = el("select", {name: "expiry", "aria-label": "expires"},
                    [["", "never expires"], ["1d", "1 day"], ["7d", "7 days"], ["30d", "30 days"], ["90d", "90 days"]]
                      .map(([v, t]) => el("option", {value: v}, t)));
  const form = el("form", {class: "flag-form"}, "Block by ", by, " for ", scope, " ", expiry, " ",
                  el("button", {type: "submit", class: "block-button"}, "Block"),
                  el("button", {type: "button", onclick: () => form.remove()}, "Cancel"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = {by: by.value, scope: scope.value};
    if (expiry.value) body.expires_in = expiry.value;
    try {
      const res = await api("POST", `/activities/${encodeURIComponent(a.id)}/flag`, body);
      form.remove();
      const rule = res.rule;
      const undo = el("button", {type: "button", class: "undo-button", onclick: async () => {
        try {
          await api("DELETE", `/blocks/${encodeURIComponent(rule.id)}`);
          blocked.replaceWith(el("span", {class: "muted"}, "block undone"));
        } catch (e) { notice(e.message, true); }
      }}, "Undo");
      const blocked = el("span", {class: "blocked"}, `blocked (${rule.id}) `, undo);
      cell.append(blocked);
      notice(`Future ${rule.kind === "cnam" ? "calls named " + rule.value : "calls from " + rule.value} are blocked (${rule.scope}).`);
    } catch (e) { notice(e.message, true); }
  });
  return form;
}

function activityRow(a) {
  const actions = el("td", {class: "actions"});
  if (state.me.can_edit) {
    actions.append(el("button", {type: "button", class: "flag-button", onclick: (ev) => {
      if (!actions.querySelector("form")) actions.append(flagForm(a, actions));
    }}, "Flag"));
  }
  if (a.flagged) actions.prepend(el("span", {class: "tag"}, "flagged"));
  return el("tr", {dataset: {id: a.id}, class: `decision-${a.decision}`},
            el("td", {}, fmtTime(a.received_at)),
            el("td", {}, a.kind),
            el("td", {class: "caller"}, el("div", {class: "number"}, a.calling_number || "anonymous"),
               el("div", {class: "cnam"}, a.cnam)),
            el("td", {}, a.called_number),
            el("td", {class: "decision"}, a.decision),
            el("td", {class: "evidence"}, el("ul", {}, evidenceWords(a).map((t) => el("li", {}, t)))),
            actions);
}

function upsert(tbody, a, live) {
  if (!matchesFilters(a)) return;
  const row = activityRow(a);
  const old = state.rows.get(a.id);
  if (old && old.isConnected) {
    if (old.querySelector("form, .blocked")) return; // the user is acting on this row: keep it
    old.replaceWith(row);
  } else {
    if (live) row.classList.add("new");
    tbody.prepend(row);
  }
  state.rows.set(a.id, row);
}

async function pageActivities(main) {
  const f = state.filters;
  const since = el("select", {id: "f-since", "aria-label": "time"},
                   Object.entries(SINCE).map(([v, t]) => el("option", {value: v, selected: v === f.since}, t)));
  const number = el("input", {id: "f-number", placeholder: "number", value: f.number, "aria-label": "number"});
  const decision = el("select", {id: "f-decision", "aria-label": "decision"},
                      DECISIONS.map((d) => el("option", {value: d, selected: d === f.decision}, d || "any decision")));
  const kind = el("select", {id: "f-kind", "aria-label": "channel"},
                  ["", "call", "message", "fax"].map((k) => el("option", {value: k, selected: k === f.kind}, k || "any channel")));
  const flagged = el("input", {id: "f-flagged", type: "checkbox", checked: f.flagged});
  const tbody = el("tbody", {id: "activity-rows"});
  const form = el("form", {class: "filters"}, since, number, decision, kind, el("label", {}, flagged, " flagged only"),
                  el("button", {type: "submit"}, "Filter"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    Object.assign(state.filters, {since: since.value, number: number.value.trim(), decision: decision.value,
                                  kind: kind.value, flagged: flagged.checked});
    render();
  });
  main.append(el("h1", {}, "Activities"), form,
              el("p", {class: "muted", id: "live-status"}, "live: connecting"),
              el("table", {class: "activities"},
                 el("thead", {}, el("tr", {}, ["Received (UTC)", "Channel", "Caller", "Called", "Decision",
                                              "Evidence", ""].map((h) => el("th", {}, h)))),
                 tbody));
  const q = new URLSearchParams({since: f.since, limit: "200"});
  if (f.decision) q.set("decision", f.decision);
  if (f.flagged) q.set("flagged", "true");
  if (/^\+?[0-9]{6,}$/.test(f.number)) q.set("number", f.number);
  state.rows = new Map();
  const page = await api("GET", `/activities?${q}`);
  for (const a of page.items.slice().reverse()) upsert(tbody, a, false);
  let cursor = page.next_cursor;
  const more = el("button", {type: "button", id: "older", onclick: async () => {
    q.set("cursor", cursor);
    try {
      const older = await api("GET", `/activities?${q}`);
      for (const a of older.items) {
        if (!matchesFilters(a) || state.rows.has(a.id)) continue;
        const row = activityRow(a);
        tbody.append(row);
        state.rows.set(a.id, row);
      }
      cursor = older.next_cursor;
      more.hidden = !cursor;
    } catch (e) { notice(e.message, true); }
  }}, "Older");
  more.hidden = !cursor;
  main.append(more);
  const stream = new EventSource("/console/events");
  state.stream = stream;
  const status = document.getElementById("live-status");
  stream.onopen = () => { status.textContent = "live: connected"; status.dataset.live = "1"; };
  stream.onerror = () => { status.textContent = "live: reconnecting"; status.dataset.live = "0"; };
  stream.addEventListener("activity", (ev) => upsert(tbody, JSON.parse(ev.data), true));
}

// --- rules --------------------------------------------------------------------------------------
async function pageRules(main) {
  const data = await api("GET", "/console/rules");
  const me = state.me;
  main.append(el("h1", {}, "Rules"));
  if (me.can_edit) {
    const kind = el("select", {name: "kind", "aria-label": "kind"},
                    ["number", "cnam", "prefix", "anonymous", "invalid", "country"].map((k) => el("option", {value: k}, k)));
    const value = el("input", {name: "value", placeholder: "value (number, name pattern, prefix, country)"});
    const allow = el("select", {name: "allow", "aria-label": "block or allow"},
                     el("option", {value: "false"}, "block"), el("option", {value: "true"}, "allow"));
    const scopes = [["customer", "all my numbers"], ["number", "one number"]];
    if (me.operator) scopes.push(["global", "global"]);
    const scope = el("select", {name: "scope", "aria-label": "scope"}, scopes.map(([v, t]) => el("option", {value: v}, t)));
    const scopeValue = el("input", {name: "scope_value", placeholder: "number or customer (scope)"});
    const expiry = el("input", {name: "expires_in", placeholder: "expires in (e.g. 30d)"});
    const dry = el("input", {type: "checkbox", name: "dry_run"});
    const form = el("form", {class: "rule-form"}, allow, kind, value, scope, scopeValue, expiry,
                    el("label", {}, dry, " dry run"), el("button", {type: "submit"}, "Add rule"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = {kind: kind.value, value: value.value.trim(), scope: scope.value, allow: allow.value === "true",
                    dry_run: dry.checked};
      if (scopeValue.value.trim()) body.scope_value = scopeValue.value.trim();
      else if (scope.value === "customer" && me.customer) body.scope_value = me.customer;
      if (expiry.value.trim()) body.expires_in = expiry.value.trim();
      try { await api("POST", "/blocks", body); notice("rule added"); render(); } catch (e) { notice(e.message, true); }
    });
    main.append(form);
  }
  const rows = data.rules.map((r) => {
    const actions = el("td", {});
    if (!r.editable) actions.append(el("span", {class: "muted"}, `from ${r.source}`));
    else if (me.can_edit) {
      actions.append(
        el("button", {type: "button", onclick: async () => {
          try { await api("POST", `/console/rules/${encodeURIComponent(r.id)}/dry-run`, {dry_run: !r.dry_run}); render(); }
          catch (e) { notice(e.message, true); }
        }}, r.dry_run ? "Enforce" : "Dry run"),
        el("button", {type: "button", onclick: async () => {
          try { await api("DELETE", `/blocks/${encodeURIComponent(r.id)}`); notice(`rule ${r.id} removed`); render(); }
          catch (e) { notice(e.message, true); }
        }}, "Remove"));
    }
    return el("tr", {dataset: {id: r.id}},
              el("td", {}, r.id), el("td", {}, r.allow ? "allow" : `block (${r.action}${r.action === "reject" ? " " + r.sip_status : ""})`),
              el("td", {}, `${r.kind}${r.value ? " " + r.value : ""}`),
              el("td", {}, `${r.scope}${r.scope_value ? " " + r.scope_value : ""}`),
              el("td", {}, String(r.hits)), el("td", {}, fmtTime(r.last_hit)),
              el("td", {}, r.expires_at ? fmtTime(r.expires_at) : "never"),
              el("td", {}, r.dry_run ? "yes" : "no"), el("td", {}, r.reason), actions);
  });
  main.append(el("table", {class: "rules"},
                 el("thead", {}, el("tr", {}, ["Rule", "Action", "Match", "Scope", "Hits", "Last hit (UTC)", "Expires",
                                              "Dry run", "Reason", ""].map((h) => el("th", {}, h)))),
                 el("tbody", {}, rows)));
  if (!rows.length) main.append(el("p", {class: "muted"}, "No runtime rules yet: flag an activity to make one."));
}

// --- numbers ------------------------------------------------------------------------------------
async function pageNumbers(main) {
  const me = state.me;
  const data = await api("GET", "/console/numbers");
  main.append(el("h1", {}, "Numbers"));
  const now = Date.now() / 1000;
  for (const n of data.numbers) {
    const s = n.status;
    const section = el("section", {class: "number", dataset: {number: n.number}},
                       el("h2", {}, n.number, " ", el("span", {class: `tag state-${n.state}`}, n.state)),
                       el("p", {}, `customer ${n.customer || "-"}`));
    if (s && (s.state === "released" || s.state === "eligible")) {
      const left = s.eligible_at ? s.eligible_at - now : 0;
      section.append(el("p", {class: "countdown"}, `released ${fmtTime(s.released_at)} UTC, ${s.days_in_quarantine} day(s) in quarantine; `,
                        s.state === "eligible" ? "eligible for reassignment now" :
                          `eligible in ${fmtLeft(left)} at the earliest (${fmtTime(s.eligible_at)} UTC)`,
                        s.reason ? `: ${s.reason}` : ""));
      section.append(el("p", {class: "muted"}, `residual traffic per day since release, last ${n.residual_daily.length} day(s) of the quiet window (total since release ${s.total_residual})`),
                     window.charts.bars(n.residual_daily.map(([d, c]) => ({label: d.slice(5), value: c})), {height: 120}));
    }
    if (me.can_edit) {
      const out = el("p", {class: "result", role: "status"});
      if (n.state === "assigned" || n.state === "reassigned") {
        section.append(el("button", {type: "button", class: "release-button", onclick: async () => {
          try { await api("POST", `/numbers/${encodeURIComponent(n.number)}/release`, {}); notice(`${n.number} released`); render(); }
          catch (e) { out.textContent = e.message; out.className = "error"; }
        }}, "Release"));
      } else {
        section.append(el("button", {type: "button", class: "assign-button", onclick: async () => {
          try {
            await api("POST", `/numbers/${encodeURIComponent(n.number)}/assign`, {customer: me.customer || n.customer});
            notice(`${n.number} assigned`); render();
          } catch (e) { out.textContent = `refused: ${e.message}`; out.className = "error refusal"; }
        }}, "Assign back"));
      }
      section.append(out);
    }
    main.append(section);
  }
  if (!data.numbers.length) main.append(el("p", {class: "muted"}, "No numbers."));
}

// --- voicemail ----------------------------------------------------------------------------------
async function pageVoicemail(main) {
  const data = await api("GET", "/voicemail?since=30d");
  main.append(el("h1", {}, "Voicemail"));
  const rows = data.voicemail.map((v) => {
    const src = `/voicemail/${encodeURIComponent(v.activity_id)}/audio`;
    const actions = el("td", {}, el("a", {href: `${src}?download=1`, download: `voicemail-${v.activity_id}.wav`}, "Download"));
    if (state.me.can_edit) {
      actions.append(" ", el("button", {type: "button", onclick: async () => {
        try { await api("DELETE", `/voicemail/${encodeURIComponent(v.activity_id)}`); notice("message deleted"); render(); }
        catch (e) { notice(e.message, true); }
      }}, "Delete"));
    }
    return el("tr", {dataset: {id: v.activity_id}},
              el("td", {}, fmtTime(v.received_at)),
              el("td", {class: "caller"}, el("div", {class: "number"}, v.calling_number || "anonymous"), el("div", {class: "cnam"}, v.cnam)),
              el("td", {}, v.called_number),
              el("td", {}, el("audio", {controls: true, preload: "metadata", src})),
              actions);
  });
  main.append(el("table", {class: "voicemail"},
                 el("thead", {}, el("tr", {}, ["Received (UTC)", "Caller", "Called", "Message", ""].map((h) => el("th", {}, h)))),
                 el("tbody", {}, rows)));
  if (!rows.length) main.append(el("p", {class: "muted"}, "No messages in the last 30 days."));
}

// --- dashboard ----------------------------------------------------------------------------------
async function pageDashboard(main) {
  const windowName = state.dashWindow || "1h";
  const s = await api("GET", `/console/stats?window=${windowName}`);
  const pick = el("select", {id: "dash-window", "aria-label": "window", onchange: (ev) => { state.dashWindow = ev.target.value; render(); }},
                  el("option", {value: "1h", selected: windowName === "1h"}, "last hour"),
                  el("option", {value: "1d", selected: windowName === "1d"}, "last day"));
  const perMinute = s.bucket / 60;
  const series = Object.entries(s.per_decision).map(([decision, counts]) => ({name: decision, values: counts.map((n) => n / perMinute)}));
  const labels = (i) => fmtTime(s.start + i * s.bucket).slice(11, 16);
  main.append(el("h1", {}, "Dashboard"), pick,
              el("p", {class: "muted"}, `${s.total} contacts${s.truncated ? " (newest counted only)" : ""}`),
              el("div", {class: "charts"},
                 el("figure", {id: "chart-decisions"}, el("figcaption", {}, "Calls per minute by decision"),
                    window.charts.lines(series, {labels})),
                 el("figure", {id: "chart-stir"}, el("figcaption", {}, "STIR/SHAKEN results"),
                    window.charts.bars(s.stir.map(([k, n]) => ({label: k, value: n})), {horizontal: true})),
                 el("figure", {id: "chart-callers"}, el("figcaption", {}, "Top blocked callers"),
                    window.charts.bars(s.top_callers.map(([k, n]) => ({label: k, value: n})), {horizontal: true})),
                 el("figure", {id: "chart-names"}, el("figcaption", {}, "Top blocked caller names"),
                    window.charts.bars(s.top_names.map(([k, n]) => ({label: k, value: n})), {horizontal: true})),
                 el("figure", {id: "chart-scores"}, el("figcaption", {}, "Spam Detective score distribution"),
                    window.charts.bars(s.scores.map((n, i) => ({label: i === 10 ? "100+" : `${i * 10}`, value: n}))))));
}

// --- shell --------------------------------------------------------------------------------------
const PAGES = {activities: pageActivities, rules: pageRules, numbers: pageNumbers, voicemail: pageVoicemail,
               dashboard: pageDashboard};

async function render() {
  if (state.stream) { state.stream.close(); state.stream = null; }
  const name = (window.location.hash.slice(1) || "activities");
  const page = PAGES[name] ? name : "activities";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("current", a.dataset.page === page);
  const main = document.getElementById("page");
  main.replaceChildren();
  delete main.dataset.ready;
  main.dataset.page = page;
  try {
    await PAGES[page](main);
    main.dataset.ready = "1";
  } catch (e) {
    if (e.status !== 401) main.append(el("p", {class: "error"}, e.message));
  }
}

async function start() {
  state.me = await api("GET", "/me");
  const me = state.me;
  document.getElementById("who").textContent =
    `${me.user} (${me.role}${me.customer ? ", " + me.customer : ", all customers"})`;
  document.getElementById("logout").addEventListener("click", async () => {
    try { await api("POST", "/logout"); } finally { window.location.assign("/login"); }
  });
  window.addEventListener("hashchange", render);
  await render();
}

start();
