/* The map page: bounding-box layers, legend, layer control, search. No innerHTML with data. */
(function () {
  "use strict";
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function debounce(fn, ms) {
    var t = null;
    return function () { var a = arguments; clearTimeout(t); t = setTimeout(function () { fn.apply(null, a); }, ms); };
  }
  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (r.status === 401) { window.location = "/login?next=" + encodeURIComponent(location.pathname + location.search); }
      if (!r.ok) {
        /* the server's sentence for staff (message), else the status */
        return r.json().catch(function () { return {}; }).then(function (b) {
          throw new Error(b.message || b.detail || (url + ": " + r.status));
        });
      }
      return r.json();
    });
  }
  function popupTable(rows) {
    var t = el("table", { "class": "wj-kv" });
    rows.forEach(function (r) {
      var tr = el("tr"); tr.appendChild(el("th", {}, r[0])); var td = el("td");
      if (r[2]) { var a = el("a", { href: r[2] }, r[1]); td.appendChild(a); } else { td.textContent = r[1] === null || r[1] === undefined ? "" : String(r[1]); }
      tr.appendChild(td); t.appendChild(tr);
    });
    return t;
  }

  function mapPage(cfg) {
    var zh = cfg.lang === "zh";
    var L_ = cfg.labels, C = cfg.colours;
    var maps = cfg.maps.map(function (name) { return window[name]; });
    var colourBy = "match_class";
    var status = { detections: 0, cases: 0, truncated: false, ms: 0 };
    window.WJ_STATUS = status;

    function detStyle(f) {
      var p = f.properties;
      var col = colourBy === "match_class" ? (C.match_class[p.match_class] || "#ff7f00") : (C.detection_state[p.state] || "#ff7f00");
      var rejected = p.state === "false_positive" || p.state === "bad_imagery";
      return { color: col, weight: rejected ? 1 : 2, dashArray: rejected ? "4 4" : null, fillColor: col, fillOpacity: p.state === "confirmed" ? 0.35 : 0.12 };
    }
    function caseStyle(f) {
      var col = C.case_state[f.properties.state] || "#666";
      return { color: col, weight: 1.5, fillColor: col, fillOpacity: 0.25 };
    }
    function detPopup(f, layer) {
      var box = el("div", {}, zh ? "读取中…" : "loading…");
      getJSON("/api/detections/" + f.id).then(function (d) {
        box.textContent = "";
        box.appendChild(el("b", {}, (zh ? "图斑 " : "Detection ") + d.seq));
        box.appendChild(popupTable([
          [zh ? "比对结果" : "Match", L_.match_class[d.match_class] || d.match_class],
          [zh ? "核查状态" : "Review", L_.detection_state[d.state] || d.state],
          [zh ? "置信度" : "Score", d.score === null ? null : Number(d.score).toFixed(2)], [zh ? "面积(m²)" : "Area (m²)", Number(d.area_m2).toFixed(1)],
          [zh ? "街镇" : "街镇", d.street_town_name || d.street_town_code],
          [zh ? "关联案件" : "Case", d.matched_case_number, d.matched_case_id ? "/cases/" + d.matched_case_id : null],
        ]));
        box.appendChild(el("a", { href: "/runs/" + cfg.runId + "/review#" + f.id }, zh ? "在核查队列中打开" : "Open in the review queue"));
        layer.getPopup() && layer.getPopup().update();
      });
      return box;
    }
    function casePopup(f) {
      var p = f.properties, box = el("div");
      box.appendChild(popupTable([
        [zh ? "案件编号" : "Case", p.case_number, "/cases/" + f.id],
        [zh ? "状态" : "State", L_.case_state[p.state] || p.state],
        [zh ? "地址" : "Address", p.address], [zh ? "面积(m²)" : "Area (m²)", p.area_m2],
      ]));
      return box;
    }

    var perMap = maps.map(function (map) {
      var renderer = L.canvas({ padding: 0.2 });
      var det = L.geoJSON(null, { style: detStyle, renderer: renderer, onEachFeature: function (f, layer) { f._layer = layer; layer.bindPopup(function () { return detPopup(f, layer); }); } });
      var cases = L.geoJSON(null, { style: caseStyle, renderer: renderer, onEachFeature: function (f, layer) { f._layer = layer; layer.bindPopup(function () { return casePopup(f); }); } });
      det._wj = {}; cases._wj = {};
      var units = L.geoJSON(null, {
        style: function (f) { return { color: "#333", weight: 2, fill: true, fillOpacity: 0.08, fillColor: C.warning[f.properties.warning] || "#999", interactive: false }; },
      });
      var villages = L.geoJSON(null, {
        style: function (f) { return { color: "#555", weight: 1, dashArray: "3 3", fill: true, fillOpacity: 0.06, fillColor: C.warning[f.properties.warning] || "#999", interactive: false }; },
      });
      units.addTo(map); cases.addTo(map); det.addTo(map);
      var base = {}, over = {};
      over[zh ? "街镇 (颜色预警)" : "街镇 (colour warning)"] = units;
      over[zh ? "居村 (颜色预警, 放大后显示)" : "居村 (colour warning, when zoomed in)"] = villages;
      over[zh ? "违建点位" : "Inventory cases"] = cases;
      over[zh ? "变化图斑" : "Detections"] = det;
      map.eachLayer(function (layer) {
        if (layer instanceof L.TileLayer && layer.options && layer.options.attribution !== undefined) {
          var name = layer.options.attribution || "tiles";
          (layer.options.attribution.indexOf("天地图") >= 0 || name === "Tianditu" ? base : over)[name] = layer;
        }
      });
      L.control.layers(base, over, { collapsed: false, position: "topright" }).addTo(map);
      return { map: map, det: det, cases: cases, units: units, villages: villages };
    });

    // Replace a layer's features by a new answer, keeping those that did not change (a pan
    // re-draws only what came into view).
    function update(group, fc) {
      var keep = {}, known = group._wj;
      fc.features.forEach(function (f) {
        var key = f.id + ":" + f.properties.version + ":" + f.properties.state;
        keep[key] = true;
        if (!known[key]) { group.addData(f); known[key] = f._layer; }
      });
      Object.keys(known).forEach(function (key) {
        if (!keep[key]) { group.removeLayer(known[key]); delete known[key]; }
      });
    }

    function bboxOf(map) {
      var b = map.getBounds();
      return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map(function (v) { return v.toFixed(6); }).join(",");
    }
    var seq = 0;
    function refresh() {
      var mine = ++seq, map = maps[0], bbox = bboxOf(map), t0 = performance.now();
      Promise.all([
        getJSON("/api/runs/" + cfg.runId + "/detections?bbox=" + bbox),
        getJSON("/api/cases?bbox=" + bbox),
      ]).then(function (res) {
        if (mine !== seq) return;
        var t1 = performance.now();
        perMap.forEach(function (m) { update(m.det, res[0]); update(m.cases, res[1]); });
        status.detections = res[0].features.length; status.cases = res[1].features.length;
        status.truncated = res[0].truncated || res[1].truncated;
        requestAnimationFrame(function () {
          var t2 = performance.now();
          status.ms = t2 - t0; status.fetchMs = t1 - t0; status.drawMs = t2 - t1; status.done = mine;
          statusBox.textContent = (zh ? "图斑 " : "detections ") + status.detections + " · " + (zh ? "点位 " : "cases ") + status.cases +
            (status.truncated ? (zh ? " (过多, 已截断: 请放大)" : " (capped: zoom in)") : "");
          document.body.setAttribute("data-loaded", String(mine));
        });
      }).catch(function (e) { statusBox.textContent = e && e.message ? e.message : String(e); });
    }
    maps[0].on("moveend", debounce(refresh, 150));
    function refreshVillages() {
      var on = perMap.some(function (m) { return m.map.hasLayer(m.villages); });
      if (!on || maps[0].getZoom() < 13) { perMap.forEach(function (m) { m.villages.clearLayers(); }); return; }
      getJSON("/api/units?level=village&bbox=" + bboxOf(maps[0])).then(function (gj) {
        perMap.forEach(function (m) { m.villages.clearLayers(); m.villages.addData(gj); m.villages.bringToBack(); });
      });
    }
    maps[0].on("moveend", debounce(refreshVillages, 300));
    perMap.forEach(function (m) { m.map.on("overlayadd", function (e) { if (e.layer === m.villages) refreshVillages(); }); });
    getJSON("/api/units").then(function (gj) { perMap.forEach(function (m) { m.units.addData(gj); m.units.bringToBack(); }); });

    // legend with a colour-by switch
    var Legend = L.Control.extend({
      options: { position: "bottomright" },
      onAdd: function () {
        var box = el("div", { "class": "wj-legend", id: "legend" });
        var sel = el("select", { id: "colour-by" });
        [["match_class", zh ? "按比对结果着色" : "colour by match class"], ["detection_state", zh ? "按核查状态着色" : "colour by review state"]].forEach(function (o) {
          var opt = el("option", { value: o[0] }, o[1]); sel.appendChild(opt);
        });
        var list = el("div");
        function fill() {
          list.textContent = "";
          list.appendChild(el("b", {}, zh ? "变化图斑" : "Detections"));
          Object.keys(C[colourBy]).forEach(function (k) {
            var row = el("div"); var i = el("i"); i.style.background = C[colourBy][k]; row.appendChild(i);
            row.appendChild(document.createTextNode(L_[colourBy][k] || k)); list.appendChild(row);
          });
          list.appendChild(el("b", {}, zh ? "违建点位" : "Cases"));
          Object.keys(C.case_state).forEach(function (k) {
            var row = el("div"); var i = el("i"); i.style.background = C.case_state[k]; row.appendChild(i);
            row.appendChild(document.createTextNode(L_.case_state[k] || k)); list.appendChild(row);
          });
          list.appendChild(el("b", {}, zh ? "街镇颜色预警" : "街镇 warning"));
          Object.keys(C.warning).forEach(function (k) {
            var row = el("div"); var i = el("i"); i.style.background = C.warning[k]; row.appendChild(i);
            row.appendChild(document.createTextNode(L_.warning[k] || k)); list.appendChild(row);
          });
        }
        sel.addEventListener("change", function () { colourBy = sel.value; perMap.forEach(function (m) { m.det.setStyle(detStyle); }); fill(); });
        L.DomEvent.disableClickPropagation(box);
        box.appendChild(sel); box.appendChild(list); fill();
        return box;
      },
    });
    new Legend().addTo(maps[maps.length - 1]);

    var Search = L.Control.extend({
      options: { position: "topleft" },
      onAdd: function () {
        var box = el("div", { "class": "wj-search" });
        var input = el("input", { id: "search", type: "search", placeholder: zh ? "搜索案件编号或地址" : "case number or address" });
        var list = el("ul", { id: "search-results" });
        input.addEventListener("keydown", function (ev) {
          if (ev.key !== "Enter") return;
          getJSON("/api/search?q=" + encodeURIComponent(input.value)).then(function (rows) {
            list.textContent = "";
            if (!rows.length) list.appendChild(el("li", {}, zh ? "未找到" : "nothing found"));
            rows.forEach(function (r) {
              var li = el("li", {}, r.case_number + " " + (r.address || ""));
              li.addEventListener("click", function () { maps[0].setView([r.lat, r.lon], 19); });
              list.appendChild(li);
            });
            if (rows.length === 1) maps[0].setView([rows[0].lat, rows[0].lon], 19);
          });
        });
        L.DomEvent.disableClickPropagation(box);
        box.appendChild(input); box.appendChild(list);
        return box;
      },
    });
    new Search().addTo(maps[0]);
    var statusBox = el("div", { "class": "wj-status", id: "map-status" });
    var Status = L.Control.extend({ options: { position: "bottomleft" }, onAdd: function () { return statusBox; } });
    new Status().addTo(maps[0]);
    refresh();
  }
  window.WJ = { mapPage: mapPage, el: el, getJSON: getJSON, popupTable: popupTable };
})();
