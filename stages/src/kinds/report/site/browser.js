// tw study browser. Opened from the file system: data files are scripts that
// call twData(id, value), loaded on demand. Every piece of data reaches the
// page through textContent (never markup): completions and programs are
// untrusted text.
"use strict";

(function () {
  const site = window.TW_SITE;
  const app = document.getElementById("app");
  const crumbs = document.getElementById("crumbs");
  const cache = new Map();
  const waiting = new Map();

  window.twData = function (id, value) {
    cache.set(id, value);
    const w = waiting.get(id);
    if (w) {
      waiting.delete(id);
      w.resolve(value);
    }
  };

  function load(id) {
    if (cache.has(id)) return Promise.resolve(cache.get(id));
    if (waiting.has(id)) return waiting.get(id).promise;
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    waiting.set(id, { promise, resolve, reject });
    const s = document.createElement("script");
    s.src = "data/" + id + ".js";
    s.onerror = () => { waiting.delete(id); reject(new Error("cannot load data/" + id + ".js")); };
    document.head.appendChild(s);
    return promise;
  }

  // --- small DOM helpers: text only -------------------------------------
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k === "onclick") e.addEventListener("click", v);
      else if (k === "oninput") e.addEventListener("input", v);
      else if (k === "onchange") e.addEventListener("change", v);
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      e.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return e;
  }
  function link(href, text, cls) {
    return el("a", { href: href, class: cls || "" }, text);
  }
  function badge(pass, label) {
    const cls = pass === true ? "pass" : pass === false ? "fail" : "none";
    const text = pass === true ? "pass" : pass === false ? "fail" : "ungraded";
    return el("span", { class: "badge " + cls }, label ? text + " · " + label : text);
  }
  function pct(a, b) {
    return b ? (100 * a / b).toFixed(1) + "%" : "–";
  }
  function cellName(c) {
    const axes = c.axes.map(([k, v]) => k + "=" + v).join(", ");
    return c.stage + (axes ? " [" + axes + "]" : "");
  }
  function setCrumbs(...parts) {
    crumbs.textContent = "";
    for (const p of parts) {
      crumbs.appendChild(document.createTextNode(" › "));
      crumbs.appendChild(p);
    }
  }
  function encodeKey(k) { return encodeURIComponent(k); }

  // --- values -------------------------------------------------------------
  const CODE = new Set(["program", "code", "completion", "solution", "buggy", "fixed", "patched",
    "canonical_solution", "reference", "test_program", "check", "generation"]);
  const CHAT = new Set(["prompt", "messages", "conversation"]);

  function parseJson(s) {
    if (typeof s !== "string") return undefined;
    const t = s.trim();
    if (!(t.startsWith("[") || t.startsWith("{"))) return undefined;
    try { return JSON.parse(t); } catch (e) { return undefined; }
  }
  function isLong(v) {
    return typeof v === "string" && (v.length > 80 || v.includes("\n"));
  }
  function pre(text, cls) {
    return el("pre", { class: cls || "" }, text);
  }

  function chat(messages) {
    const box = el("div", { class: "chat" });
    for (const m of messages) {
      const role = m && typeof m === "object" ? (m.role || m.from || "?") : "?";
      const content = m && typeof m === "object" ? (m.content ?? m.value ?? JSON.stringify(m)) : String(m);
      box.appendChild(el("div", { class: "msg " + String(role) },
        el("div", { class: "role" }, String(role)),
        pre(typeof content === "string" ? content : JSON.stringify(content, null, 2))));
    }
    return box;
  }

  function feedbackTable(tests) {
    const box = el("div", { class: "feedback" });
    const t = el("table", { class: "data" },
      el("tr", {}, el("th", {}, "test"), el("th", {}, "input"), el("th", {}, "expected"),
        el("th", {}, "output"), el("th", {}, "verdict")));
    tests.forEach((c, i) => {
      t.appendChild(el("tr", {}, el("td", {}, String(i)), el("td", {}, pre(String(c.input ?? ""))),
        el("td", {}, pre(String(c.expected ?? ""))), el("td", {}, pre(String(c.output ?? ""))),
        el("td", {}, badge(c.passed))));
    });
    box.appendChild(t);
    tests.forEach((c, i) => {
      if (c.trace) {
        box.appendChild(el("div", { class: "trace" }, el("div", { class: "field" }, "trace shown (test " + i + ")"),
          pre(c.trace, "code")));
      }
    });
    return box;
  }

  function fieldView(name, v) {
    if (v === null || v === undefined) return null;
    const parsed = parseJson(v);
    if (CHAT.has(name) && Array.isArray(parsed)) return chat(parsed);
    if (name === "feedback" && Array.isArray(parsed) && parsed.every(x => x && typeof x === "object")) {
      return feedbackTable(parsed);
    }
    if (CODE.has(name)) return pre(String(v), "code");
    if (parsed !== undefined && (Array.isArray(parsed) ? parsed.length > 0 : Object.keys(parsed).length > 0)) {
      return pre(JSON.stringify(parsed, null, 2));
    }
    if (isLong(v)) return pre(String(v));
    return el("span", { class: "scalar" }, typeof v === "string" ? v : JSON.stringify(v));
  }

  // Rows whose fields are all short: one table; otherwise one block per row.
  function rowsView(rows, skip) {
    const box = el("div", { class: "rows" });
    const cols = [];
    for (const r of rows) for (const k of Object.keys(r)) if (!skip.has(k) && !cols.includes(k)) cols.push(k);
    const allShort = rows.length > 1 && rows.every(r => cols.every(k => !isLong(r[k]) && !CODE.has(k) && !CHAT.has(k)));
    if (allShort) {
      const t = el("table", { class: "data" }, el("tr", {}, ...cols.map(c => el("th", {}, c))));
      for (const r of rows) {
        t.appendChild(el("tr", {}, ...cols.map(c => {
          const v = r[c];
          if (c === "verdict" || c === "pass" || c === "passed") {
            const ok = v === true || v === "pass";
            return el("td", { class: ok ? "ok" : (v === null || v === undefined ? "" : "bad") }, v === null || v === undefined ? "" : String(v));
          }
          return el("td", {}, v === null || v === undefined ? "" : (typeof v === "string" ? v : JSON.stringify(v)));
        })));
      }
      box.appendChild(t);
      return box;
    }
    rows.forEach((r, i) => {
      const block = el("div", { class: "row" });
      if (rows.length > 1) block.appendChild(el("div", { class: "rowhead" }, "row " + (i + 1) + (r.round !== undefined ? " · round " + r.round : "")));
      const scalars = el("dl", { class: "scalars" });
      const big = [];
      for (const k of cols) {
        if (!(k in r)) continue;
        const v = r[k];
        const view = fieldView(k, v);
        if (!view) continue;
        if (view.tagName === "SPAN") {
          scalars.appendChild(el("dt", {}, k));
          scalars.appendChild(el("dd", {}, view));
        } else {
          big.push(el("div", { class: "fieldbox", "data-field": k }, el("div", { class: "field" }, k), view));
        }
      }
      if (scalars.childNodes.length) block.appendChild(scalars);
      for (const b of big) block.appendChild(b);
      box.appendChild(block);
    });
    return box;
  }

  function partsView(parts, skip) {
    const box = el("div", { class: "parts" });
    for (const p of parts) {
      const shown = p.rows.length + (p.cut_rows || 0);
      box.appendChild(el("section", { class: "part" }, el("h4", {}, p.title + " (" + shown + ")"), rowsView(p.rows, skip),
        p.cut_rows ? el("p", { class: "muted" }, p.cut_rows + " more rows are in the artifact") : null));
    }
    return box;
  }

  function attemptView(a, open, skip) {
    const d = el("details", { class: "attempt", "data-attempt": a.id });
    if (open) d.open = true;
    d.appendChild(el("summary", {}, badge(a.pass, a.label), " ", a.id));
    let filled = false;
    const fill = () => { if (!filled) { filled = true; d.appendChild(partsView(a.parts, skip)); } };
    if (open) fill(); else d.addEventListener("toggle", fill);
    return d;
  }

  // The last program an attempt shows (a sequential run's final round).
  function programOf(a) {
    let last = null;
    for (const p of a.parts) for (const r of p.rows) for (const k of ["program", "code", "completion", "solution"]) {
      if (typeof r[k] === "string" && r[k]) { last = r[k]; break; }
    }
    return last;
  }

  // --- pages ---------------------------------------------------------------
  function home() {
    setCrumbs();
    app.textContent = "";
    app.appendChild(el("h2", {}, "Cells"));
    const t = el("table", { class: "data cells" }, el("tr", {}, el("th", {}, "cell"), el("th", {}, "tables"),
      el("th", {}, "problems"), el("th", {}, "attempts"), el("th", {}, "attempts passed"), el("th", {}, "problems solved")));
    site.cells.forEach((c, i) => {
      t.appendChild(el("tr", {}, el("td", {}, link("#/cell/" + i, cellName(c), "cell-link")),
        el("td", {}, c.tables.join(", ")), el("td", {}, String(c.problems)), el("td", {}, String(c.attempts)),
        el("td", {}, c.outcome ? pct(c.passed, c.attempts) : "–"), el("td", {}, c.outcome ? pct(c.solved, c.problems) : "–")));
    });
    app.appendChild(t);
    const tpl = document.getElementById("report-tables");
    if (tpl && tpl.content.childNodes.length) {
      app.appendChild(el("h2", {}, "Tables"));
      app.appendChild(tpl.content.cloneNode(true));
    }
  }

  async function cellPage(ci, params) {
    const c = site.cells[ci];
    if (!c) return notFound();
    setCrumbs(link("#/cell/" + ci, cellName(c)));
    app.textContent = "";
    app.appendChild(el("h2", {}, cellName(c)));
    app.appendChild(el("p", { class: "muted" }, c.problems + " problems, " + c.attempts + " attempts" +
      (c.outcome ? " · " + pct(c.passed, c.attempts) + " of attempts pass (" + c.outcome + "), " + pct(c.solved, c.problems) + " of problems solved" : "")));
    const data = await load("c" + ci);
    const verdict = el("select", { id: "verdict-filter" },
      ...["all", "pass", "fail", "mixed", "ungraded"].map(v => el("option", { value: v }, v)));
    verdict.value = params.get("verdict") || "all";
    const search = el("input", { id: "task-search", type: "search", placeholder: "task id contains…", value: params.get("q") || "" });
    const list = el("table", { class: "data problems", id: "problem-list" });
    const count = el("span", { class: "muted" });
    const render = () => {
      list.textContent = "";
      list.appendChild(el("tr", {}, el("th", {}, "task"), el("th", {}, "verdict"), el("th", {}, "attempts"), el("th", {}, "passed")));
      const q = search.value.trim().toLowerCase();
      let shown = 0;
      data.problems.forEach(([key, v, n, passed, graded], pi) => {
        if (verdict.value !== "all" && v !== verdict.value) return;
        if (q && !String(key).toLowerCase().includes(q)) return;
        shown++;
        if (shown > 500) return;
        list.appendChild(el("tr", { class: "v-" + v }, el("td", {}, link("#/cell/" + ci + "/p/" + pi, String(key), "problem-link")),
          el("td", {}, el("span", { class: "badge " + (v === "pass" ? "pass" : v === "fail" ? "fail" : "none") }, v)),
          el("td", {}, String(n)), el("td", {}, graded ? passed + " / " + graded : "–")));
      });
      count.textContent = shown > 500 ? " showing 500 of " + shown : " " + shown + " shown";
    };
    verdict.addEventListener("change", render);
    search.addEventListener("input", render);
    app.appendChild(el("div", { class: "filters" }, "verdict ", verdict, " ", search, count));
    app.appendChild(list);
    render();
  }

  function compareControls(ci, pi, key) {
    const options = site.cells.map((c, j) => el("option", { value: String(j) }, cellName(c)));
    const pick = el("select", { id: "compare-with" }, ...options);
    pick.value = String(ci === 0 && site.cells.length > 1 ? 1 : 0);
    const go = el("button", { id: "compare-go", onclick: () => {
      location.hash = "#/compare/" + ci + "/" + pick.value + "/" + encodeKey(key);
    } }, "side by side");
    return el("div", { class: "filters" }, "compare this problem with ", pick, " ", go);
  }

  async function problemView(ci, pi) {
    const c = site.cells[ci];
    const p = await load("c" + ci + "/p" + pi);
    const skip = new Set();
    const box = el("div", { class: "problem", "data-cell": String(ci) });
    box.appendChild(el("h3", {}, p.key, " ", el("span", { class: "badge " + (p.verdict === "pass" ? "pass" : p.verdict === "fail" ? "fail" : "none") }, p.verdict)));
    if (p.shared.length) {
      // What the problem is (its prompt, tests): folded, the attempts come first.
      const d = el("details", { class: "shared" }, el("summary", {}, "the problem: " +
        p.shared.map(s => s.title + " (" + s.rows.length + ")").join(", ")));
      if (!p.attempts.length) d.open = true;
      d.appendChild(partsView(p.shared, skip));
      box.appendChild(d);
    }
    if (p.attempts.length) {
      const passed = p.attempts.filter(a => a.pass === true).length;
      box.appendChild(el("h4", { class: "sub" }, p.attempts.length + " attempt" + (p.attempts.length === 1 ? "" : "s") +
        (c.group ? " (by " + c.group + ")" : "") + ", " + passed + " passed"));
      p.attempts.forEach((a, i) => box.appendChild(attemptView(a, i < 3, skip)));
    }
    return { box, data: p };
  }

  async function problemPage(ci, pi) {
    const c = site.cells[ci];
    if (!c) return notFound();
    app.textContent = "";
    const { box, data } = await problemView(ci, pi);
    setCrumbs(link("#/cell/" + ci, cellName(c)), link("#/cell/" + ci + "/p/" + pi, data.key));
    if (site.cells.length > 1) app.appendChild(compareControls(ci, pi, data.key));
    app.appendChild(box);
  }

  async function findProblem(ci, key) {
    const idx = await load("c" + ci);
    return idx.problems.findIndex(row => String(row[0]) === key);
  }

  // Line diff by longest common subsequence (programs are short).
  function diffLines(a, b) {
    const x = a.split("\n"), y = b.split("\n");
    if (x.length * y.length > 4e6) return null;
    const n = x.length, m = y.length;
    const L = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
    for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) {
      L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
    }
    const out = [];
    let i = 0, j = 0;
    while (i < n && j < m) {
      if (x[i] === y[j]) { out.push([" ", x[i]]); i++; j++; }
      else if (L[i + 1][j] >= L[i][j + 1]) { out.push(["-", x[i]]); i++; }
      else { out.push(["+", y[j]]); j++; }
    }
    while (i < n) out.push(["-", x[i++]]);
    while (j < m) out.push(["+", y[j++]]);
    return out;
  }

  async function comparePage(ci, cj, key) {
    const a = site.cells[ci], b = site.cells[cj];
    if (!a || !b) return notFound();
    app.textContent = "";
    setCrumbs(link("#/compare/" + ci + "/" + cj + "/" + encodeKey(key), "side by side: " + key));
    const [pa, pb] = await Promise.all([findProblem(ci, key), findProblem(cj, key)]);
    const head = el("div", { class: "compare-head" });
    app.appendChild(head);
    const cols = el("div", { class: "side-by-side", id: "side-by-side" });
    const views = [];
    for (const [c, i, p] of [[a, ci, pa], [b, cj, pb]]) {
      const col = el("div", { class: "side" }, el("h3", {}, link("#/cell/" + i, cellName(c))));
      if (p < 0) {
        col.appendChild(el("p", { class: "muted" }, "no problem " + key + " in this cell"));
        views.push(null);
      } else {
        const { box, data } = await problemView(i, p);
        col.appendChild(box);
        views.push(data);
      }
      cols.appendChild(col);
    }
    const pickers = views.map((v, side) => {
      if (!v || !v.attempts.length) return null;
      const s = el("select", { id: "diff-attempt-" + side }, ...v.attempts.map((at, k) => el("option", { value: String(k) }, at.id + " (" + (at.pass === true ? "pass" : at.pass === false ? "fail" : "ungraded") + ")")));
      return s;
    });
    const diffBox = el("div", { class: "diff", id: "program-diff" });
    const renderDiff = () => {
      diffBox.textContent = "";
      if (!pickers[0] || !pickers[1]) { diffBox.appendChild(el("p", { class: "muted" }, "nothing to diff")); return; }
      const left = programOf(views[0].attempts[+pickers[0].value]) || "";
      const right = programOf(views[1].attempts[+pickers[1].value]) || "";
      const d = diffLines(left, right);
      if (!d) { diffBox.appendChild(el("p", { class: "muted" }, "programs too long to diff here")); return; }
      const p = el("pre", { class: "code" });
      for (const [op, line] of d) {
        p.appendChild(el("span", { class: op === "+" ? "add" : op === "-" ? "del" : "same" }, op + " " + line + "\n"));
      }
      diffBox.appendChild(el("div", { class: "field" }, "program diff (− left, + right)"));
      diffBox.appendChild(p);
    };
    if (pickers[0] && pickers[1]) {
      pickers[0].addEventListener("change", renderDiff);
      pickers[1].addEventListener("change", renderDiff);
      head.appendChild(el("div", { class: "filters" }, "diff attempt ", pickers[0], " against ", pickers[1]));
    }
    head.appendChild(diffBox);
    renderDiff();
    app.appendChild(cols);
  }

  function notFound() {
    app.textContent = "";
    app.appendChild(el("p", {}, "Nothing here: ", link("#/", "back to the cells")));
  }

  async function route() {
    const [path, query] = location.hash.replace(/^#/, "").split("?");
    const params = new URLSearchParams(query || "");
    const parts = (path || "/").split("/").filter(Boolean);
    try {
      document.body.dataset.ready = "no";
      if (parts[0] === "cell" && parts.length === 2) await cellPage(+parts[1], params);
      else if (parts[0] === "cell" && parts[2] === "p") await problemPage(+parts[1], +parts[3]);
      else if (parts[0] === "compare") await comparePage(+parts[1], +parts[2], decodeURIComponent(parts.slice(3).join("/")));
      else home();
    } catch (e) {
      app.textContent = "";
      app.appendChild(el("p", { class: "error" }, String(e && e.message || e)));
    }
    document.body.dataset.ready = "yes";
    window.twOpenedMs = performance.now();
  }

  window.addEventListener("hashchange", route);
  route();
})();
