/* The review queue: list, before/after chips, attributes, keyboard decisions. */
(function () {
  "use strict";
  var cfg, items = [], pos = -1, current = null, mini = null, outline = null, busy = false;
  function $(id) { return document.getElementById(id); }
  function el(tag, text) { var e = document.createElement(tag); if (text !== undefined && text !== null) e.textContent = String(text); return e; }
  function api(url, opts) {
    opts = opts || {};
    opts.credentials = "same-origin";
    opts.headers = Object.assign({ Accept: "application/json", "X-CSRF-Token": cfg.csrf }, opts.headers || {});
    return fetch(url, opts).then(function (r) {
      if (r.status === 401) { location = "/login?next=" + encodeURIComponent(location.pathname); }
      return r.json().then(function (body) { return { status: r.status, body: body }; });
    });
  }
  function msg(text, bad) { var m = $("review-msg"); m.textContent = text || ""; m.className = "wj-msg " + (bad ? "wj-error" : "wj-ok"); }
  function zh() { return cfg.lang === "zh"; }
  /* a refusal as the server words it for staff (message), else its English detail */
  function said(res) { var b = res.body || {}; return b.message || b.detail || String(res.status); }

  function loadQueue(selectId) {
    var f = $("queue-filters"), q = new URLSearchParams();
    ["class", "state", "street_town", "sort"].forEach(function (k) { var v = f.elements[k].value; if (v || k === "state") q.set(k, v); });
    return api("/api/runs/" + cfg.runId + "/queue?" + q.toString()).then(function (res) {
      if (res.status !== 200) { msg(said(res), true); return; }
      items = res.body; var ol = $("queue"); ol.textContent = "";
      items.forEach(function (it, i) {
        var li = el("li", (cfg.labels.match_class[it.match_class] || "?") + " · " + (it.score === null ? "-" : Number(it.score).toFixed(2)) + " · " + Math.round(it.area_m2) + " m² · " + (it.street_town_name || ""));
        li.setAttribute("data-id", it.id); li.id = "q-" + it.id;
        li.addEventListener("click", function () { show(i); });
        ol.appendChild(li);
      });
      var start = 0;
      if (selectId) { items.forEach(function (it, i) { if (String(it.id) === String(selectId)) start = i; }); }
      if (items.length) show(start); else { current = null; $("detail-title").textContent = zh() ? "队列为空" : "The queue is empty"; }
    });
  }

  function show(i) {
    if (i < 0 || i >= items.length) return;
    pos = i; var it = items[i];
    document.querySelectorAll("#queue li").forEach(function (li) { li.classList.remove("current"); });
    var li = $("q-" + it.id); if (li) { li.classList.add("current"); li.scrollIntoView({ block: "nearest" }); }
    api("/api/detections/" + it.id).then(function (res) {
      if (res.status !== 200) { msg(said(res), true); return; }
      current = res.body;
      $("detail-title").textContent = (zh() ? "图斑 " : "Detection ") + current.seq + " (id " + current.id + ")";
      $("chip-before").src = "/chips/" + current.id + "/before.png";
      $("chip-after").src = "/chips/" + current.id + "/after.png";
      var t = $("detail-attrs"); t.textContent = "";
      [[zh() ? "比对结果" : "Match", cfg.labels.match_class[current.match_class] || current.match_class],
       [zh() ? "核查状态" : "Review state", cfg.labels.detection_state[current.state] || current.state],
       [zh() ? "置信度" : "Score", current.score === null ? null : Number(current.score).toFixed(2)], [zh() ? "面积(m²)" : "Area (m²)", Number(current.area_m2).toFixed(1)],
       [zh() ? "变化类型" : "Change", cfg.labels.change_kind[current.change_kind] || current.change_kind], [zh() ? "街镇" : "街镇", current.street_town_name || current.street_town_code],
       [zh() ? "关联案件" : "Matched case", current.matched_case_number], [zh() ? "版本" : "Version", current.version]].forEach(function (r) {
        var tr = el("tr"); tr.appendChild(el("th", r[0])); tr.appendChild(el("td", r[1] === null || r[1] === undefined ? "" : r[1])); t.appendChild(tr);
      });
      document.body.setAttribute("data-current", String(current.id));
      if (mini) {
        if (outline) mini.removeLayer(outline);
        outline = L.geoJSON(current.geometry, { style: { color: cfg.colours.match_class[current.match_class] || "#f00", weight: 2, fill: false } }).addTo(mini);
        mini.fitBounds(outline.getBounds(), { maxZoom: 20, padding: [40, 40] });
      }
    });
  }

  function decide(action) {
    if (!current || busy) return;
    if (action === "skip") { msg(""); show(pos + 1); return; }
    busy = true;
    var body = { action: action, version: current.version, comment: $("review-comment").value || null };
    api("/api/detections/" + current.id + "/review", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) }).then(function (res) {
      busy = false;
      if (res.status !== 200) { msg(said(res), true); return; }
      var li = $("q-" + current.id); if (li) li.classList.add("done");
      msg((zh() ? "已办理: " : "done: ") + (cfg.labels.detection_state[res.body.to_state] || res.body.to_state) + (res.body.case_created ? (zh() ? " · 已建案件 " : " · case created ") + res.body.case_id : ""));
      $("review-comment").value = "";
      document.body.setAttribute("data-decided", String((Number(document.body.getAttribute("data-decided")) || 0) + 1));
      show(pos + 1);
    }).catch(function (e) { busy = false; msg(String(e), true); });
  }

  function init(c) {
    cfg = c;
    if (window.L && $("mini-map")) {
      mini = L.map("mini-map", { maxZoom: 22, zoomControl: true });
      L.tileLayer("/tiles/" + cfg.afterScene + "/{z}/{x}/{y}.png", { maxZoom: 22, maxNativeZoom: 22 }).addTo(mini);
      mini.setView([31.3, 121.4], 12);
    }
    $("queue-filters").addEventListener("change", function () { loadQueue(); });
    document.querySelectorAll("[data-act]").forEach(function (b) { b.addEventListener("click", function () { decide(b.getAttribute("data-act")); }); });
    document.addEventListener("keydown", function (ev) {
      if (ev.target && (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT" || ev.target.tagName === "TEXTAREA")) return;
      var k = ev.key.toLowerCase();
      var map = { "1": "confirm", y: "confirm", "2": "false_positive", n: "false_positive", "3": "bad_imagery", b: "bad_imagery", s: "skip", arrowright: "skip" };
      if (map[k]) { ev.preventDefault(); decide(map[k]); }
      else if (k === "arrowleft") { ev.preventDefault(); show(pos - 1); }
    });
    loadQueue(location.hash ? location.hash.slice(1) : null);
  }
  window.WJ_REVIEW = { init: init };
})();
