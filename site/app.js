// The etl docs site: the DAG (Cytoscape.js, laid out by dagre), a page per
// node, the quality report and the runs, all from window.ETL_DOCS
// (data.js, written by `etl docs generate`). Routes are hash based, so the
// site works opened from disk.
(function () {
  "use strict";
  const DATA = window.ETL_DOCS;
  const byId = new Map(DATA.nodes.map((n) => [n.id, n]));
  const children = new Map();
  for (const n of DATA.nodes) {
    for (const p of n.parents || []) {
      if (!children.has(p)) children.set(p, []);
      children.get(p).push(n.id);
    }
  }
  const inGraph = (n) => ["model", "seed", "source", "snapshot", "exposure"].includes(n.resource_type);
  const $ = (sel) => document.querySelector(sel);
  const esc = (s) =>
    String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const thousands = (n) => (n == null ? "" : Number(n).toLocaleString("en-US"));
  const bytes = (n) => {
    if (n == null) return "";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    let v = n;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return (i ? v.toFixed(1) : v) + " " + units[i];
  };
  const when = (t) => (t ? new Date(typeof t === "number" ? t : t).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "");
  const link = (id, text) => `<a href="#/node/${encodeURIComponent(id)}">${esc(text || label(id))}</a>`;
  const columnLink = (id, column) =>
    `<a href="#/node/${encodeURIComponent(id)}?column=${encodeURIComponent(column)}" data-column="${esc(column)}">${esc(label(id) + "." + column)}</a>`;
  const label = (id) => {
    const n = byId.get(id);
    if (!n) return id;
    return n.resource_type === "source" ? `${n.source_name}.${n.name}` : n.name;
  };
  const status = (s) => `<span class="status-${esc(s)}">${esc(s)}</span>`;

  // ---- Selection, as `etl ls --select` reads it (a subset: names and
  // fqn wildcards, tag:, resource_type:, path:, package:, source:, the
  // graph operators +, n+, @; space = union, comma = intersection).
  // The nodes `step` reaches from `id`, up to `depth` steps (all when null).
  function reach(id, depth, step) {
    const out = new Set();
    let frontier = [id];
    for (let d = 0; frontier.length && (depth == null || d < depth); d += 1) {
      const next = [];
      for (const f of frontier) {
        for (const x of step(f)) {
          if (!out.has(x)) { out.add(x); next.push(x); }
        }
      }
      frontier = next;
    }
    return out;
  }
  const ancestors = (id, depth) => reach(id, depth, (f) => (byId.get(f) || {}).parents || []);
  const descendants = (id, depth) => reach(id, depth, (f) => children.get(f) || []);
  function matchMethod(term) {
    const glob = (pattern) => new RegExp("^" + pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$");
    const colon = term.indexOf(":");
    const method = colon > 0 ? term.slice(0, colon) : "";
    const value = colon > 0 ? term.slice(colon + 1) : term;
    const re = glob(value);
    switch (method) {
      case "": return (n) => re.test(n.name) || re.test(n.id) || (n.resource_type === "source" && re.test(`${n.source_name}.${n.name}`));
      case "tag": return (n) => (n.tags || []).some((t) => re.test(t));
      case "resource_type": return (n) => re.test(n.resource_type);
      case "path": return (n) => n.path && (n.path.startsWith(value) || re.test(n.path));
      case "package": return (n) => re.test(n.package || "");
      case "source": return (n) => n.resource_type === "source" && (re.test(n.source_name) || re.test(`${n.source_name}.${n.name}`));
      case "config.materialized": return (n) => re.test(n.materialized || "");
      default: throw new Error(`unknown selector method \`${method}\``);
    }
  }
  function selectTerm(term) {
    const m = /^(@)?(\d*\+)?(.*?)(\+\d*)?$/.exec(term);
    const [, at, up, core, down] = m;
    const test = matchMethod(core);
    const base = DATA.nodes.filter(inGraph).filter(test).map((n) => n.id);
    if (!base.length) throw new Error(`\`${term}\` selects no node`);
    const out = new Set(base);
    const depth = (op) => (op.replace("+", "") === "" ? null : Number(op.replace("+", "")));
    for (const id of base) {
      if (up) ancestors(id, depth(up)).forEach((x) => out.add(x));
      if (down || at) descendants(id, down ? depth(down) : null).forEach((x) => out.add(x));
    }
    if (at) for (const d of [...out]) ancestors(d, null).forEach((x) => out.add(x));
    return out;
  }
  function select(text) {
    const union = new Set();
    for (const group of text.trim().split(/\s+/).filter(Boolean)) {
      let set = null;
      for (const term of group.split(",")) {
        const s = selectTerm(term);
        set = set == null ? s : new Set([...set].filter((x) => s.has(x)));
      }
      set.forEach((x) => union.add(x));
    }
    return union;
  }

  // ---- The graph.
  let cy = null;
  function drawGraph(selection) {
    const shown = DATA.nodes.filter(inGraph).filter((n) => !selection || selection.has(n.id));
    const ids = new Set(shown.map((n) => n.id));
    const elements = shown.map((n) => ({ data: { id: n.id, label: label(n.id), kind: n.resource_type } }));
    for (const n of shown) {
      for (const p of n.parents || []) {
        if (ids.has(p)) elements.push({ data: { id: `${p}->${n.id}`, source: p, target: n.id } });
      }
    }
    if (cy) cy.destroy();
    cy = cytoscape({
      container: $("#cy"),
      elements,
      wheelSensitivity: 0.3,
      style: [
        { selector: "node", style: { label: "data(label)", "font-size": 11, "text-valign": "center", "text-halign": "center", color: "#fff", "background-color": "#3b6fd8", shape: "round-rectangle", width: "label", height: 22, padding: "6px", "text-outline-width": 0 } },
        { selector: 'node[kind = "seed"]', style: { "background-color": "#2e9d6b" } },
        { selector: 'node[kind = "source"]', style: { "background-color": "#d98b1c" } },
        { selector: 'node[kind = "snapshot"]', style: { "background-color": "#8a52c9" } },
        { selector: 'node[kind = "exposure"]', style: { "background-color": "#c9455a" } },
        { selector: "edge", style: { width: 1.2, "line-color": "#b7c0cf", "target-arrow-color": "#b7c0cf", "target-arrow-shape": "triangle", "curve-style": "bezier" } },
        { selector: ".faded", style: { opacity: 0.15 } },
        { selector: "node.focus", style: { "border-width": 3, "border-color": "#1d2430" } },
        { selector: "edge.lit", style: { "line-color": "#1d2430", "target-arrow-color": "#1d2430", width: 2 } },
      ],
      layout: { name: "dagre", rankDir: "LR", nodeSep: 12, rankSep: 70 },
    });
    // Hover: a node's ancestors and descendants lit, the rest faded.
    cy.on("mouseover", "node", (e) => {
      const n = e.target;
      const lit = n.union(n.predecessors()).union(n.successors());
      cy.elements().addClass("faded");
      lit.removeClass("faded");
      lit.edges().addClass("lit");
      n.addClass("focus");
    });
    cy.on("mouseout", "node", () => cy.elements().removeClass("faded lit focus"));
    cy.on("tap", "node", (e) => { location.hash = `#/node/${encodeURIComponent(e.target.id())}`; });
    $("#graph-count").textContent = `${shown.length} nodes`;
    window.etlCy = cy;
  }

  // ---- Charts: bars over runs or versions.
  function bars(points, opts) {
    const w = opts.width || 360;
    const h = opts.height || 120;
    const pad = 28;
    if (!points.length) return '<p class="meta">No data yet: each build adds a point.</p>';
    const max = Math.max(opts.floor || 0, ...points.map((p) => p.value)) || 1;
    const bw = Math.max(2, Math.min(28, (w - pad - 8) / points.length - 2));
    let out = `<svg class="chart" viewBox="0 0 ${w} ${h}" width="100%" style="max-width:${w}px" role="img" aria-label="${esc(opts.title)}"><title>${esc(opts.title)}</title>`;
    out += `<text x="2" y="12">${esc(opts.format(max))}</text><text x="2" y="${h - 4}">0</text>`;
    if (opts.line != null && opts.line <= max) {
      const y = h - pad + 8 - (opts.line / max) * (h - pad - 8);
      out += `<line x1="${pad}" x2="${w}" y1="${y}" y2="${y}" stroke="#c0392b" stroke-dasharray="4 3"/>`;
    }
    points.forEach((p, i) => {
      const bh = (p.value / max) * (h - pad - 8);
      const x = pad + i * (bw + 2);
      out += `<rect x="${x}" y="${h - pad + 8 - bh}" width="${bw}" height="${Math.max(bh, 0.5)}" fill="${p.color || "#3b6fd8"}"><title>${esc(p.title)}</title></rect>`;
    });
    return out + "</svg>";
  }

  // ---- Pages.
  function nodePage(id, column) {
    const n = byId.get(id);
    if (!n) return `<h1>Not found</h1><p>No node <code>${esc(id)}</code> in this project.</p>`;
    let html = `<h1 id="node-title">${esc(label(id))} <span class="badge ${esc(n.resource_type)}">${esc(n.resource_type)}</span></h1>`;
    html += `<p class="meta">${esc(n.id)}${n.path ? " · " + esc(n.path) : ""}${n.relation ? " · " + esc(n.relation) : ""}</p>`;
    if (n.description) html += `<p>${esc(n.description)}</p>`;
    html += '<dl class="kv">';
    if (n.materialized) html += `<dt>materialized</dt><dd>${esc(n.materialized)}</dd>`;
    if (n.tags && n.tags.length) html += `<dt>tags</dt><dd>${n.tags.map(esc).join(", ")}</dd>`;
    html += `<dt>reads</dt><dd>${(n.parents || []).map((p) => link(p)).join(", ") || "—"}</dd>`;
    html += `<dt>read by</dt><dd>${(children.get(id) || []).filter((c) => byId.get(c) && inGraph(byId.get(c))).map((c) => link(c)).join(", ") || "—"}</dd>`;
    const last = (n.history || []).filter((h) => h.status !== "skipped").slice(-1)[0];
    if (last) html += `<dt>last build</dt><dd>${status(last.status)} ${esc(when(last.at))}, ${Number(last.seconds || 0).toFixed(2)} s${last.rows != null ? ", " + thousands(last.rows) + " rows" : ""}${last.up_to_date ? " (up to date)" : ""}</dd>`;
    const t = n.table;
    if (t) {
      html += `<dt>table</dt><dd>${t.rows != null ? thousands(t.rows) + " rows, " : ""}${bytes(t.bytes)} in ${thousands(t.files)} files, Delta version ${t.version}</dd>`;
      const lv = t.history && t.history[0];
      if (lv) html += `<dt>last version</dt><dd>${esc(lv.operation || "")} at ${esc(when(lv.timestamp))}${lv.added_rows != null ? ", " + thousands(lv.added_rows) + " rows added" : ""}${lv.added_files != null ? ", " + thousands(lv.added_files) + " files added" : ""}</dd>`;
    }
    html += "</dl>";
    if (n.columns && n.columns.length) {
      html += "<h2>Columns</h2><table id=\"columns\"><tr><th>column</th><th>type</th><th>description</th><th>from (lineage)</th></tr>";
      for (const c of n.columns) {
        const from = (c.from || []).map((o) => `${columnLink(o.unique_id, o.column)} <span class="how">${esc(o.how)}</span>`);
        const hl = column && c.name.toLowerCase() === column.toLowerCase() ? ' class="highlight"' : "";
        html += `<tr${hl} data-name="${esc(c.name)}"><td><code>${esc(c.name)}</code></td><td>${esc(c.type || "")}</td><td>${esc(c.description || "")}</td><td class="lineage">${from.join("<br>") || '<span class="meta">—</span>'}</td></tr>`;
      }
      html += "</table>";
      if (n.filtered_on && n.filtered_on.length) html += `<p class="meta">Rows filtered or joined on: ${n.filtered_on.map((f) => columnLink(f.unique_id, f.column)).join(", ")}</p>`;
    }
    if (n.tests && n.tests.length) {
      html += `<h2>Tests</h2><table id="tests"><tr><th>test</th><th>column</th><th>last result</th><th>over the last runs</th></tr>`;
      for (const t2 of n.tests) {
        const h = t2.history || [];
        const lastT = h[h.length - 1];
        html += `<tr><td>${esc(t2.name)}</td><td>${esc(t2.column || "")}</td><td>${lastT ? status(lastT.status) + " " + esc(lastT.message) : '<span class="meta">not run</span>'}</td><td class="cells">${h.map((x) => `<span class="${esc(x.status)}" title="${esc(x.status + ": " + x.message)}"></span>`).join("")}</td></tr>`;
      }
      html += "</table>";
    }
    if (t && t.history && t.history.length) {
      const pts = t.history.slice().reverse().map((v) => ({ value: v.added_rows || 0, title: `version ${v.version}: ${v.operation}, ${thousands(v.added_rows)} rows added` }));
      html += `<h2>Rows added per version</h2>${bars(pts, { title: "rows added per version", format: thousands, width: 600 })}`;
    }
    if (n.raw_code) html += `<h2>SQL</h2><details open><summary>as written</summary><pre>${esc(n.raw_code)}</pre></details>`;
    if (n.compiled_code) html += `<details><summary>compiled</summary><pre>${esc(n.compiled_code)}</pre></details>`;
    if (n.config) html += `<h2>Config</h2><details><summary>config</summary><pre>${esc(JSON.stringify(n.config, null, 2))}</pre></details>`;
    return html;
  }

  function qualityPage() {
    const q = DATA.quality;
    let html = "<h1>Quality report</h1>";
    html += `<p class="meta">From the last ${DATA.runs.length} runs kept in the lake (<code>_etl/runs/</code>); each build adds one.</p>`;
    html += '<h2>Reject rates</h2><table id="reject-rates"><tr><th>entity</th><th>test</th><th class="num">rejected</th><th class="num">of rows</th><th class="num">rate</th><th>threshold</th><th>status</th></tr>';
    for (const r of q.rates) {
      const last = r.points[r.points.length - 1];
      html += `<tr data-entity="${esc(label(r.entity))}"><td>${r.entity ? link(r.entity) : ""}</td><td>${esc(r.name)}</td>`;
      html += last
        ? `<td class="num">${thousands(last.failures)}</td><td class="num">${thousands(last.rows)}</td><td class="num rate">${last.rate.toFixed(2)}%</td>`
        : '<td colspan="3" class="meta">no load measured yet</td>';
      html += `<td>${esc([r.warn_if && "warn " + r.warn_if, r.error_if && "error " + r.error_if].filter(Boolean).join(", "))}</td><td>${last ? status(last.status) : ""}</td></tr>`;
    }
    html += "</table>";
    html += '<div class="grid">';
    for (const r of q.rates) {
      const limit = /([\d.]+)%/.exec(String(r.warn_if || ""));
      const pts = r.points.map((p) => ({ value: p.rate, color: p.status === "pass" ? "#3fb56b" : p.status === "warn" ? "#e7b416" : "#d9534f", title: `${when(p.at)}: ${p.rate.toFixed(2)}% (${thousands(p.failures)} of ${thousands(p.rows)})` }));
      html += `<div class="card"><h3>${esc(label(r.entity))}: reject rate over builds</h3>${bars(pts, { title: `${label(r.entity)} reject rate`, format: (v) => v.toFixed(1) + "%", line: limit ? Number(limit[1]) : null, floor: limit ? Number(limit[1]) * 1.5 : 0 })}</div>`;
    }
    html += "</div>";
    html += '<h2>Rejected rows by reason</h2><p class="meta">What each table of rejected rows holds after the last build, and its size after each build.</p><div class="grid">';
    for (const r of q.rejected) {
      const last = r.points[r.points.length - 1];
      html += `<div class="card"><h3>${link(r.model)}</h3><table><tr><th>reason</th><th class="num">rows kept</th></tr>`;
      for (const [reason, n] of last.reasons) html += `<tr><td>${esc(reason)}</td><td class="num">${thousands(n)}</td></tr>`;
      html += "</table>";
      html += bars(r.points.map((p) => ({ value: p.rows, title: `${when(p.at)}: ${thousands(p.rows)} rows` })), { title: "rejected rows kept in the table, after each build", format: thousands });
      html += "</div>";
    }
    html += "</div>";
    // Every test, one cell per run.
    const tests = DATA.nodes.flatMap((n) => (n.tests || []).map((t) => ({ node: n, test: t })));
    html += `<h2>Test results over time</h2><table id="test-history"><tr><th>test</th><th>on</th><th>last</th><th>runs (oldest first)</th></tr>`;
    for (const { node, test } of tests) {
      const h = test.history || [];
      const last = h[h.length - 1];
      html += `<tr><td>${esc(test.name)}</td><td>${link(node.id)}</td><td>${last ? status(last.status) : ""}</td><td class="cells">${h.map((x) => `<span class="${esc(x.status)}" title="${esc(x.status + ": " + x.message)}"></span>`).join("")}</td></tr>`;
    }
    html += "</table>";
    html += "<h2>Source freshness</h2>";
    if (!DATA.freshness.length) {
      html += '<p class="meta">No source declares a <code>freshness</code> (with a <code>loaded_at_field</code>).</p>';
    } else {
      html += '<table id="freshness"><tr><th>source</th><th>status</th><th>newest row</th><th>age</th><th></th></tr>';
      for (const f of DATA.freshness) {
        const age = f.max_loaded_at_time_ago_in_s;
        html += `<tr><td>${link(f.unique_id, f.name)}</td><td>${status(f.status)}</td><td>${esc(when(f.max_loaded_at))}</td><td>${age != null ? (age / 3600).toFixed(1) + " h" : ""}</td><td>${esc(f.message)}</td></tr>`;
      }
      html += "</table>";
    }
    return html;
  }

  function runsPage() {
    let html = `<h1>Runs</h1><table><tr><th>at</th><th>command</th><th>target</th><th class="num">seconds</th><th>tests pass / warn / fail</th><th>invocation</th></tr>`;
    for (const r of DATA.runs.slice().reverse()) {
      const t = r.tests || {};
      html += `<tr><td>${esc(when(r.at))}</td><td>${esc(r.command)}</td><td>${esc(r.target || "")}</td><td class="num">${Number(r.elapsed || 0).toFixed(2)}</td><td>${t.pass || 0} / ${t.warn || 0} / ${t.fail || 0}</td><td><code>${esc(r.invocation_id)}</code></td></tr>`;
    }
    html += "</table>";
    html += bars(DATA.runs.map((r) => ({ value: r.elapsed || 0, title: `${when(r.at)}: ${Number(r.elapsed).toFixed(2)} s` })), { title: "build time over runs", format: (v) => v.toFixed(1) + " s", width: 600 });
    return html;
  }

  // ---- Routing.
  function route() {
    const hash = decodeURIComponent(location.hash.replace(/^#/, "")) || "/";
    const graph = hash === "/" || hash.startsWith("/graph");
    $("#graph-view").hidden = !graph;
    for (const a of document.querySelectorAll("header nav a")) a.classList.remove("active");
    const page = $("#page");
    if (graph) {
      page.innerHTML = "";
      $("#nav-graph").classList.add("active");
      if (!cy) applySelection();
      return;
    }
    window.scrollTo(0, 0);
    if (hash.startsWith("/node/")) {
      const [id, query] = hash.slice(6).split("?column=");
      page.innerHTML = nodePage(id, query);
      document.title = `${label(id)} · etl docs`;
    } else if (hash === "/quality") {
      $("#nav-quality").classList.add("active");
      page.innerHTML = qualityPage();
    } else if (hash === "/runs") {
      $("#nav-runs").classList.add("active");
      page.innerHTML = runsPage();
    } else {
      page.innerHTML = `<h1>Not found</h1><p>${esc(hash)}</p>`;
    }
  }

  function applySelection() {
    const text = $("#select").value;
    const err = $("#select-error");
    try {
      drawGraph(text.trim() ? select(text) : null);
      err.hidden = true;
    } catch (e) {
      err.textContent = e.message;
      err.hidden = false;
    }
  }

  $("#project").textContent = `${DATA.project} · ${DATA.target} · generated ${when(DATA.generated_at)}`;
  $("#node-names").innerHTML = DATA.nodes.filter(inGraph).map((n) => `<option value="${esc(label(n.id))}">`).join("");
  $("#search").addEventListener("change", (e) => {
    const n = DATA.nodes.find((x) => inGraph(x) && label(x.id) === e.target.value);
    if (n) location.hash = `#/node/${encodeURIComponent(n.id)}`;
  });
  $("#apply").addEventListener("click", applySelection);
  $("#select").addEventListener("keydown", (e) => { if (e.key === "Enter") applySelection(); });
  $("#reset").addEventListener("click", () => { $("#select").value = ""; applySelection(); });
  cytoscape.use(cytoscapeDagre);
  window.addEventListener("hashchange", route);
  route();
})();
