// The Operations page of etlops-airflow. Plain JavaScript, no dependencies.
//
// Every URL is relative to the page (<base>/etlops/ui/), so the page works under any
// [api] base_url prefix: the API is "../api/", the Airflow UI is "../../". Data from the
// API is only ever put into the page as text (textContent, text nodes, SVG <title>),
// never as HTML. Filters live in the query string, so a link or a reload keeps them.
"use strict";

(() => {
  const API = new URL("../api/", location.href);
  const SCHEMA = new URL("../openapi.json", location.href);
  const ROOT = new URL("../../", location.href);
  const VIEWS = ["overview", "alerts", "profiles", "maintenance", "migrations", "api"];
  const SEVERITIES = ["critical", "high", "medium", "low", "info", "none"];
  const PALETTE = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#b26b00", "#1b7c83", "#bf3989", "#57606a"];
  const DEPTH_COLOURS = ["#0969da", "#1a7f37", "#8250df", "#1b7c83"]; // never the error red
  const SVG_NS = "http://www.w3.org/2000/svg";

  const params = new URLSearchParams(location.search);
  let timer = null;
  let controller = null;
  let generation = 0;

  // -- URL state ---------------------------------------------------------------------------------

  function get(name, fallback) {
    const value = params.get(name);
    return value === null || value === "" ? fallback : value;
  }

  // Inside the Airflow UI the page is an iframe, and the UI copies the iframe's address into its
  // own when the iframe loads. So a discrete change (a tab, a select, a checkbox) reloads the
  // iframe at its new address, and the UI's address bar, a reload or a shared link keep the
  // filters; on its own the page just rewrites its address. Polling never reloads.
  const embedded = window.top !== window.self;

  function setParams(changes, navigate = false) {
    for (const [key, value] of Object.entries(changes)) {
      params.delete(key);
      if (Array.isArray(value)) value.forEach((v) => params.append(key, v));
      else if (value !== null && value !== undefined && value !== "") params.set(key, String(value));
    }
    const query = params.toString();
    const url = query ? `?${query}` : location.pathname;
    if (navigate && embedded) {
      location.replace(url);
      return true;
    }
    history.replaceState(null, "", url);
    return false;
  }

  function change(changes) {
    if (!setParams(changes, true)) refresh();
  }

  const view = () => (VIEWS.includes(get("view", "")) ? get("view") : "overview");
  const windowSeconds = () => Number(get("window", "86400")) || 86400;
  const dagFilter = () => get("dag", "").trim().toLowerCase();
  const dagShown = (dagId) => !dagFilter() || (dagId || "").toLowerCase().includes(dagFilter());

  // -- DOM helpers (text only) ---------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.setAttribute("class", value);
      else if (key === "text") node.textContent = String(value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  const pill = (value, extra) =>
    el("span", { class: `pill st-${String(value || "none").replace(/[^a-z_]/gi, "")}`, text: value ?? "—", ...extra });
  const empty = (text) => el("p", { class: "empty", text });
  const cell = (content, cls) => el("td", { class: cls }, content);
  const numCell = (content) => el("td", { class: "num" }, content);

  function table(headers, rows, attrs) {
    return el(
      "table",
      attrs,
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { class: h.endsWith(" ") ? "num" : null, text: h.trim() })))),
      el("tbody", {}, rows),
    );
  }

  // -- formatting ------------------------------------------------------------------------------------

  const pad = (n) => String(n).padStart(2, "0");
  function fmtTime(ts) {
    if (ts === null || ts === undefined) return "—";
    const d = new Date(ts * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function fmtShortTime(ts, span) {
    const d = new Date(ts * 1000);
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return span > 2 * 86400 ? `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}` : hm;
  }
  function fmtDuration(s) {
    if (s === null || s === undefined || !isFinite(s)) return "—";
    if (s < 1) return `${Math.round(s * 1000)} ms`;
    if (s < 60) return `${s.toFixed(1)} s`;
    const secs = Math.round(s);
    if (secs < 3600) return `${Math.floor(secs / 60)} min ${secs % 60} s`;
    const mins = Math.round(s / 60);
    if (mins < 1440) return `${Math.floor(mins / 60)} h ${mins % 60} min`;
    const hours = Math.round(s / 3600);
    return `${Math.floor(hours / 24)} d ${hours % 24} h`;
  }
  const ago = (ts) => (ts ? `${fmtDuration(Math.max(0, Date.now() / 1000 - ts))} ago` : "—");
  function fmtBytes(n) {
    if (n === null || n === undefined) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  }
  function fmtNum(n, digits = 2) {
    if (n === null || n === undefined) return "—";
    if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(digits)}M`;
    if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
    return Number.isInteger(n) ? String(n) : n.toFixed(digits);
  }
  const labelText = (labels) =>
    Object.entries(labels || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "(no labels)";

  // -- links into the Airflow UI -------------------------------------------------------------------------

  function airflowHref(dagId, runId, taskId, mapIndex) {
    let path = `dags/${encodeURIComponent(dagId)}`;
    if (runId) path += `/runs/${encodeURIComponent(runId)}`;
    if (taskId) {
      path += `/tasks/${encodeURIComponent(taskId)}`;
      if (runId && mapIndex !== null && mapIndex !== undefined && mapIndex >= 0) path += `/mapped/${mapIndex}`;
    }
    return new URL(path, ROOT).href;
  }

  function afLink(text, dagId, runId, taskId, mapIndex) {
    if (!dagId) return text;
    return el("a", { href: airflowHref(dagId, runId, taskId, mapIndex), target: "_top", class: "af-link", text });
  }

  // -- the API ----------------------------------------------------------------------------------------

  async function call(path, { method = "GET", body, signal, url } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url || new URL(path, API), {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (!response.ok) {
      const detail = data && data.detail !== undefined
        ? (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail))
        : response.statusText;
      const error = new Error(`${response.status}: ${detail}`);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function query(path, values) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(values)) {
      if (Array.isArray(v)) v.forEach((item) => q.append(k, item));
      else if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
    }
    const s = q.toString();
    return s ? `${path}?${s}` : path;
  }

  // -- charts (hand-drawn SVG) -------------------------------------------------------------------------

  function lineChart(metric, start, end) {
    const W = 560, H = 180, L = 48, R = 8, T = 8, B = 22;
    const series = metric.series.filter((s) => s.points.length);
    const box = el("div", { class: "chart-box", dataset: { metric: metric.name } }, el("h3", { text: metric.name }));
    if (!series.length) {
      box.append(empty(metric.series.length ? "No points in this window." : "No series visible to you."));
    } else {
      let lo = Infinity, hi = -Infinity;
      series.forEach((s) => s.points.forEach(([, v]) => { lo = Math.min(lo, v); hi = Math.max(hi, v); }));
      if (lo === hi) { lo -= Math.abs(lo) * 0.1 || 1; hi += Math.abs(hi) * 0.1 || 1; }
      const x = (t) => L + ((t - start) / (end - start)) * (W - L - R);
      const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
      const chart = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" },
        svg("title", { text: `${metric.name}: ${series.length} series, step ${fmtDuration(metric.step)}` }),
        svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }),
        svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }),
        svg("text", { x: L - 4, y: T + 8, "text-anchor": "end", text: fmtNum(hi) }),
        svg("text", { x: L - 4, y: H - B, "text-anchor": "end", text: fmtNum(lo) }),
        [0, 0.5, 1].map((f) => svg("text", {
          x: L + f * (W - L - R), y: H - 6, "text-anchor": f === 0 ? "start" : f === 1 ? "end" : "middle",
          text: fmtShortTime(start + f * (end - start), end - start),
        })),
        series.map((s, i) => svg("polyline", {
          stroke: PALETTE[i % PALETTE.length],
          points: s.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" "),
        }, svg("title", { text: labelText(s.labels) }))),
        // Sparse series also get a dot per point (a single point draws no line).
        series.filter((s) => s.points.length <= 60).map((s) => s.points.map(([t, v]) => svg("circle", {
          cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: PALETTE[series.indexOf(s) % PALETTE.length],
        }, svg("title", { text: `${labelText(s.labels)}: ${fmtNum(v, 3)} at ${fmtTime(t)}` })))),
      );
      box.append(chart);
    }
    box.append(el("div", { class: "legend" }, metric.series.map((s, i) => el("span", {},
      el("span", { class: "sw", style: null, dataset: { i: String(i) } }),
      `${labelText(s.labels)}: `,
      el("b", { text: s.current ? fmtNum(s.current.value) : "—" }),
      s.current ? el("span", { class: "notice", text: ` (${ago(s.current.ts)})` }) : null,
    ))));
    // Swatch colours are set as properties (the page's CSP allows no inline style attributes).
    box.querySelectorAll(".legend .sw").forEach((sw) => {
      const i = Number(sw.dataset.i);
      const drawn = series.indexOf(metric.series[i]);
      sw.style.background = drawn >= 0 ? PALETTE[drawn % PALETTE.length] : "transparent";
    });
    return box;
  }

  function waterfall(session) {
    const stages = [...session.stages].sort((a, b) => a.index - b.index);
    const total = Math.max(session.duration_s, ...stages.map((s) => s.started_at - session.started_at + s.duration_s), 1e-3);
    const W = 760, LABEL = 220, ROW = 22, T = 18;
    const H = T + ROW * stages.length + 6;
    const x = (s) => LABEL + (s / total) * (W - LABEL - 70);
    return svg("svg", { id: "profile-waterfall", class: "waterfall", viewBox: `0 0 ${W} ${H}`, role: "img" },
      svg("title", { text: `Stages of ${session.dag_id}.${session.task_id}` }),
      [0, 0.25, 0.5, 0.75, 1].map((f) => [
        svg("line", { class: "grid", x1: x(f * total), y1: T - 4, x2: x(f * total), y2: H }),
        svg("text", { x: x(f * total), y: 11, "text-anchor": "middle", text: fmtDuration(f * total) }),
      ]),
      stages.map((stage, i) => {
        const depth = stage.path.split("/").length - 1;
        const offset = stage.started_at - session.started_at;
        const top = T + i * ROW;
        return svg("g", { class: "stage", "data-path": stage.path },
          svg("title", { text: `${stage.path}: ${fmtDuration(stage.duration_s)}, CPU ${fmtNum(stage.cpu_percent, 0)} %, peak ${fmtBytes(stage.peak_rss_bytes)}` +
            (stage.records_out !== null ? `, ${stage.records_out} records out` : "") + (stage.error ? `, error: ${stage.error}` : "") }),
          svg("text", { x: 4 + depth * 12, y: top + 14, text: stage.name }),
          svg("rect", {
            x: x(offset), y: top + 3, height: ROW - 6, rx: 2,
            width: Math.max(1, x(offset + stage.duration_s) - x(offset)),
            fill: stage.error ? "#cf222e" : DEPTH_COLOURS[depth % DEPTH_COLOURS.length],
          }),
          svg("text", { x: x(offset + stage.duration_s) + 4, y: top + 14, text: fmtDuration(stage.duration_s) }),
        );
      }),
    );
  }

  // -- views ---------------------------------------------------------------------------------------------

  const SEVERITY_RANK = Object.fromEntries(SEVERITIES.map((s, i) => [s, i]));
  const STATE_RANK = { firing: 0, pending: 1, resolved: 2 };

  function sortAlerts(alerts) {
    return [...alerts].sort((a, b) =>
      (STATE_RANK[a.state] ?? 3) - (STATE_RANK[b.state] ?? 3) ||
      (SEVERITY_RANK[a.severity || "none"] ?? 9) - (SEVERITY_RANK[b.severity || "none"] ?? 9) ||
      (b.resolved_at || b.active_since || b.pending_since || 0) - (a.resolved_at || a.active_since || a.pending_since || 0));
  }

  function severityTiles(alerts) {
    const active = alerts.filter((a) => a.state === "firing" || a.state === "pending");
    return el("div", { class: "tiles", id: "alert-tiles" }, SEVERITIES.filter((s) => s !== "none" || active.some((a) => !a.severity)).map((sev) => {
      const mine = active.filter((a) => (a.severity || "none") === sev);
      const firing = mine.filter((a) => a.state === "firing").length;
      return el("div", { class: "tile", dataset: { severity: sev } },
        el("div", { class: "k", text: sev }),
        el("div", { class: `v ${firing ? `st-${sev}` : ""}`, text: String(firing) }),
        el("div", { class: "s", text: `firing · ${mine.length - firing} pending` }));
    }));
  }

  function healthTiles(health) {
    const sys = health.system;
    const tiles = health.components.map((c) => el("div", { class: "tile", dataset: { component: c.component } },
      el("div", { class: "k", text: c.component }),
      el("div", { class: "v" }, pill(c.status)),
      el("div", { class: "s", text: `checked ${ago(c.checked_at)}` }),
      c.reasons.length ? el("div", { class: "s", text: c.reasons.join("; ") }) : null,
      c.dag_id ? el("div", { class: "s" }, afLink("health-check DAG", c.dag_id)) : null));
    const systemTile = (key, value, sub) => el("div", { class: "tile", dataset: { system: key } },
      el("div", { class: "k", text: key }), el("div", { class: "v", text: value }), el("div", { class: "s", text: sub }));
    tiles.push(
      systemTile("CPU", sys.cpu_percent === null ? "…" : `${sys.cpu_percent.toFixed(0)} %`,
        `${sys.cpu_count} cores${sys.load_1m === null ? "" : ` · load ${sys.load_1m.toFixed(2)}`}`),
      systemTile("Memory", `${sys.memory.percent.toFixed(0)} %`, `${fmtBytes(sys.memory.used_bytes)} of ${fmtBytes(sys.memory.total_bytes)}`),
      systemTile("Disk", sys.disk.error ? "?" : `${sys.disk.percent.toFixed(0)} %`,
        sys.disk.error ? sys.disk.error : `${fmtBytes(sys.disk.free_bytes)} free · ${sys.disk.path}`),
      systemTile("Network", sys.network.recv_per_s === null ? "…" : `${fmtBytes(sys.network.recv_per_s)}/s in`,
        sys.network.sent_per_s === null ? "measuring" : `${fmtBytes(sys.network.sent_per_s)}/s out`),
      systemTile("Uptime", fmtDuration(sys.uptime_s), `API server ${fmtDuration(sys.process_uptime_s)}`),
    );
    const box = el("div", {}, el("div", { class: "tiles", id: "health-tiles" }, tiles));
    if (!health.components.length) {
      box.append(el("p", { class: "notice", text: "No health check recorded yet: trigger the etlops_maintenance_health_check DAG. The live figures above are the API server's machine." }));
    }
    return box;
  }

  function pipelinesTable(data) {
    const rows = data.pipelines.filter((p) => dagShown(p.dag_id)).map((p) => {
      const runs = p.runs || { success: 0, failed: 0, avg_duration_s: null };
      const tries = p.task_tries || {};
      const active = p.active_runs || [];
      return el("tr", { dataset: { dag: p.dag_id } },
        cell(afLink(p.dag_id, p.dag_id)),
        cell(el("span", { class: "runs" }, [...p.last_runs].reverse().map((r) => el("a", {
          href: airflowHref(r.dag_id, r.run_id), target: "_top", class: `st-${r.state}`,
          title: `${r.run_id}: ${r.state}, ${fmtDuration(r.duration_s)}, ended ${fmtTime(r.end_ts)}`,
        })))),
        cell(active.length ? pill(active[0].state) : p.last_state ? pill(p.last_state) : "—"),
        numCell(`${runs.success} / ${runs.failed}`),
        numCell(fmtDuration(runs.avg_duration_s)),
        numCell(`${tries.success || 0} / ${(tries.failed || 0) + (tries.up_for_retry || 0)}`),
        numCell(fmtNum(p.records, 0)),
        numCell(p.records_per_s === null ? "—" : `${fmtNum(p.records_per_s, 1)}/s`),
        cell(active.length
          ? active.map((run) => el("div", {}, afLink(run.run_id, p.dag_id, run.run_id), ": ",
            run.tasks.length ? run.tasks.map((t, i) => [i ? ", " : "", afLink(t.task_id, p.dag_id, run.run_id, t.task_id, t.map_index), ` (${t.state})`]) : "starting"))
          : p.last_stage
            ? [afLink(`${p.last_stage.task_id}${p.last_stage.stage ? ` › ${p.last_stage.stage}` : ""}`, p.dag_id, p.last_stage.run_id, p.last_stage.task_id),
              el("span", { class: "notice", text: ` ${ago(p.last_stage.ended_at)}` })]
            : "—"));
    });
    if (!rows.length) {
      return empty(data.pipelines.length ? "No pipeline matches the DAG filter." : "No pipeline has run yet: trigger a DAG (e.g. etlops_demo_pipeline) and its runs appear here.");
    }
    return table(
      ["DAG", "Last runs", "State", "Runs ok / failed ", "Avg run ", "Tries ok / failed ", "Records ", "Throughput ", "Current / last stage"],
      rows, { id: "pipelines-table" });
  }

  async function overview(signal) {
    const win = windowSeconds();
    const chosen = params.getAll("metric");
    const none = chosen.length === 1 && chosen[0] === "-"; // every chart unticked
    const [alerts, pipelines, health, metrics] = await Promise.all([
      call("alerts?state=firing&state=pending", { signal }),
      call(query("pipelines", { window: win }), { signal }),
      call("health", { signal }),
      call(query("metrics", { window: win, name: none ? [] : chosen, label: params.getAll("label") }), { signal }),
    ]);
    if (none) metrics.metrics = [];
    const shownAlerts = alerts.alerts.filter((a) => dagShown(a.labels.dag_id));
    const picker = el("div", { class: "metric-pick", id: "metric-pick" }, metrics.names.map((name) => {
      const selected = metrics.metrics.some((m) => m.name === name);
      return el("label", {}, el("input", {
        type: "checkbox", value: name, checked: selected,
        onchange: () => {
          const now = [...document.querySelectorAll("#metric-pick input:checked")].map((i) => i.value);
          change({ metric: now.length ? now : ["-"] });
        },
      }), ` ${name}`);
    }));
    return [
      el("h2", { text: "Alerts" }),
      severityTiles(shownAlerts),
      shownAlerts.length ? null : el("p", { class: "notice", text: "No alert is firing or pending." }),
      el("h2", { text: "Health" }),
      healthTiles(health),
      el("h2", { text: "Pipelines" }),
      pipelinesTable(pipelines),
      el("h2", { text: "Metrics" }),
      metrics.names.length
        ? [picker, el("div", { class: "charts", id: "charts" }, metrics.metrics.map((m) => lineChart(m, metrics.start, metrics.end)))]
        : empty("No metrics recorded yet: tasks record them with record_metric() or RecordMetricsOperator, profiling records stage figures."),
    ];
  }

  async function alertAction(button, path, options, row) {
    button.disabled = true;
    try {
      await call(path, options);
      await refresh();
    } catch (error) {
      button.disabled = false;
      row.querySelector(".act-error")?.remove();
      row.lastChild.append(el("div", { class: "act-error st-error", text: error.message }));
    }
  }

  async function alertsView(signal) {
    const which = get("astate", "");
    // Active alerts, and those resolved within the window.
    const resolvedSince = Date.now() / 1000 - windowSeconds();
    const data = await call(query("alerts", { state: which || null, resolved_since: resolvedSince }), { signal });
    const alerts = sortAlerts(data.alerts.filter((a) => dagShown(a.labels.dag_id)));
    const duration = get("sd", "2h");
    const durationPick = el("select", { id: "silence-duration", onchange: (e) => setParams({ sd: e.target.value }, true) },
      ["30m", "1h", "2h", "6h", "1d", "7d"].map((d) => el("option", { value: d, selected: d === duration, text: d })));
    const statePick = el("select", { id: "alert-state", onchange: (e) => change({ astate: e.target.value }) },
      [["", "all"], ["firing", "firing"], ["pending", "pending"], ["resolved", "resolved"]].map(([v, t]) =>
        el("option", { value: v, selected: v === which, text: t })));
    const rows = alerts.map((a) => {
      const dagId = a.labels.dag_id;
      const runId = a.annotations.run_id;
      const row = el("tr", { dataset: { fingerprint: a.fingerprint, state: a.state } });
      const actions = el("td", {});
      if ((a.state === "firing" || a.state === "pending") && !a.acked_by) {
        const ack = el("button", { type: "button", class: "act ack-button", text: "Acknowledge" });
        ack.addEventListener("click", () => alertAction(ack, `alerts/${encodeURIComponent(a.fingerprint)}/ack`, { method: "POST" }, row));
        actions.append(ack, " ");
      }
      if (a.state !== "resolved") {
        const mute = el("button", { type: "button", class: "act silence-button", text: "Silence" });
        mute.addEventListener("click", () => {
          const matchers = { rule_id: a.rule_id };
          if (dagId) matchers.dag_id = dagId;
          alertAction(mute, "alerts/silences", {
            method: "POST",
            body: { matchers, duration: get("sd", "2h"), comment: `from the Operations view: ${a.rule_id}` },
          }, row);
        });
        actions.append(mute);
      }
      append(row, [
        cell(pill(a.state, { class: `pill st-${a.state} alert-state` })),
        cell(pill(a.severity || "none")),
        cell(el("b", { text: a.rule_id })),
        cell(dagId ? [afLink(dagId, dagId), runId ? [" › ", afLink(runId, dagId, runId, a.annotations.task_id)] : null] : "—"),
        cell(el("div", { class: "labels" }, Object.entries(a.labels).filter(([k]) => !["rule_id", "severity", "dag_id"].includes(k))
          .map(([k, v]) => el("span", { text: `${k}=${v}` })))),
        cell([
          a.annotations.summary ? el("div", { class: "summary", text: a.annotations.summary }) : null,
          a.annotations.description ? el("div", { class: "description notice", text: a.annotations.description }) : null,
          a.value === null ? null : el("div", { class: "notice", text: `value ${fmtNum(a.value, 3)}` }),
        ]),
        cell(a.state === "resolved" ? `resolved ${ago(a.resolved_at)}` : a.active_since ? `since ${fmtTime(a.active_since)}` : `pending since ${fmtTime(a.pending_since)}`),
        cell(a.acked_by ? el("span", { class: "acked-by", text: `acknowledged by ${a.acked_by} ${ago(a.acked_at)}` }) : "—"),
        actions,
      ]);
      return row;
    });
    const silences = data.silences.map((s) => {
      const row = el("tr", { dataset: { silence: s.id } });
      const end = el("button", { type: "button", class: "act", text: "End" });
      end.addEventListener("click", () => alertAction(end, `alerts/silences/${encodeURIComponent(s.id)}`, { method: "DELETE" }, row));
      append(row, [
        cell(Object.entries(s.matchers).map(([k, v]) => `${k}=${v.join("|")}`).join(", ")),
        cell(fmtTime(s.starts_at)), cell(fmtTime(s.ends_at)), cell(s.created_by), cell(s.comment || "—"), cell(end),
      ]);
      return row;
    });
    return [
      el("div", { class: "filters" }, el("label", {}, "State ", statePick), el("label", {}, "Silence for ", durationPick)),
      rows.length
        ? table(["State", "Severity", "Rule", "DAG / run", "Labels", "Summary", "When", "Acknowledged", ""], rows, { id: "alerts-table" })
        : empty(data.alerts.length ? "No alert matches these filters." : "No alerts yet: the etlops_alerting DAG evaluates the rules of [etlops] alert_rules_file and raises them here."),
      el("h2", { text: "Active silences" }),
      silences.length ? table(["Matchers", "From", "Until", "By", "Comment", ""], silences, { id: "silences-table" }) : empty("No active silence."),
    ];
  }

  async function profilesView(signal) {
    const since = Date.now() / 1000 - windowSeconds();
    const data = await call(query("profiles", { since, limit: 100 }), { signal });
    const sessions = data.sessions.filter((s) => dagShown(s.dag_id));
    const wanted = Number(get("session", "0"));
    let current = sessions.find((s) => s.id === wanted) || null;
    if (!current && wanted) {
      try {
        current = (await call(query("profiles", { session_id: wanted }), { signal })).sessions[0];
      } catch (error) {
        if (error.status !== 404) throw error;
      }
    }
    current = current || sessions[0] || null;
    const rows = sessions.map((s) => el("tr", {
      class: current && s.id === current.id ? "selected" : null, dataset: { session: String(s.id) },
    },
      cell(el("a", { href: `?${new URLSearchParams({ ...Object.fromEntries(params), session: s.id })}`, text: fmtTime(s.started_at),
        onclick: (e) => { e.preventDefault(); change({ session: s.id }); } })),
      cell(afLink(s.dag_id, s.dag_id)), cell(afLink(s.task_id, s.dag_id, s.run_id, s.task_id, s.map_index)),
      cell(afLink(s.run_id, s.dag_id, s.run_id)),
      numCell(fmtDuration(s.duration_s)), numCell(fmtBytes(s.peak_rss_bytes)), numCell(`${fmtNum(s.peak_cpu_percent, 0)} %`),
      numCell(s.records_per_s === null ? "—" : `${fmtNum(s.records_per_s, 1)}/s`), numCell(String(s.findings.length))));
    const out = [
      el("h2", { text: "Profiled task tries" }),
      rows.length
        ? table(["Started", "DAG", "Task", "Run", "Duration ", "Peak RSS ", "Peak CPU ", "Records ", "Findings "], rows, { id: "sessions-table" })
        : empty("No profiled task in this window: mark stages with profile_stage() / @profiled, or set [etlops] profile_all_tasks."),
    ];
    if (current) {
      out.push(
        el("h2", { id: "profile-title" }, "Stages of ", afLink(`${current.dag_id} › ${current.task_id}`, current.dag_id, current.run_id, current.task_id, current.map_index),
          el("span", { class: "notice", text: ` try ${current.try_number}, ${fmtTime(current.started_at)}` })),
        current.stages.length ? waterfall(current) : empty("This try recorded no stage."),
        el("h3", { text: "Findings" }),
        current.findings.length
          ? table(["Severity", "Kind", "Stage", "What", "Suggestion"], current.findings.map((f) => el("tr", { class: "finding" },
            cell(pill(f.severity)), cell(f.kind), cell(f.stage || "(whole task)"), cell(f.message), cell(f.suggestion))), { id: "findings-table" })
          : empty("No finding: every stage stayed within the thresholds."),
        current.recommendations.length ? [el("h3", { text: "Recommendations" }), el("ul", {}, current.recommendations.map((r) => el("li", { text: r })))] : null,
      );
    }
    return out;
  }

  async function maintenanceView(signal) {
    const since = Date.now() / 1000 - windowSeconds();
    const data = await call(query("maintenance", { since, limit: 200 }), { signal });
    const runs = data.runs.filter((r) => !r.dag_id || dagShown(r.dag_id));
    return [
      el("h2", { text: "Per task, in this window" }),
      data.totals.length
        ? table(["Task", "Runs ", "Failed ", "Dry runs ", "Freed ", "Rows ", "Files ", "Last run"], data.totals.map((t) => el("tr", {},
          cell(t.task), numCell(String(t.runs)), numCell(String(t.failed)), numCell(String(t.dry_runs)), numCell(fmtBytes(t.freed_bytes)),
          numCell(fmtNum(t.freed_rows, 0)), numCell(fmtNum(t.freed_files, 0)), cell(ago(t.last_started_at)))), { id: "maintenance-totals" })
        : empty("No maintenance run in this window: the etlops_maintenance_* DAGs record theirs here."),
      el("h2", { text: "Runs" }),
      runs.length
        ? table(["Started", "Task", "Target", "Duration ", "Result", "Freed ", "Rows ", "Files ", "DAG run"], runs.map((r) => el("tr", {},
          cell(fmtTime(r.started_at)), cell(r.task), cell(r.target), numCell(fmtDuration(r.duration_s)),
          cell([pill(r.ok ? "ok" : "error"), r.dry_run ? " dry run" : "", r.errors.length ? el("div", { class: "notice", text: r.errors.join("; ") }) : null]),
          numCell(fmtBytes(r.freed_bytes)), numCell(fmtNum(r.freed_rows, 0)), numCell(fmtNum(r.freed_files, 0)),
          cell(r.dag_id ? afLink(r.run_id || r.dag_id, r.dag_id, r.run_id, r.task_id) : "—"))), { id: "maintenance-runs" })
        : empty("No maintenance run to show."),
    ];
  }

  async function migrationsView(signal) {
    const pipeline = get("pipeline", "");
    const chosen = get("mrun", "");
    const data = await call(query("migrations", { pipeline, run_id: chosen || null }), { signal });
    const runs = data.runs.filter((r) => !r.dag_id || dagShown(r.dag_id));
    const out = [
      el("h2", { text: "Versions" }),
      data.versions.length
        ? table(["Pipeline", "Version", "Since", "By run"], data.versions.map((v) => el("tr", {},
          cell(el("a", { href: "#", text: v.pipeline, onclick: (e) => { e.preventDefault(); change({ pipeline: v.pipeline, mrun: null }); } })),
          cell(el("b", { text: v.version })), cell(fmtTime(v.updated_at)), cell(v.run_id || "—"))), { id: "migration-versions" })
        : empty("No pipeline has been migrated yet: migrations applied by the migration operators are recorded here."),
      el("h2", {}, "Ledger", pipeline ? [` of ${pipeline} `, el("a", { href: "#", text: "(all pipelines)", onclick: (e) => { e.preventDefault(); change({ pipeline: null }); } })] : null),
      runs.length
        ? table(["Started", "Pipeline", "From → to", "Direction", "State", "Owner", "Duration ", "Error", "DAG run", ""], runs.map((r) => el("tr", {
          class: r.id === chosen ? "selected" : null, dataset: { migrationRun: r.id } },
          cell(fmtTime(r.started_at)), cell(r.pipeline), cell(`${r.from_version || "∅"} → ${r.to_version}`), cell(r.direction),
          cell(pill(r.state)), cell(r.owner || "—"),
          numCell(r.ended_at ? fmtDuration(r.ended_at - r.started_at) : "running"), cell(r.error || "—"),
          cell(r.dag_id ? afLink(r.dag_run_id || r.dag_id, r.dag_id, r.dag_run_id) : "—"),
          cell(el("button", { type: "button", class: "act", text: "Steps", onclick: () => change({ mrun: r.id }) })))), { id: "migration-runs" })
        : empty("No migration run to show."),
    ];
    if (chosen) {
      out.push(el("h2", { text: `Step log of run ${chosen}` }));
      out.push(data.steps && data.steps.length
        ? table(["#", "Migration", "Phase", "Step", "Kind", "State", "Duration ", "SQL", "Error"], data.steps.map((s) => el("tr", {},
          numCell(String(s.seq)), cell(s.migration), cell(s.phase), numCell(s.index === null ? "—" : String(s.index)), cell(s.kind || "—"),
          cell(pill(s.state)), numCell(s.ended_at ? fmtDuration(s.ended_at - s.started_at) : "—"),
          cell(s.sql.map((q) => el("pre", { class: "sql", text: q }))), cell(s.error || "—"))), { id: "migration-steps" })
        : empty("This run has no step recorded (or is not visible to you)."));
    }
    return out;
  }

  async function apiView(signal) {
    const schema = await call(null, { url: SCHEMA, signal });
    const rows = [];
    for (const [path, item] of Object.entries(schema.paths || {})) {
      for (const [method, op] of Object.entries(item)) {
        const names = (op.parameters || []).map((p) => `${p.name}${p.required ? "" : "?"} (${p.in})`).join(", ");
        rows.push(el("tr", {}, cell(el("code", { text: method.toUpperCase() })), cell(el("code", { text: `/etlops${path}` })),
          cell([el("div", { text: op.summary || "" }), op.description ? el("div", { class: "notice", text: op.description }) : null]), cell(names || "—")));
      }
    }
    return [
      el("h2", { text: `${schema.info.title} ${schema.info.version}` }),
      el("p", { class: "notice" }, "The OpenAPI schema: ", el("a", { href: SCHEMA.href, text: "openapi.json" }),
        " (behind the same login). Every route answers 401 without a session or token."),
      table(["Method", "Path", "What", "Parameters"], rows, { id: "api-table" }),
    ];
  }

  const RENDER = { overview, alerts: alertsView, profiles: profilesView, maintenance: maintenanceView, migrations: migrationsView, api: apiView };

  // -- refresh loop ---------------------------------------------------------------------------------------

  function showError(message) {
    const box = document.getElementById("error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  async function refresh() {
    clearTimeout(timer);
    if (controller) controller.abort();
    controller = new AbortController();
    const mine = ++generation;
    const status = document.getElementById("status");
    status.textContent = "Refreshing…";
    document.querySelectorAll("#tabs button").forEach((b) => {
      if (b.dataset.view === view()) b.setAttribute("aria-current", "page");
      else b.removeAttribute("aria-current");
    });
    try {
      const parts = await RENDER[view()](controller.signal);
      if (mine !== generation) return;
      const main = document.getElementById("content");
      main.replaceChildren(...[parts].flat(Infinity).filter((p) => p !== null && p !== undefined && p !== false));
      main.dataset.view = view();
      showError("");
      status.textContent = `Updated ${fmtTime(Date.now() / 1000).slice(11)}`;
    } catch (error) {
      if (error.name === "AbortError" || mine !== generation) return;
      showError(error.status === 401 || error.status === 403
        ? `${error.message}. Log in to Airflow again, or ask for access.`
        : `Could not load this view: ${error.message}`);
      status.textContent = "Update failed";
    }
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    const every = Number(get("refresh", "15"));
    if (every > 0) {
      timer = setTimeout(() => (document.hidden ? schedule() : refresh()), every * 1000);
    }
  }

  function init() {
    const win = document.getElementById("f-window");
    const dag = document.getElementById("f-dag");
    const every = document.getElementById("f-refresh");
    win.value = String(windowSeconds());
    if (!win.value) win.value = "86400";
    dag.value = get("dag", "");
    every.value = get("refresh", "15");
    if (!every.value) every.value = "15";
    win.addEventListener("change", () => change({ window: win.value }));
    every.addEventListener("change", () => { if (!setParams({ refresh: every.value }, true)) schedule(); });
    // Typing filters at once; Enter or leaving the field also puts the filter in the UI's address.
    let typing = null;
    dag.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => { setParams({ dag: dag.value.trim() }); refresh(); }, 300);
    });
    dag.addEventListener("change", () => setParams({ dag: dag.value.trim() }, true));
    document.getElementById("tabs").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-view]");
      if (!button) return;
      change({ view: button.dataset.view === "overview" ? null : button.dataset.view });
    });
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
    refresh();
  }

  init();
})();
