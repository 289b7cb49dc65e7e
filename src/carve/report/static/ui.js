/* Carve analyst pages (report/static/ui.js): map, event view, cluster browser, coverage, quality.
 * Plain JS, no build step. Data come from the HTTP API (fetch with the page's bearer token) or,
 * in a static export, from snapshot scripts data/<key>.js that call CARVE_SNAP_PUT(key, value)
 * (scripts, not fetch, so that file:// works). Every value from the data is put into the page
 * with textContent / attributes, never as HTML. */
(function () {
  "use strict";
  var CFG = JSON.parse(document.getElementById("carve-config").textContent);
  var STATIC = CFG.mode === "static";
  var SNAP = {};
  window.CARVE_SNAP_PUT = function (key, value) { SNAP[key] = value; };

  // -- helpers -----------------------------------------------------------------------------
  function $(sel, el) { return (el || document).querySelector(sel); }
  function h(tag, attrs) {
    var el = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "text") el.textContent = String(v);
      else if (k.slice(0, 2) === "on") el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    });
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      el.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return el;
  }
  function qs(obj) {
    var p = new URLSearchParams();
    Object.keys(obj).forEach(function (k) { if (obj[k] !== "" && obj[k] !== null && obj[k] !== undefined) p.set(k, obj[k]); });
    var s = p.toString();
    return s ? "?" + s : "";
  }
  function params() { return new URLSearchParams(location.search); }
  function pageUrl(name, q) {
    var path = STATIC ? name + ".html" : (name === "index" ? CFG.base : CFG.base + name);
    return path + qs(q || {});
  }
  function status(msg) { $("#status").textContent = msg || ""; }
  function fail(where, e) { status(where + ": " + (e && e.message ? e.message : e)); }
  function snapName(key) { return key.replace(/[^A-Za-z0-9_.-]/g, "_"); }
  function list(v, key) {  // a list body, or the list under `key` of an object body
    if (Array.isArray(v)) return v;
    if (v && Array.isArray(v[key])) return v[key];
    return [];
  }
  function when(v) {  // epoch seconds or an ISO string -> "YYYY-MM-DD HH:MM:SS UTC"
    if (v === null || v === undefined || v === "") return "–";
    var d = typeof v === "number" ? new Date(v * 1000) : new Date(v);
    return isNaN(d.getTime()) ? String(v) : d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }
  function fmt(v, d) {
    if (v === null || v === undefined || v === "") return "–";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(d === undefined ? 3 : d);
    return String(v);
  }

  var loaded = {};
  function loadScript(src) {
    if (!loaded[src]) {
      loaded[src] = new Promise(function (resolve, reject) {
        var s = h("script", {src: src});
        s.onload = resolve;
        s.onerror = function () { reject(new Error("not in this export: " + src)); };
        document.head.appendChild(s);
      });
    }
    return loaded[src];
  }
  /* plotly.min.js comes after this script (so that the API requests start first): wait for it. */
  function plotlyReady() {
    if (window.Plotly) return Promise.resolve(window.Plotly);
    return new Promise(function (resolve) {
      document.addEventListener("DOMContentLoaded", function () { resolve(window.Plotly); });
    });
  }
  /* The signed-in user (server mode): shown in the header; `may(action)` hides what the role may not do. */
  function may(action) { return !!(CFG.user && CFG.user.may && CFG.user.may[action]); }
  function showUser() {
    var el = document.getElementById("whoami");
    if (!el || !CFG.user) return;
    el.textContent = CFG.user.name + " (" + CFG.user.role + ")";
    el.setAttribute("data-role", CFG.user.role);
    el.hidden = false;
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", showUser);
  else showUser();
  function authHeaders() { return CFG.token ? {Authorization: "Bearer " + CFG.token} : {}; }

  /* GET a JSON API path (server) or its snapshot (static export). */
  function api(path) {
    if (STATIC) {
      return loadScript("data/" + snapName(path) + ".js").then(function () {
        if (!(path in SNAP)) throw new Error("not in this export: " + path);
        return SNAP[path];
      });
    }
    return fetch(path, {headers: authHeaders(), credentials: "same-origin"}).then(function (r) {
      if (!r.ok) {
        return r.text().then(function (t) {
          var detail = t;
          try { detail = JSON.parse(t).detail || t; } catch (e) { /* not JSON */ }
          throw new Error(r.status + " " + (typeof detail === "string" ? detail : JSON.stringify(detail)));
        });
      }
      return r.json();
    });
  }
  /* POST/DELETE (server only: a static export cannot change anything). */
  function send(method, path, body) {
    if (STATIC) return Promise.reject(new Error("flagging needs the server (this is a static export)"));
    var headers = authHeaders();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, {method: method, headers: headers, credentials: "same-origin",
                        body: body === undefined ? undefined : JSON.stringify(body)}).then(function (r) {
      if (!r.ok) return r.text().then(function (t) { throw new Error(r.status + " " + t); });
      return r.status === 204 ? null : r.json();
    });
  }
  /* A URL for an image, clip or CSV: the exported file, or a blob of the authenticated response. */
  var blobs = {};
  function media(path) {
    if (STATIC) return Promise.resolve("media/" + snapName(path));
    if (!blobs[path]) {
      blobs[path] = fetch(path, {headers: authHeaders(), credentials: "same-origin"}).then(function (r) {
        if (!r.ok) throw new Error(r.status + " " + path);
        return r.blob();
      }).then(function (b) { return URL.createObjectURL(b); });
      blobs[path].catch(function () { delete blobs[path]; });
    }
    return blobs[path];
  }
  /* The API paths the pages read (the static export snapshots exactly these). They are not
   * spelled here: the page config carries the server's one table (carve.audit.paths.PATHS),
   * whose "{param}" parts are filled in with encodeURIComponent. */
  function path(name, params, q) {
    var t = CFG.paths[name];
    if (!t) throw new Error("no API path " + name);
    return t.replace(/\{([a-z_]+)\}/g, function (_m, k) { return encodeURIComponent(params[k]); }) + (q || "");
  }
  var P = {
    datasets: function () { return path("datasets", {}); },
    versions: function (d) { return path("versions", {name: d}); },
    facets: function (d) { return path("facets", {name: d}); },
    map: function (d, q) { return path("map", {name: d}, qs(q || {})); },
    bins: function (d, q) { return path("bins", {name: d}, qs(q || {})); },
    frame: function (d, q) { return path("frame", {name: d}, qs(q || {})); },
    event: function (id) { return path("event", {event_id: id}, "?images=false"); },
    signals: function (id) { return path("signals", {event_id: id}); },
    neighbours: function (id) { return path("neighbours", {event_id: id}, "?k=8"); },
    flags: function (id) { return path("flags", {event_id: id}); },
    clip: function (id) { return path("clip", {event_id: id}); },
    keyframe: function (id, i) { return path("keyframe", {event_id: id, index: i || 0}); },
    cluster: function (d, c, off) {
      return path("cluster", {name: d, cluster: c}, "?offset=" + (off || 0) + "&limit=" + CFG.cluster_page);
    },
    coverage: function (d, q) { return path("coverage", {name: d}, qs(q)); },
    coverageCsv: function (d, q) { return path("coverage_csv", {name: d}, qs(q)); },
    quality: function (d) { return path("quality", {name: d}); },
    qualityCsv: function (d) { return path("quality_csv", {name: d}); },
  };

  // -- keyboard ----------------------------------------------------------------------------
  var keys = {next: null, prev: null, open: null, flag: null};
  var gPending = false;
  function toggleHelp(show) {
    var el = $("#help");
    var on = show === undefined ? el.hidden : show;
    el.hidden = !on;
    $("#help-btn").setAttribute("aria-expanded", String(on));
  }
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var t = ev.target, typing = t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT");
    if (ev.key === "Escape") { toggleHelp(false); if (typing) t.blur(); return; }
    if (typing) return;
    var k = ev.key;
    if (gPending) {
      gPending = false;
      var d = params().get("dataset") || CFG.dataset || "";
      if (k === "m") { location.href = pageUrl("map", {dataset: d}); ev.preventDefault(); }
      if (k === "c") { location.href = pageUrl("coverage", {dataset: d}); ev.preventDefault(); }
      if (k === "q") { location.href = pageUrl("quality", {dataset: d}); ev.preventDefault(); }
      return;
    }
    if (k === "?") { toggleHelp(); ev.preventDefault(); return; }
    if (k === "g") { gPending = true; return; }
    if (k === "/") {
      var f = $(".filters select, .filters input");
      if (f) { f.focus(); ev.preventDefault(); }
      return;
    }
    var isLink = t && (t.tagName === "A" || t.tagName === "BUTTON");
    if ((k === "j" || k === "ArrowDown" || k === "ArrowRight") && keys.next) { keys.next(); ev.preventDefault(); }
    else if ((k === "k" || k === "ArrowUp" || k === "ArrowLeft") && keys.prev) { keys.prev(); ev.preventDefault(); }
    else if (k === "Enter" && keys.open && !isLink) { keys.open(); ev.preventDefault(); }
    else if (k === "f" && keys.flag) { keys.flag(); ev.preventDefault(); }
  });
  /* j/k over a list of elements (links): select, scroll into view, focus; returns the cursor. */
  function listCursor(getItems, onSelect) {
    var cur = {i: -1};
    function go(d) {
      var items = getItems();
      if (!items.length) return;
      if (cur.i >= 0 && items[cur.i]) items[cur.i].classList.remove("sel");
      cur.i = Math.max(0, Math.min(items.length - 1, cur.i + d));
      var el = items[cur.i];
      el.classList.add("sel");
      var a = el.tagName === "A" ? el : el.querySelector("a");
      (a || el).focus();
      if (onSelect) onSelect(el, cur.i);
    }
    keys.next = function () { go(1); };
    keys.prev = function () { go(cur.i < 0 ? 1 : -1); };
    keys.open = function () {
      var items = getItems(), el = items[cur.i];
      var a = el && (el.tagName === "A" ? el : el.querySelector("a"));
      if (a) a.click();
    };
    return cur;
  }

  // -- navigation --------------------------------------------------------------------------
  function setupNav() {
    var d = params().get("dataset") || "";
    document.querySelectorAll("[data-nav]").forEach(function (a) {
      var name = a.getAttribute("data-nav");
      a.setAttribute("href", pageUrl(name, name === "index" ? {} : {dataset: d}));
    });
    $("#help-btn").addEventListener("click", function () { toggleHelp(); });
  }

  function datasetOrFirst() {
    var d = params().get("dataset");
    if (d) return Promise.resolve(d);
    return api(P.datasets()).then(function (ds) {
      if (!ds.length) throw new Error("no datasets");
      return ds[0].name;
    });
  }

  // -- index -------------------------------------------------------------------------------
  function pageIndex() {
    return api(P.datasets()).then(function (ds) {
      var ul = $("#datasets");
      ds.forEach(function (d) {
        ul.appendChild(h("li", {},
          h("b", {text: d.name}), " ",
          h("span", {class: "muted", text: fmt(d.events) + " events · " + fmt(d.ok) + " episodes"}), " — ",
          h("a", {href: pageUrl("map", {dataset: d.name}), text: "map"}), " · ",
          h("a", {href: pageUrl("coverage", {dataset: d.name}), text: "coverage"}), " · ",
          h("a", {href: pageUrl("quality", {dataset: d.name}), text: "quality"})));
      });
      listCursor(function () { return Array.prototype.slice.call(ul.children); });
    });
  }

  // -- map ---------------------------------------------------------------------------------
  var FILTERS = ["clusters_version", "task", "robot", "arm", "verb", "cluster", "defect"];
  var NO_FINDING = "none";  // the defect facet's value of an event no finding touches (carve.audit.quality)
  function facetValues(facets, name) {
    var v = facets && (facets[name] !== undefined ? facets[name] : facets[name + "s"]);
    if (v === undefined && facets && facets.facets) return facetValues(facets.facets, name);
    if (!v) return [];
    if (Array.isArray(v)) {
      return v.map(function (x) {
        if (x !== null && typeof x === "object") return {value: x.value !== undefined ? x.value : x.name, count: x.count};
        return {value: x, count: null};
      });
    }
    return Object.keys(v).map(function (k) { return {value: k, count: v[k]}; });
  }
  function fillSelect(sel, values, current, label) {
    values.forEach(function (x) {
      var text = (label ? label(x.value) : String(x.value)) + (x.count !== null && x.count !== undefined ? " (" + x.count + ")" : "");
      sel.appendChild(h("option", {value: String(x.value), text: text}));
    });
    if (current !== null && current !== undefined) sel.value = current;
  }
  function localFilter(points, q) {  // static export: the snapshot holds the whole map
    return points.filter(function (p) {
      if (q.task && p.task !== q.task) return false;
      if (q.robot && p.robot !== q.robot) return false;
      if (q.verb && p.verb !== q.verb) return false;
      if (q.cluster !== undefined && q.cluster !== "" && String(p.cluster) !== String(q.cluster)) return false;
      if (q.defect) {  // the export's points carry the kinds touching them (ui_export)
        var tags = p.defect || [];
        if (q.defect === NO_FINDING ? tags.length : tags.indexOf(q.defect) < 0) return false;
      }
      if (q.arm) {
        var arms = Array.isArray(p.arms) ? p.arms.map(String) : String(p.arms || "").split(/[,+ ]/);
        if (arms.indexOf(q.arm) < 0) return false;
      }
      return true;
    });
  }
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"];
  /* The map is drawn on a plain <canvas> (2-D context): the density underlay as one image, the
   * points as small marks per cluster colour. In the served page its data are one binary frame
   * (carve.audit.mapframe: a point sample sized by the canvas, the underlay precomputed per
   * clustering version); wheel zooms, drag pans, and the visible box is then asked for at the
   * same screen budget. The static export draws its JSON snapshot instead. */
  var MAP = {points: [], sel: -1, hover: -1, view: null, extent: null, w: 0, h: 0, px: null, seq: 0};
  window.CARVE_MAP = MAP;  // for tests and the console: the drawn points, the selection, toPage(i)
  var DTYPES = {"<f4": Float32Array, "<u2": Uint16Array, "<u4": Uint32Array, "<i4": Int32Array, "|u1": Uint8Array};
  function decodeFrame(buf) {  // the layout of carve.audit.mapframe (little-endian typed arrays)
    var dv = new DataView(buf);
    if (dv.getUint32(0, false) !== 0x434d4150) throw new Error("not a map frame");  // "CMAP"
    if (dv.getUint32(4, true) !== 1) throw new Error("map frame format " + dv.getUint32(4, true) + " is unknown here");
    var dec = new TextDecoder();
    var head = JSON.parse(dec.decode(new Uint8Array(buf, 12, dv.getUint32(8, true))));
    var s = {};
    head.sections.forEach(function (m) {
      var T = DTYPES[m.dtype];
      if (!T) throw new Error("map frame: unknown dtype " + m.dtype);
      s[m.name] = new T(buf, m.offset, m.nbytes / T.BYTES_PER_ELEMENT);
    });
    var d = head.dicts, off = s.id_offsets, pts = new Array(head.n);
    // the ids in one decode: when they are all ASCII a string index is a byte offset (else one decode each)
    var ids = dec.decode(s.id_bytes), ascii = ids.length === s.id_bytes.length;
    for (var i = 0; i < head.n; i++) {
      pts[i] = {event_id: ascii ? ids.slice(off[i], off[i + 1]) : dec.decode(s.id_bytes.subarray(off[i], off[i + 1])),
                x: s.x[i], y: s.y[i], cluster: s.cluster[i], task: d.task[s.task[i]], robot: d.robot[s.robot[i]],
                verb: d.verb[s.verb[i]], caption: d.caption[s.caption[i]]};
    }
    return {head: head, points: pts, density: s.density ? {bins: head.bins, extent: head.extent, counts: s.density} : null};
  }
  function mark(name) { if (window.performance && performance.mark) performance.mark(name); }  // for traces and the bench
  function inlineBytes(id) {  // the base64 bytes of <script id=... type=application/octet-stream> (the served map)
    var el = document.getElementById(id), t = el ? el.textContent.trim() : "";
    if (!t) return null;
    if (Uint8Array.fromBase64) return Uint8Array.fromBase64(t).buffer;
    var s = atob(t), a = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
    return a.buffer;
  }
  function apiFrame(path, early) {  // `early`: the page's own start on this frame (map.html.j2): {inline}, or {response}
    var buf = early && early.inline ? inlineBytes(early.inline) : null;
    if (buf) {  // carried in the page
      mark("carve-map-received");
      return Promise.resolve(decodeFrame(buf));
    }
    if (early && early.inline) early = null;  // not there after all: ask for it
    return (early && early.response || fetch(path, {headers: authHeaders(), credentials: "same-origin"})).then(function (r) {
      if (!r.ok) {
        return r.text().then(function (t) {
          var detail = t;
          try { detail = JSON.parse(t).detail || t; } catch (e) { /* not JSON */ }
          throw new Error(r.status + " " + detail);
        });
      }
      return r.arrayBuffer();
    }).then(function (buf) { mark("carve-map-received"); return decodeFrame(buf); });
  }
  function cellsToCounts(b) {  // the bins snapshot's [{ix, iy, count}] -> counts[iy * n + ix]
    var n = Number(b.bins) || 64, counts = new Uint32Array(n * n);
    (b.cells || []).forEach(function (c) { if (c.iy < n && c.ix < n) counts[c.iy * n + c.ix] = c.count; });
    return {bins: n, extent: b.extent, counts: counts};
  }
  function densityImage(g) {  // one pixel per cell, grey by log count, empty cells transparent
    var n = g.bins, c = document.createElement("canvas"), max = 0, k;
    c.width = n; c.height = n;
    for (k = 0; k < g.counts.length; k++) if (g.counts[k] > max) max = g.counts[k];
    var ctx = c.getContext("2d"), img = ctx.createImageData(n, n), lm = Math.log(1 + max) || 1;
    var data = img.data, counts = g.counts;  // held once: each `img.data` is a call into the page's engine
    for (var iy = 0; iy < n; iy++) {
      for (var ix = 0; ix < n; ix++) {
        var v = counts[iy * n + ix];
        if (!v) continue;
        var a = Math.log(1 + v) / lm, o = ((n - 1 - iy) * n + ix) * 4;  // row 0 of the image is the top (ymax)
        data[o] = data[o + 1] = data[o + 2] = Math.round(215 - 85 * a);
        data[o + 3] = Math.round(90 + 165 * a);
      }
    }
    ctx.putImageData(img, 0, 0);
    return c;
  }
  function padded(e) {
    var dx = (e[1] - e[0]) * 0.03 || 0.5, dy = (e[3] - e[2]) * 0.03 || 0.5;
    return [e[0] - dx, e[1] + dx, e[2] - dy, e[3] + dy];
  }
  function toPx(x, y) {
    var v = MAP.view;
    return [(x - v[0]) / (v[1] - v[0]) * MAP.w, MAP.h - (y - v[2]) / (v[3] - v[2]) * MAP.h];
  }
  MAP.toPage = function (i) {  // page coordinates of point i (tests click them)
    var p = MAP.points[i], q = toPx(p.x, p.y), r = MAP.canvas.getBoundingClientRect();
    return [r.left + q[0], r.top + q[1]];
  };
  function setupCanvas() {
    var box = $("#map");
    if (!MAP.canvas) {
      MAP.canvas = h("canvas", {class: "map-canvas"});
      box.appendChild(MAP.canvas);
      bindCanvas(MAP.canvas);
      window.addEventListener("resize", function () { sizeCanvas(); paint(); });
    }
    sizeCanvas();
  }
  function sizeCanvas() {
    var box = $("#map"), dpr = window.devicePixelRatio || 1;
    MAP.w = Math.max(16, box.clientWidth);
    MAP.h = Math.max(16, box.clientHeight);
    MAP.dpr = dpr;
    MAP.canvas.width = Math.round(MAP.w * dpr);
    MAP.canvas.height = Math.round(MAP.h * dpr);
    MAP.canvas.style.width = MAP.w + "px";
    MAP.canvas.style.height = MAP.h + "px";
  }
  function paint() {
    var ctx = MAP.canvas.getContext("2d"), pts = MAP.points, n = pts.length, i, q;
    ctx.setTransform(MAP.dpr, 0, 0, MAP.dpr, 0, 0);
    ctx.clearRect(0, 0, MAP.w, MAP.h);
    if (!MAP.view) return;
    if (MAP.densityImg) {
      var e = MAP.density.extent, a = toPx(e[0], e[3]), b = toPx(e[1], e[2]);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(MAP.densityImg, a[0], a[1], b[0] - a[0], b[1] - a[1]);
    }
    var px = new Float32Array(2 * n), v = MAP.view, dx = v[1] - v[0], dy = v[3] - v[2], byColour = [];
    for (i = 0; i < n; i++) {  // toPx, written out: this loop runs once per point on a page's first screen
      q = pts[i];
      px[2 * i] = (q.x - v[0]) / dx * MAP.w; px[2 * i + 1] = MAP.h - (q.y - v[2]) / dy * MAP.h;
      var k = (Number(q.cluster) || 0) % PALETTE.length;
      (byColour[k] = byColour[k] || []).push(i);
    }
    MAP.px = px;
    var r = n > 2000 ? 2 : 4;
    ctx.globalAlpha = 0.9;
    byColour.forEach(function (js, k) {
      ctx.fillStyle = PALETTE[k];
      var m;
      if (n > 2000) {  // a screen-sized sample (a point per screen cell): 4-px squares; rasterising thousands
        for (m = 0; m < js.length; m++) ctx.fillRect(px[2 * js[m]] - r, px[2 * js[m] + 1] - r, 2 * r, 2 * r);
        return;        // of anti-aliased circles cost the first screen more than all of its script did
      }
      ctx.beginPath();
      for (m = 0; m < js.length; m++) {
        ctx.moveTo(px[2 * js[m]] + r, px[2 * js[m] + 1]);
        ctx.arc(px[2 * js[m]], px[2 * js[m] + 1], r, 0, 2 * Math.PI);
      }
      ctx.fill();
    });
    ctx.globalAlpha = 1;
    [[MAP.hover, "#555", 1.5, r + 3], [MAP.sel, "#f5a623", 3, 9]].forEach(function (m) {
      if (m[0] < 0 || m[0] >= n) return;
      ctx.strokeStyle = m[1]; ctx.lineWidth = m[2];
      ctx.beginPath();
      ctx.arc(px[2 * m[0]], px[2 * m[0] + 1], m[3], 0, 2 * Math.PI);
      ctx.stroke();
    });
  }
  function nearest(x, y) {  // the point within 10 px of canvas pixel (x, y), or -1
    var px = MAP.px, best = -1, bd = 100;
    if (!px) return -1;
    for (var i = 0; i < MAP.points.length; i++) {
      var dx = px[2 * i] - x, dy = px[2 * i + 1] - y, dd = dx * dx + dy * dy;
      if (dd <= bd) { bd = dd; best = i; }
    }
    return best;
  }
  function bindCanvas(c) {
    var drag = null;
    function local(ev) { var r = c.getBoundingClientRect(); return [ev.clientX - r.left, ev.clientY - r.top]; }
    c.addEventListener("mousedown", function (ev) { if (MAP.view) drag = {at: local(ev), view: MAP.view.slice(), moved: false}; });
    c.addEventListener("mousemove", function (ev) {
      var p = local(ev);
      if (drag && (ev.buttons & 1)) {
        var dx = p[0] - drag.at[0], dy = p[1] - drag.at[1], v = drag.view;
        if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
        if (!drag.moved) return;
        var sx = (v[1] - v[0]) / MAP.w, sy = (v[3] - v[2]) / MAP.h;
        MAP.view = [v[0] - dx * sx, v[1] - dx * sx, v[2] + dy * sy, v[3] + dy * sy];
        paint();
        refine();
        return;
      }
      var i = nearest(p[0], p[1]);
      c.style.cursor = i >= 0 ? "pointer" : "default";
      if (i >= 0 && i !== MAP.hover) { showPoint(i); paint(); }
    });
    c.addEventListener("mouseup", function (ev) {
      var was = drag;
      drag = null;
      if (was && was.moved) return;
      var p = local(ev), i = nearest(p[0], p[1]);
      if (i >= 0) openPoint(i);
    });
    c.addEventListener("mouseleave", function () { drag = null; });
    c.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      if (!MAP.view) return;
      var p = local(ev), v = MAP.view, f = Math.exp(Math.max(-1, Math.min(1, ev.deltaY * 0.002)));
      var cx = v[0] + p[0] / MAP.w * (v[1] - v[0]), cy = v[3] - p[1] / MAP.h * (v[3] - v[2]);
      MAP.view = [cx - (cx - v[0]) * f, cx + (v[1] - cx) * f, cy - (cy - v[2]) * f, cy + (v[3] - cy) * f];
      paint();
      refine();
    }, {passive: false});
    c.addEventListener("dblclick", function () {  // back to the whole map
      if (!MAP.extent) return;
      MAP.view = padded(MAP.extent);
      paint();
      refine();
    });
  }
  /* After a zoom or pan settles: the visible box's sample at the same screen budget (server only). */
  function refine() {
    if (STATIC || !MAP.dataset) return;
    clearTimeout(MAP.refineTimer);
    MAP.refineTimer = setTimeout(function () {
      var v = MAP.view, seq = ++MAP.seq;
      var q = Object.assign({}, MAP.filters, {width: MAP.w, height: MAP.h, x0: v[0], x1: v[1], y0: v[2], y1: v[3],
                                              density: "false"});
      apiFrame(P.frame(MAP.dataset, q)).then(function (f) {
        if (seq !== MAP.seq) return;  // a newer view was asked for
        setPoints(f.points, f.head);
        paint();
        $("#map").setAttribute("data-refined", String(seq));
      }).catch(function (e) { fail("map", e); });
    }, 200);
  }
  function setPoints(pts, head) {
    MAP.points = pts;
    MAP.sel = -1;
    MAP.hover = -1;
    var info = pts.length + " of " + fmt(head.in_view !== undefined && head.in_view !== head.total ? head.in_view : head.total) + " events";
    if (head.in_view !== undefined && head.in_view !== head.total) info += " in view (" + fmt(head.total) + " in all)";
    if (head.sampled) info += " shown as points (the rest as a density underlay; zoom in or narrow the filters to see them)";
    if (head.version !== undefined) info += " · clustering v" + String(head.version).padStart(3, "0");
    $("#map-info").textContent = info;
  }
  function pageMap() {
    var p = params();
    return datasetOrFirst().then(function (d) {
      CFG.dataset = d;
      $("#map-title").textContent = d;
      var form = $("#filters"), q0 = {};
      FILTERS.forEach(function (name) { var v = p.get(name); if (v !== null && v !== "") q0[name] = v; });
      var early = window.CARVE_EARLY_FRAME;  // started by the page's head (map.html.j2) for this address
      window.CARVE_EARLY_FRAME = null;
      var shown = drawMap(d, q0, early && early.search === location.search && early.dataset === d ? early : null);
      // the filters' lists are asked for once the first screen is drawn: asked beside the frame,
      // their answers reach the page's one thread first and hold the frame's decode and paint
      var filled = shown.then(function () {
        return Promise.all([api(P.datasets()), api(P.facets(d)).catch(function (e) { fail("facets", e); return {}; }),
                            api(P.versions(d)).catch(function () { return {clusters: []}; })]);
      }).then(function (r) {
        fillSelect($("#f-dataset"), r[0].map(function (x) { return {value: x.name, count: x.events}; }), d);
        var facets = r[1];
        var cv = facetValues(facets, "clusters_version");
        if (!cv.length && facets.versions && facets.versions.clusters) {
          cv = facets.versions.clusters.map(function (v) { return {value: v, count: null}; });
        }
        if (!cv.length) cv = list(r[2], "clusters").filter(function (v) { return v.complete !== false; })
          .map(function (v) { return {value: v.version, count: v.n_events}; });
        fillSelect($("#f-clusters_version"), cv, p.get("clusters_version"), function (v) { return "v" + String(v).padStart(3, "0"); });
        ["task", "robot", "arm", "verb", "cluster", "defect"].forEach(function (name) {
          fillSelect($("#f-" + name), facetValues(facets, name), p.get(name), name === "defect" ? function (v) {
            return v === NO_FINDING ? "no finding" : String(v);
          } : null);
        });
        form.addEventListener("change", function (ev) {
          if (ev.target.name === "dataset") { location.href = pageUrl("map", {dataset: ev.target.value}); return; }
          drawMap(d, currentFilters());
        });
        form.addEventListener("reset", function () { setTimeout(function () { drawMap(d, currentFilters()); }, 0); });
        form.setAttribute("data-ready", "1");  // the selects hold the address's filters and answer changes
      });
      return Promise.all([shown, filled]);
    });
  }
  function currentFilters() {
    var q = {};
    FILTERS.forEach(function (name) { var el = $("#f-" + name); if (el && el.value !== "") q[name] = el.value; });
    return q;
  }
  function drawMap(d, q, early) {
    history.replaceState(null, "", pageUrl("map", Object.assign({dataset: d}, q)));
    $("#map").setAttribute("data-ready", "0");
    status("loading map…");
    setupCanvas();
    MAP.dataset = d;
    MAP.filters = q;
    var seq = ++MAP.seq;
    // the canvas's size, for the server to make the next page's inline frame for (routes/ui.py)
    if (!STATIC) document.cookie = "carve_map_screen=" + Math.round(MAP.w) + "x" + Math.round(MAP.h) +
      "; path=/ui; max-age=31536000; SameSite=Strict";
    if (early && early.inline && !(Math.abs(early.width - MAP.w) <= 0.1 * MAP.w && Math.abs(early.height - MAP.h) <= 0.1 * MAP.h)) {
      early = null;  // the page's frame was made for another screen: ask for this one
    }
    var load = STATIC
      ? api(P.map(d)).then(function (m) {
          var pts = localFilter(m.points || [], q).slice(0, 5000), total = localFilter(m.points || [], q).length;
          return {points: pts, head: {total: total, sampled: total > pts.length, version: m.version, extent: m.extent},
                  density: m.bins_snapshot && total > pts.length ? cellsToCounts(m.bins_snapshot) : null};
        })
      : apiFrame(P.frame(d, Object.assign({}, q, {width: MAP.w, height: MAP.h})), early);
    mark("carve-map-asked");
    return load.then(function (f) {
      mark("carve-map-decoded");
      if (seq !== MAP.seq) return;
      MAP.extent = f.head.extent || [0, 1, 0, 1];
      MAP.view = padded(MAP.extent);
      MAP.density = f.density && f.head.sampled ? f.density : null;
      MAP.densityImg = MAP.density ? densityImage(MAP.density) : null;
      setPoints(f.points, f.head);
      paint();
      mark("carve-map-drawn");
      $("#map").setAttribute("data-ready", "1");
      status("");
    }).catch(function (e) { fail("map", e); });
  }
  function showPoint(i) {
    var p = MAP.points[i];
    if (!p) return;
    MAP.hover = i;
    var img = $("#hover-img");
    $("#hover-text").textContent = "";
    $("#hover-text").classList.remove("muted");
    $("#hover-text").appendChild(h("div", {},
      h("b", {text: p.caption || "(no caption)"}), h("br"),
      h("span", {class: "muted", text: "cluster " + fmt(p.cluster) + " · " + fmt(p.task) + " · " + fmt(p.robot) +
                 (p.verb ? " · " + p.verb : "")}), h("br"),
      h("a", {href: pageUrl("event", {id: p.event_id, dataset: CFG.dataset}), text: "open " + p.event_id})));
    media(P.keyframe(p.event_id, 0)).then(function (u) {
      if (MAP.hover === i) { img.src = u; img.alt = "keyframe of " + p.event_id; img.hidden = false; }
    }).catch(function () { img.hidden = true; });
  }
  function openPoint(i) {
    var p = MAP.points[i];
    if (p) location.href = pageUrl("event", {id: p.event_id, dataset: CFG.dataset});
  }
  function selectPoint(i) {
    if (!MAP.points.length) return;
    MAP.sel = (i + MAP.points.length) % MAP.points.length;
    showPoint(MAP.sel);
    paint();
  }
  function mapKeys() {
    keys.next = function () { selectPoint(MAP.sel + 1); };
    keys.prev = function () { selectPoint(MAP.sel < 0 ? 0 : MAP.sel - 1); };
    keys.open = function () { if (MAP.sel >= 0) openPoint(MAP.sel); };
    keys.flag = function () {  // the selected point's event, with its flag form focused
      var p = MAP.points[MAP.sel >= 0 ? MAP.sel : MAP.hover];
      if (p) location.href = pageUrl("event", {id: p.event_id, dataset: CFG.dataset, flag: 1});
    };
  }

  // -- event view --------------------------------------------------------------------------
  function pageEvent() {
    var id = params().get("id");
    if (!id) { status("no event id"); return Promise.resolve(); }
    $("#ev-id").textContent = id;
    var video = $("#clip");
    video.addEventListener("error", function () { status(STATIC ? "this clip is not in the export" : "the clip cannot be played"); });
    media(P.clip(id)).then(function (u) {
      video.src = u;
      var pr = video.play();
      if (pr && pr.catch) pr.catch(function () { /* autoplay refused: the controls remain */ });
    }).catch(function (e) { fail("clip", e); });
    var evp = api(P.event(id)).then(function (ev) {
      CFG.dataset = ev.dataset;
      $("#crumbs").textContent = ev.dataset + " / " + ev.episode_id;
      var dl = $("#ev-meta");
      function row(k, v) { dl.appendChild(h("dt", {text: k})); dl.appendChild(h("dd", {}, v)); }
      row("caption", h("b", {text: fmt(ev.caption)}));
      row("next caption", fmt(ev.next_caption));
      row("caption status", fmt(ev.caption_status) + (ev.caption_model ? " (" + ev.caption_model + ")" : ""));
      row("task", fmt(ev.task));
      row("robot / arms", fmt(ev.robot) + (ev.arms ? " / " + [].concat(ev.arms).join(", ") : ""));
      row("span", "frames " + fmt(ev.start_frame) + "–" + fmt(ev.end_frame) + " at " + fmt(ev.fps, 1) + " fps");
      row("boundaries", fmt(ev.start_reason) + " → " + fmt(ev.boundary_reason));
      var cl = ev.cluster_id !== null && ev.cluster_id !== undefined
        ? h("a", {href: pageUrl("cluster", {dataset: ev.dataset, c: ev.cluster_id}), text: "cluster " + ev.cluster_id}) : "–";
      row("cluster", h("span", {}, cl, ev.clusters_version ? " (clustering v" + String(ev.clusters_version).padStart(3, "0") + ")" : ""));
      if (ev.cluster_dist !== undefined) row("distance to centroid", fmt(ev.cluster_dist));
      var dups = [].concat(ev.duplicates || []);
      if (ev.dup_of) dups.unshift(ev.dup_of);
      row("duplicates", dups.length ? h("span", {}, ...dups.map(function (d, i) {
        return h("span", {}, i ? ", " : "", h("a", {href: pageUrl("event", {id: d, dataset: ev.dataset}), text: d}));
      })) : "none");
      row("episode", h("span", {}, fmt(ev.episode_id), " ",
        h("a", {href: pageUrl("quality", {dataset: ev.dataset}), text: "quality of " + ev.dataset})));
      renderSource(ev);
      renderFindings(ev);
      var th = $("#keyframes");
      for (var i = 0; i < (ev.num_keyframes || 0); i++) {
        (function (img) {
          th.appendChild(img);
          media(P.keyframe(id, i)).then(function (u) { img.src = u; }).catch(function () { img.remove(); });
        })(h("img", {alt: "keyframe " + i}));
      }
      return ev;
    }).catch(function (e) { fail("event", e); });
    var sig = Promise.all([api(P.signals(id)), evp]).then(function (r) {
      return drawSignals(r[0], (r[1] && r[1].findings) || []);
    }).catch(function (e) { $("#signals").textContent = "signals: " + e.message; });
    var nb = api(P.neighbours(id)).then(function (r) {
      var ol = $("#neighbours");
      list(r, "neighbours").forEach(function (n) {
        var nid = n.event_id || n.id;
        var img = h("img", {class: "media", alt: ""});
        media(P.keyframe(nid, 0)).then(function (u) { img.src = u; img.alt = "keyframe of " + nid; })
          .catch(function () { /* none */ });
        ol.appendChild(h("li", {}, h("a", {href: pageUrl("event", {id: nid, dataset: CFG.dataset})}, img,
          h("div", {text: n.caption || nid}),
          h("div", {class: "muted", text: "d=" + fmt(n.distance !== undefined ? n.distance : n.dist) +
                   (n.cluster !== undefined ? " · cluster " + n.cluster : "")}))));
      });
      if (!ol.children.length) ol.appendChild(h("li", {class: "muted", text: "no neighbours"}));
    }).catch(function (e) { $("#neighbours").textContent = "neighbours: " + e.message; });
    if (STATIC) { $("#flag-submit").disabled = true; $("#flag-submit").title = "flagging needs the server"; }
    if (!STATIC && !may("flag")) { $("#flag-form").hidden = true; }  // the server refuses it anyway (403)
    loadFlags(id);
    $("#flag-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      send("POST", P.flags(id), {kind: $("#flag-kind").value, note: $("#flag-note").value}).then(function () {
        $("#flag-note").value = "";
        status("flagged");
        return loadFlags(id);
      }).catch(function (e) { fail("flag", e); });
    });
    listCursor(function () { return Array.prototype.slice.call(document.querySelectorAll("#neighbours li")); });
    keys.flag = function () { $("#flag-kind").focus(); };
    if (params().get("flag")) $("#flag-kind").focus();
    return Promise.all([evp, sig, nb]);
  }
  /* Where the event is in its source: the file, the key inside it, its span in source seconds. */
  function renderSource(ev) {
    var dl = $("#ev-source");
    function row(k, v) { dl.appendChild(h("dt", {text: k})); dl.appendChild(h("dd", {}, v)); }
    row("source", h("code", {text: fmt(ev.source_uri)}));
    row("file", h("code", {id: "ev-source-file", text: fmt(ev.source_file)}));
    row("key in the file", h("code", {id: "ev-source-key", text: fmt(ev.source_key)}));
    var span = ev.source_start_s !== null && ev.source_start_s !== undefined
      ? fmt(ev.source_start_s, 3) + " s – " + fmt(ev.source_end_s, 3) + " s" : "–";
    row("span in the source", h("span", {id: "ev-source-span", text: span}));
    row("episode index", fmt(ev.episode_index));
  }
  var GATE = {pass: "no error touches this event", excluded: "an error touches it: left out of the next shard version " +
              "(a keep flag puts it back)", kept: "an error touches it, but a keep flag overrules the gate"};
  /* The findings that touch the event: list, the gate's verdict, spans on the clip's timeline. */
  function renderFindings(ev) {
    var ul = $("#ev-findings"), fs = ev.findings || [];
    ul.textContent = "";
    $("#ev-gate").textContent = ev.quality_gate ? "(" + ev.quality_gate + ": " + (GATE[ev.quality_gate] || "") + ")" : "";
    fs.forEach(function (f) {
      ul.appendChild(h("li", {class: "finding", "data-kind": f.kind},
        h("span", {class: "badge " + (f.severity === "error" ? "" : "warning"), text: f.severity}), " ",
        h("b", {text: f.kind}), " ",
        h("span", {class: "muted", text: "frames " + f.start_frame + "–" + f.end_frame + " of the episode (" +
                   (f.event_start >= 0 ? "+" : "") + f.event_start + "…+" + f.event_end + " in this event)"}),
        f.detail ? h("div", {text: f.detail}) : null));
    });
    if (!fs.length) ul.appendChild(h("li", {class: "muted", text: "no finding touches this event"}));
    var tl = $("#clip-timeline"), n = Math.max(1, (ev.end_frame || 0) - (ev.start_frame || 0));
    fs.forEach(function (f) {
      var a = Math.max(0, f.event_start), b = Math.min(n, f.event_end + 1);
      if (b <= a) return;
      tl.appendChild(h("div", {class: "tl-span " + f.severity, "data-kind": f.kind,
                               title: f.kind + " (" + f.severity + "): " + (f.detail || ""),
                               style: "left:" + (100 * a / n).toFixed(3) + "%;width:" + (100 * (b - a) / n).toFixed(3) + "%"}));
    });
    var video = $("#clip"), head = $("#clip-timeline .playhead"), fps = Number(ev.fps) || 10;
    video.addEventListener("timeupdate", function () {
      head.style.left = Math.min(100, 100 * video.currentTime * fps / n).toFixed(2) + "%";
    });
  }
  function loadFlags(id) {
    return api(P.flags(id)).then(function (r) {
      var ul = $("#flags");
      ul.textContent = "";
      var flags = list(r, "flags");
      flags.forEach(function (f) {
        var fid = f.id !== undefined ? f.id : f.flag_id;
        var active = f.state ? f.state === "active" : !(f.removed_at || f.cleared_at || f.active === false);
        var li = h("li", {class: "flag", "data-flag-id": fid},
          h("span", {class: active ? "badge" : "badge off", text: f.kind}), " ",
          h("span", {text: f.note || ""}), " ",
          h("span", {class: "muted", text: "by " + fmt(f.who || f.user) + " at " + when(f.created_at)}));
        if (active && !STATIC && may("flag")) {
          li.appendChild(h("button", {type: "button", class: "unflag", text: "unflag", onclick: function () {
            send("DELETE", P.flags(id) + "/" + encodeURIComponent(fid)).then(function () { return loadFlags(id); })
              .catch(function (e) { fail("unflag", e); });
          }}));
        } else if (!active) {
          li.appendChild(h("span", {class: "muted", text: " (unflagged by " + fmt(f.cleared_by) + " at " +
                                     when(f.cleared_at || f.removed_at) + ")"}));
        }
        ul.appendChild(li);
      });
      if (!flags.length) ul.appendChild(h("li", {class: "muted", text: "no flags"}));
    }).catch(function (e) { $("#flags").textContent = "flags: " + e.message; });
  }
  function series(block, nT) {  // {names, values} with values per time step or per channel -> [[...] per channel]
    if (!block || !block.values) return {names: [], cols: []};
    var v = block.values, names = block.names || [];
    var cols;
    if (v.length === nT && (Array.isArray(v[0]) || nT === 0)) {
      var nc = nT ? v[0].length : 0;
      cols = [];
      for (var c = 0; c < nc; c++) cols.push(v.map(function (r) { return r[c]; }));
    } else if (Array.isArray(v[0])) {
      cols = v;
    } else {
      cols = [v];
    }
    return {names: names, cols: cols};
  }
  function drawSignals(s, findings) {
    var t = s.t || [];
    var groups = [["state", s.state], ["action", s.action], ["gripper", s.gripper]];
    var traces = [], n = groups.length;
    groups.forEach(function (g, gi) {
      var sr = series(g[1], t.length);
      sr.cols.forEach(function (col, ci) {
        traces.push({type: "scatter", mode: "lines", x: t, y: col, name: g[0] + " " + (sr.names[ci] || ci),
                     xaxis: "x", yaxis: gi ? "y" + (gi + 1) : "y", line: {width: 1.2}});
      });
    });
    var layout = {margin: {l: 50, r: 10, t: 10, b: 35}, showlegend: false, hovermode: "x", shapes: [], annotations: [],
                  xaxis: {title: {text: "t (s)"}, anchor: n > 1 ? "y" + n : "y"}};
    groups.forEach(function (g, gi) {
      var top = 1 - gi / n, bottom = 1 - (gi + 1) / n + 0.04;
      layout[gi ? "yaxis" + (gi + 1) : "yaxis"] = {domain: [bottom, top], title: {text: g[0]}, zeroline: false};
    });
    var cur = s.event || (s.boundaries || []).filter(function (b) { return b.current; })[0] || (s.boundaries || [])[0];
    (s.boundaries || []).forEach(function (b) {  // the episode's other event joints, light
      if (b.current || b.t_end === undefined || (cur && b.t_end === cur.t_start) || (cur && b.t_end === cur.t_end)) return;
      layout.shapes.push({type: "line", xref: "x", yref: "paper", x0: b.t_end, x1: b.t_end, y0: 0, y1: 1,
                          line: {color: "#999", width: 1, dash: "dot"}});
      layout.annotations.push({x: b.t_end, y: 0, xref: "x", yref: "paper", yanchor: "top", showarrow: false,
                               text: String(b.reason_end || ""), font: {size: 9, color: "#777"}});
    });
    if (cur) {  // this event: its span, its two boundaries and their reasons
      layout.shapes.push({type: "rect", xref: "x", yref: "paper", x0: cur.t_start, x1: cur.t_end, y0: 0, y1: 1,
                          fillcolor: "rgba(10,102,194,0.08)", line: {width: 0}});
      [["t_start", "reason_start"], ["t_end", "reason_end"]].forEach(function (k, ki) {
        if (cur[k[0]] === undefined || cur[k[0]] === null) return;
        layout.shapes.push({type: "line", xref: "x", yref: "paper", x0: cur[k[0]], x1: cur[k[0]], y0: 0, y1: 1,
                            line: {color: ki ? "#c62828" : "#2e7d32", width: 2, dash: "dash"}});
        layout.annotations.push({x: cur[k[0]], y: 1, xref: "x", yref: "paper", yanchor: "bottom", showarrow: false,
                                 text: (ki ? "end: " : "start: ") + String(cur[k[1]] || ""),
                                 font: {size: 10, color: ki ? "#c62828" : "#2e7d32"}, xanchor: ki ? "left" : "right"});
      });
    }
    var ev0 = s.event || {}, fps = Number(s.fps) || 1;
    var tf = function (frame) {  // an episode frame on the plot's time axis (seconds from the episode's start)
      return (ev0.t_start !== undefined ? ev0.t_start : 0) + (frame - (ev0.start_frame || 0)) / fps;
    };
    var bands = [];
    (findings || []).forEach(function (f) {  // the quality findings touching the event: shaded bands
      var x0 = tf(f.start_frame), x1 = tf(f.end_frame + 1), err = f.severity === "error";
      bands.push({kind: f.kind, severity: f.severity, x0: x0, x1: x1});
      layout.shapes.push({type: "rect", xref: "x", yref: "paper", x0: x0, x1: x1, y0: 0, y1: 1, layer: "below",
                          fillcolor: err ? "rgba(198,40,40,0.16)" : "rgba(245,166,35,0.22)", line: {width: 0}});
      layout.annotations.push({x: (x0 + x1) / 2, y: 0.5, xref: "x", yref: "paper", showarrow: false, textangle: -90,
                               text: "⚠ " + f.kind, font: {size: 10, color: err ? "#c62828" : "#b26a00"}});
    });
    window.CARVE_EVENT = {bands: bands};  // for tests and the console: the bands drawn
    var video = $("#clip");
    var baseShapes = layout.shapes.slice();  // plotly keeps (and mutates) the layout object
    return plotlyReady().then(function () {
      return Plotly.newPlot($("#signals"), traces, layout, {displaylogo: false, responsive: true});
    }).then(function (gd) {
      // the clip's playhead as a moving line over the signals
      var t0 = cur && cur.t_start !== undefined ? cur.t_start : (t.length ? t[0] : 0);
      var last = -1;
      video.addEventListener("timeupdate", function () {
        var x = t0 + video.currentTime;
        if (Math.abs(x - last) < 0.05) return;
        last = x;
        var shapes = baseShapes.concat([{type: "line", xref: "x", yref: "paper", x0: x, x1: x, y0: 0, y1: 1,
                                            line: {color: "#333", width: 1}}]);
        Plotly.relayout(gd, {shapes: shapes});
      });
      $("#signals").setAttribute("data-ready", "1");
    });
  }

  // -- cluster browser ---------------------------------------------------------------------
  function pageCluster() {
    var p = params(), d = p.get("dataset"), c = p.get("c");
    $("#cl-id").textContent = c;
    $("#cl-ds").textContent = d;
    var offset = 0;
    function load() {
      return api(P.cluster(d, c, offset)).then(function (r) {
        if (offset === 0) renderClusterHead(r, d);
        var grid = $("#cl-grid");
        var evs = list(r, "events");
        evs.forEach(function (e) { grid.appendChild(clusterTile(e, d)); });
        offset += evs.length;
        var total = r.total !== undefined ? r.total : (r.size_before !== undefined ? r.size_before : offset);
        $("#cl-count").textContent = "(" + offset + " of " + fmt(total) + ")";
        $("#cl-more").hidden = STATIC || offset >= total || !evs.length;
      }).catch(function (e) { fail("cluster", e); });
    }
    $("#cl-more").addEventListener("click", load);
    listCursor(function () { return Array.prototype.slice.call(document.querySelectorAll("#cl-grid li")); },
               function (li) { li.dispatchEvent(new Event("mouseenter")); });
    return load();
  }
  function pick(r, names) { for (var i = 0; i < names.length; i++) if (r[names[i]] !== undefined) return r[names[i]]; return undefined; }
  function renderClusterHead(r, d) {
    var sizes = $("#cl-sizes");
    var sz = r.balance || r.sizes || {};
    [["events in " + d, r.size],
     ["before balancing", pick(sz, ["before"]) !== undefined ? sz.before : pick(r, ["size_before", "before"])],
     ["after balancing" + (sz.shards_version ? " (shards v" + String(sz.shards_version).padStart(3, "0") + ")" : ""),
      pick(sz, ["after"]) !== undefined ? sz.after : pick(r, ["size_after", "after"])],
     ["near-duplicates", r.duplicates !== undefined && !Array.isArray(r.duplicates) ? r.duplicates : list(r, "near_duplicates").length]]
      .forEach(function (x) { sizes.appendChild(h("div", {}, h("b", {text: fmt(x[1])}), x[0])); });
    var mem = r.members || {};
    var box = $("#cl-members");
    ["dataset", "task", "robot"].forEach(function (k) {
      var v = mem[k] || mem[k + "s"] || r["by_" + k] || r["members_by_" + k];
      if (!v) return;
      var rows = Array.isArray(v) ? v.map(function (x) { return [x.value !== undefined ? x.value : x[k] || x.name, x.count !== undefined ? x.count : x.events]; })
        : Object.keys(v).map(function (kk) { return [kk, v[kk]]; });
      var tb = h("tbody");
      rows.forEach(function (rr) { tb.appendChild(h("tr", {}, h("td", {text: fmt(rr[0])}), h("td", {text: fmt(rr[1])}))); });
      box.appendChild(h("table", {class: "table"}, h("thead", {}, h("tr", {}, h("th", {text: k}), h("th", {text: "events"}))), tb));
    });
    var ul = $("#cl-dups");
    var dups = list(r, "near_duplicates");
    if (!dups.length && Array.isArray(r.duplicates)) dups = r.duplicates;
    var rest = null;
    dups.slice(0, 200).forEach(function (x, i) {
      var a = x.event_id || x.id || x, b = x.dup_of || x.of;
      var li = h("li", {}, h("a", {href: pageUrl("event", {id: a, dataset: d}), text: a}),
        b ? h("span", {}, " ≈ ", h("a", {href: pageUrl("event", {id: b, dataset: d}), text: b})) : null,
        x.caption ? h("span", {class: "muted", text: " · " + x.caption}) : null);
      if (i < 8) { ul.appendChild(li); return; }
      if (!rest) {
        rest = h("ul", {class: "list"});
        ul.appendChild(h("li", {}, h("details", {}, h("summary", {text: (Math.min(dups.length, 200) - 8) + " more"}), rest)));
      }
      rest.appendChild(li);
    });
    if (!dups.length) ul.appendChild(h("li", {class: "muted", text: "none"}));
  }
  function clusterTile(e, d) {
    var id = e.event_id;
    var img = h("img", {class: "media", alt: ""});
    media(P.keyframe(id, 0)).then(function (u) { img.src = u; img.alt = "keyframe of " + id; })
      .catch(function () { /* none */ });
    var li = h("li", {"data-event-id": id},
      h("a", {href: pageUrl("event", {id: id, dataset: d})}, img, h("div", {text: e.caption || id}),
        h("div", {class: "muted", text: (e.task || "") + (e.dup_of ? " · duplicate" : "")})));
    var video = null;
    li.addEventListener("mouseenter", function () {
      if (video) { video.play().catch(function () { /* ignore */ }); return; }
      media(P.clip(id)).then(function (u) {
        video = h("video", {class: "media", muted: true, loop: true, playsinline: true, src: u,
                            "aria-label": "clip of " + id});
        video.muted = true;
        video.addEventListener("error", function () { video.replaceWith(img); });  // not exported: keep the thumbnail
        img.replaceWith(video);
        video.play().catch(function () { /* ignore */ });
      }).catch(function () { /* keep the thumbnail */ });
    });
    li.addEventListener("mouseleave", function () { if (video) video.pause(); });
    return li;
  }

  // -- coverage ----------------------------------------------------------------------------
  function pageCoverage() {
    return datasetOrFirst().then(function (d) {
      CFG.dataset = d;
      $("#cov-ds").textContent = d;
      var p = params();
      return api(P.versions(d)).then(function (vs) {
        var kindSel = $("#cov-kind");
        kindSel.value = p.get("kind") || "clusters";
        function fillVersions() {
          var vv = list(vs, kindSel.value).filter(function (v) { return v.complete !== false; }).map(function (v) { return v.version; });
          ["#cov-from", "#cov-to"].forEach(function (s) { $(s).textContent = ""; });
          fillSelect($("#cov-from"), vv.map(function (v) { return {value: v}; }), null, vnum);
          fillSelect($("#cov-to"), vv.map(function (v) { return {value: v}; }), null, vnum);
          if (vv.length) {
            $("#cov-to").value = String(vv[vv.length - 1]);
            $("#cov-from").value = String(vv.length > 1 ? vv[vv.length - 2] : vv[0]);
          }
        }
        fillVersions();
        if (p.get("from")) $("#cov-from").value = p.get("from");
        if (p.get("to")) $("#cov-to").value = p.get("to");
        $("#cov-form").addEventListener("change", function (ev) {
          if (ev.target === kindSel) fillVersions();
          drawCoverage(d);
        });
        return drawCoverage(d);
      });
    });
  }
  function vnum(v) { return "v" + String(v).padStart(3, "0"); }
  function drawCoverage(d) {
    var q = {from: $("#cov-from").value, to: $("#cov-to").value, kind: $("#cov-kind").value};
    history.replaceState(null, "", pageUrl("coverage", Object.assign({dataset: d}, q)));
    $("#cov-table").setAttribute("data-ready", "0");
    var a = $("#cov-csv");
    a.setAttribute("download", "coverage-" + d + "-" + q.kind + "-" + vnum(q.from) + "-" + vnum(q.to) + ".csv");
    a.removeAttribute("href");
    a.setAttribute("aria-disabled", "true");
    media(P.coverageCsv(d, q)).then(function (u) { a.href = u; a.removeAttribute("aria-disabled"); })
      .catch(function (e) { fail("csv", e); });
    return api(P.coverage(d, q)).then(function (r) {
      var sum = $("#cov-summary");
      sum.textContent = "";
      var rows = list(r, "clusters");
      if (!rows.length) rows = list(r, "deltas");
      var ch = r.changes || {};
      var count = function (st) {
        return ch[st] !== undefined ? ch[st] : rows.filter(function (x) { return x.status === st; }).length;
      };
      [["drift ratio", r.drift_ratio !== undefined ? r.drift_ratio : r.drift],
       ["grew", count("grew")], ["shrank", count("shrank")], ["appeared", count("appeared")],
       ["vanished", count("vanished")], ["under-covered", list(r, "under_covered").length]]
        .forEach(function (x) { sum.appendChild(h("div", {}, h("b", {text: fmt(x[1])}), x[0])); });
      var tb = $("#cov-table tbody");
      tb.textContent = "";
      rows.forEach(function (x) {
        var c = x.cluster !== undefined ? x.cluster : x.cluster_id;
        var from = pick(x, ["from", "before", "size_from", "n_from"]), to = pick(x, ["to", "after", "size_to", "n_to"]);
        var delta = x.delta !== undefined ? x.delta : (to || 0) - (from || 0);
        tb.appendChild(h("tr", {class: x.status || ""},
          h("td", {}, h("a", {href: pageUrl("cluster", {dataset: d, c: c}), text: String(c)})),
          h("td", {text: fmt(from)}), h("td", {text: fmt(to)}),
          h("td", {text: (delta > 0 ? "+" : "") + fmt(delta)}), h("td", {class: "st", text: fmt(x.status)})));
      });
      var ul = $("#cov-under");
      ul.textContent = "";
      var under = list(r, "under_covered");
      under.forEach(function (x) {
        var c = x.cluster !== undefined ? x.cluster : (x.cluster_id !== undefined ? x.cluster_id : x);
        ul.appendChild(h("li", {}, h("a", {href: pageUrl("cluster", {dataset: d, c: c}), text: "cluster " + c}),
          x.size !== undefined || x.count !== undefined ? " — " + fmt(x.size !== undefined ? x.size : x.count) + " events" : "",
          x.example_caption || x.caption ? h("span", {class: "muted", text: " · " + (x.example_caption || x.caption)}) : null,
          x.suggested_episodes ? h("span", {class: "muted", text: " · collect ~" + x.suggested_episodes + " more episodes"}) : null));
      });
      if (!under.length) ul.appendChild(h("li", {class: "muted", text: "none"}));
      listCursor(function () { return Array.prototype.slice.call(document.querySelectorAll("#cov-table tbody tr")); });
      $("#cov-table").setAttribute("data-ready", "1");
    }).catch(function (e) { fail("coverage", e); });
  }

  // -- quality -----------------------------------------------------------------------------
  function pageQuality() {
    return datasetOrFirst().then(function (d) {
      CFG.dataset = d;
      $("#q-ds").textContent = d;
      var a = $("#q-csv");
      a.setAttribute("download", d + "-drop-list.csv");
      media(P.qualityCsv(d)).then(function (u) { a.href = u; a.removeAttribute("aria-disabled"); })
        .catch(function (e) { fail("csv", e); });
      return api(P.quality(d)).then(function (r) {
        var sum = $("#q-summary");
        [["episodes checked", r.episodes_checked], ["with findings", r.episodes_with_findings],
         ["quarantined", r.quarantined], ["in the drop list", (r.drop || {}).episodes],
         ["findings", r.findings], ["mean score", r.mean_score]]
          .forEach(function (x) { sum.appendChild(h("div", {}, h("b", {text: fmt(x[1], 1)}), x[0])); });
        var tb = $("#q-kinds tbody");
        list(r, "by_kind").forEach(function (k) {
          // the map's defect facet filters the events a kind touches (a quarantined episode has none)
          var name = k.kind === "unreadable" ? h("span", {text: k.kind})
            : h("a", {href: pageUrl("map", {dataset: d, defect: k.kind}), text: k.kind});
          tb.appendChild(h("tr", {"data-kind": k.kind}, h("td", {}, name),
            h("td", {}, h("span", {class: "badge " + (k.severity === "error" ? "" : "warning"), text: k.severity})),
            h("td", {class: "score", text: fmt(k.episodes)}), h("td", {class: "score", text: fmt(k.findings)}),
            h("td", {class: "muted", text: k.what || ""})));
        });
        if (!tb.children.length) tb.appendChild(h("tr", {}, h("td", {colspan: 5, class: "muted", text: "no findings"})));
        var wb = $("#q-worst tbody");
        list(r, "worst").forEach(function (e) {
          var src = [e.source_file, e.source_key].filter(function (x) { return x; }).join(" : ");
          var open = e.event_id ? h("a", {href: pageUrl("event", {id: e.event_id, dataset: d}), text: "event"})
            : h("span", {class: "muted", text: e.quarantine_reason ? "quarantined" : "no events"});
          wb.appendChild(h("tr", {"data-episode": e.episode_id},
            h("td", {}, h("b", {text: "#" + fmt(e.episode_index)}), " ", h("span", {class: "muted", text: e.episode_id})),
            h("td", {class: "score", text: fmt(e.score)}),
            h("td", {}, e.kinds.join(", "), e.quarantine_reason ? h("div", {class: "muted", text: e.quarantine_reason}) : null),
            h("td", {}, h("code", {text: src || "–"})),
            h("td", {text: fmt(e.events_gated) + " / " + fmt(e.kept_events) + (e.kept_events ? " (keep flag)" : "")}),
            h("td", {}, open)));
        });
        if (!wb.children.length) wb.appendChild(h("tr", {}, h("td", {colspan: 6, class: "muted", text: "no findings"})));
        listCursor(function () { return Array.prototype.slice.call(document.querySelectorAll("#q-worst tbody tr")); });
        $("#q-kinds").setAttribute("data-ready", "1");
      });
    });
  }

  // -- start -------------------------------------------------------------------------------
  setupNav();
  var run = {index: pageIndex, map: function () { mapKeys(); return pageMap(); }, event: pageEvent,
             cluster: pageCluster, coverage: pageCoverage, quality: pageQuality}[CFG.page];
  if (run) {
    Promise.resolve().then(run).then(function () { document.body.setAttribute("data-loaded", "1"); })
      .catch(function (e) { fail(CFG.page, e); document.body.setAttribute("data-loaded", "error"); });
  }
})();
