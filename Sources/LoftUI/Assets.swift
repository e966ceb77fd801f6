// The UI's one script and its stylesheet, served from the binary itself
// (no files to install, nothing from another origin).

enum Assets {
    static let script = #"""
"use strict";
// Loft UI: live updates for pages rendered by the server. Charts are SVG drawn
// by the server; this script only asks for them again when new points arrive.
(function () {
  const $ = (s, el) => (el || document).querySelector(s);
  const $$ = (s, el) => Array.from((el || document).querySelectorAll(s));
  const fmt = (x) => x == null || !isFinite(x) ? "–" : (x !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e6)) ? x.toExponential(2) : String(Number(x.toPrecision(4)));
  const active = (s) => s === "queued" || s === "running";

  function setBadge(el, status) {
    if (!el) return;
    el.textContent = status;
    el.className = "badge " + status;
  }

  async function refreshCharts(root) {
    for (const div of $$("[data-chart]", root)) {
      try {
        const r = await fetch(div.dataset.chart, { cache: "no-store" });
        if (r.ok) div.innerHTML = await r.text();
      } catch (e) { /* the next event retries */ }
    }
  }

  // A run's page: points arrive as server-sent events whose ids are steps;
  // the browser sends Last-Event-ID when it reconnects and the server replays.
  function runPage(run) {
    const id = run.dataset.run;
    let status = run.dataset.status;
    const wasActive = active(status);
    let dirty = false;
    window.loftPoints = Number(run.dataset.after) >= 0 ? Number(run.dataset.after) : 0;
    const es = new EventSource("/runs/" + encodeURIComponent(id) + "/events?after=" + run.dataset.after);
    es.addEventListener("step", (ev) => {
      const p = JSON.parse(ev.data);
      window.loftPoints = p.step;
      for (const k of ["loss", "tokens_per_s", "lr"]) {
        const el = $('[data-live="' + k + '"]');
        if (el && p[k] != null) el.textContent = fmt(p[k]);
      }
      const step = $('[data-live="step"]');
      if (step) step.textContent = step.textContent.replace(/^[^/]*/, p.step + " ");
      if (p.eval_loss != null) {
        const best = $('[data-live="eval_loss"]');
        const cur = best ? parseFloat(best.textContent) : NaN;
        if (best && (!isFinite(cur) || p.eval_loss < cur)) best.textContent = fmt(p.eval_loss);
      }
      dirty = true;
    });
    es.addEventListener("status", (ev) => {
      const s = JSON.parse(ev.data);
      setBadge($("h1 .badge"), s.status);
      if (s.total_steps) {
        const step = $('[data-live="step"]');
        if (step && !step.textContent.includes("/")) step.textContent += " / " + s.total_steps;
      }
      if (s.error) { const e = $('[data-live="error"]'); if (e) { e.textContent = s.error; e.classList.remove("hidden"); } }
      if (wasActive && !active(s.status)) {
        es.close();
        setTimeout(() => location.reload(), 800);
      }
      status = s.status;
    });
    es.addEventListener("end", () => es.close());
    setInterval(() => {
      const total = ($('[data-live="step"]') || {}).textContent || "";
      const m = total.match(/(\d+)\s*\/\s*(\d+)/);
      const bar = $('[data-live="progress"]');
      if (m && bar) bar.style.width = (100 * Number(m[1]) / Number(m[2])).toFixed(1) + "%";
      if (dirty) { dirty = false; refreshCharts(document); }
    }, 1000);
    const log = $("#log");
    if (log) {
      log.scrollTop = log.scrollHeight;
      setInterval(async () => {
        if (!active(status)) return;
        const r = await fetch(log.dataset.src, { cache: "no-store" });
        if (r.ok) {
          const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
          log.textContent = await r.text();
          if (atEnd) log.scrollTop = log.scrollHeight;
        }
      }, 2000);
    }
  }

  // The runs list: statuses, steps and losses every two seconds.
  function runsList(table) {
    setInterval(async () => {
      const r = await fetch("/api/runs", { cache: "no-store" });
      if (!r.ok) return;
      const runs = await r.json();
      for (const run of runs) {
        const row = $('tr[data-run="' + run.id + '"]', table);
        if (!row) { if (active(run.status)) location.reload(); continue; }
        setBadge($("[data-status]", row), run.status);
        const step = $("[data-step]", row);
        if (step && run.step != null) step.textContent = run.step + (run.total_steps ? " / " + run.total_steps : "");
        const loss = $("[data-loss]", row);
        if (loss && run.loss != null) loss.textContent = fmt(run.loss);
      }
    }, 2000);
  }

  // Chat: the same prompt and seed to both sides, each answer streamed.
  function chat(form) {
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const data = new FormData(form);
      for (const side of $$("[data-side]")) {
        const out = $(".answer", side), info = $(".info", side);
        out.textContent = ""; info.textContent = "…";
        const q = new URLSearchParams({
          model: $("select", side).value, prompt: data.get("prompt"), seed: data.get("seed"),
          max_tokens: data.get("max_tokens"), temperature: data.get("temperature"),
        });
        const es = new EventSource("/chat/stream?" + q.toString());
        es.addEventListener("delta", (e) => { out.textContent += JSON.parse(e.data).text; });
        es.addEventListener("done", (e) => {
          const d = JSON.parse(e.data);
          info.textContent = d.tokens + " tokens in " + d.seconds.toFixed(1) + " s (" + d.reason + ")";
          side.dataset.done = "1";
          es.close();
        });
        es.addEventListener("failure", (e) => { info.textContent = JSON.parse(e.data).error; side.dataset.done = "1"; es.close(); });
        es.onerror = () => { if (!side.dataset.done) info.textContent = "connection lost"; es.close(); };
        delete side.dataset.done;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const run = $("#run");
    if (run) runPage(run);
    const table = $("#runs-table");
    if (table) runsList(table);
    const form = $("#chat-form");
    if (form) chat(form);
    const sys = $("#system");
    if (sys) setInterval(() => refreshCharts(sys), 3000);
  });
})();
"""#

    static let stylesheet = #"""
:root { --fg: #1d2330; --muted: #6b7280; --line: #e5e7eb; --bg: #f7f8fa; --blue: #0072B2; --red: #c2410c; --green: #047857; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; align-items: center; gap: 28px; padding: 0 28px; height: 52px; background: #111827; }
header .brand { color: #fff; font-weight: 700; font-size: 18px; text-decoration: none; letter-spacing: .5px; }
header nav a { color: #cbd5e1; text-decoration: none; margin-right: 18px; padding: 15px 0; }
header nav a.active, header nav a:hover { color: #fff; border-bottom: 2px solid #60a5fa; }
main { max-width: 1240px; margin: 0 auto; padding: 20px 28px 60px; }
h1 { font-size: 22px; margin: 8px 0; display: flex; align-items: center; gap: 10px; }
h2 { font-size: 16px; margin: 26px 0 10px; }
a { color: var(--blue); }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, monospace; background: #eef1f5; padding: 1px 4px; border-radius: 3px; }
.muted, .sub { color: var(--muted); }
.sub { font-size: 12px; }
.title-row { display: flex; justify-content: space-between; align-items: center; gap: 12px; flex-wrap: wrap; }
.actions { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
.actions form { margin: 0; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); border-radius: 6px; }
th, td { text-align: left; padding: 8px 10px; border-bottom: 1px solid var(--line); vertical-align: middle; }
th { font-weight: 600; font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .4px; background: #fafbfc; }
tr:last-child td { border-bottom: none; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 12px; font-weight: 600; background: #e5e7eb; color: #374151; }
.badge.running { background: #dbeafe; color: #1d4ed8; }
.badge.queued { background: #fef3c7; color: #92400e; }
.badge.done { background: #d1fae5; color: #065f46; }
.badge.failed { background: #fee2e2; color: #b91c1c; }
.badge.stopped { background: #ede9fe; color: #5b21b6; }
.button { display: inline-block; padding: 7px 14px; border: 1px solid #cbd5e1; border-radius: 6px; background: #fff; color: var(--fg); font: inherit; cursor: pointer; text-decoration: none; }
.button:hover { background: #f1f5f9; }
.button.primary { background: var(--blue); border-color: var(--blue); color: #fff; }
.button.danger { background: #fff; border-color: #fca5a5; color: var(--red); }
.stats { display: grid; grid-template-columns: repeat(auto-fill, minmax(140px, 1fr)); gap: 10px; margin: 14px 0 8px; }
.stats div { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; }
.stats span { display: block; font-size: 11px; color: var(--muted); text-transform: uppercase; letter-spacing: .4px; }
.stats b { font-size: 17px; font-variant-numeric: tabular-nums; }
.progress { height: 6px; background: #e5e7eb; border-radius: 3px; overflow: hidden; margin-bottom: 12px; }
.progress div { height: 100%; background: var(--blue); transition: width .5s; }
.charts { display: grid; grid-template-columns: repeat(2, 1fr); gap: 12px; }
.chart { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 6px; overflow: hidden; }
.chart.wide { grid-column: 1 / -1; }
.chart svg { width: 100%; height: auto; display: block; }
pre { background: #0f172a; color: #e2e8f0; padding: 12px 14px; border-radius: 6px; overflow: auto; font: 12px/1.45 ui-monospace, Menlo, monospace; }
pre.log { max-height: 300px; }
pre.config { max-height: 420px; background: #fff; color: var(--fg); border: 1px solid var(--line); }
pre.row-text { white-space: pre-wrap; background: #fff; color: var(--fg); border: 1px solid var(--line); font-size: 13px; }
pre.row-text mark { background: #bbf7d0; color: #14532d; border-radius: 2px; }
pre.row-text del { color: #9ca3af; }
.error-box { background: #fef2f2; border: 1px solid #fecaca; color: #991b1b; padding: 10px 14px; border-radius: 6px; margin: 10px 0; white-space: pre-wrap; }
.ok-box { background: #ecfdf5; border: 1px solid #a7f3d0; color: #065f46; padding: 10px 14px; border-radius: 6px; margin: 10px 0; }
.hidden { display: none; }
.empty { padding: 30px; text-align: center; background: #fff; border: 1px dashed #cbd5e1; border-radius: 6px; color: var(--muted); }
.fields { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px 18px; }
.field label { display: block; font-weight: 600; font-size: 13px; margin-bottom: 3px; }
.field input[type=text], .field select, .field textarea { width: 100%; padding: 6px 8px; border: 1px solid #cbd5e1; border-radius: 5px; font: inherit; background: #fff; }
.field textarea { font: 12.5px/1.45 ui-monospace, Menlo, monospace; }
.field.yaml { margin-top: 16px; }
.field .help { font-size: 12px; color: var(--muted); }
.field.invalid input, .field.invalid select, .field.invalid textarea { border-color: #ef4444; background: #fff7f7; }
.field-error { color: #b91c1c; font-size: 12.5px; margin-top: 3px; }
form.new-run .actions { margin-top: 14px; }
form.inline { display: flex; gap: 12px; align-items: end; flex-wrap: wrap; margin: 10px 0; }
form.inline label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); gap: 2px; }
form.inline select, form.inline input { padding: 6px 8px; border: 1px solid #cbd5e1; border-radius: 5px; font: inherit; }
.picker { display: flex; flex-wrap: wrap; gap: 6px 16px; align-items: center; background: #fff; border: 1px solid var(--line); padding: 10px 12px; border-radius: 6px; }
.picker .check { display: flex; gap: 6px; align-items: center; }
.chat-sides { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; margin-top: 12px; }
.chat-side { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.chat-side select { width: 100%; padding: 6px; margin-bottom: 8px; }
.chat-side .answer { white-space: pre-wrap; min-height: 120px; font-size: 14px; }
.chat-side .info { font-size: 12px; color: var(--muted); margin-top: 6px; }
textarea#prompt { width: 100%; padding: 8px; border: 1px solid #cbd5e1; border-radius: 6px; font: inherit; }
ul.bad-rows li { font: 12.5px ui-monospace, Menlo, monospace; }
.spark { vertical-align: middle; }
.login { max-width: 360px; margin: 60px auto; background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 24px; }
.login input { width: 100%; padding: 8px; margin: 8px 0 14px; border: 1px solid #cbd5e1; border-radius: 5px; }
"""#
}
