// The tracking page, live: the stream /api/v1/track/{token}/events sends the view
// (`tracking`) and the driver's positions (`position`); without EventSource, or when
// the stream fails for good, the JSON twin is polled. Values are set as text only.
// The server chooses every word and formats every time (in the customer's zone);
// this script only puts them in place and keeps the driver's age current.
(function () {
  "use strict";
  var root = document.getElementById("track");
  if (!root) return;
  var api = "/api/v1/track/" + encodeURIComponent(root.dataset.token);
  var labels = JSON.parse(root.dataset.labels || "{}");
  var mapBox = document.getElementById("map");
  var NS = "http://www.w3.org/2000/svg";
  // The server's clock minus this device's: ages are measured on the server's.
  var skew = (Date.parse(root.dataset.now) || Date.now()) - Date.now();
  var staleAfter = Number(root.dataset.staleAfter || 300) * 1000;
  var wasFinal = root.dataset.final === "true";
  var last = null; // the driver's latest position {lat, lon, at}

  function text(id, value) { var el = document.getElementById(id); if (el) el.textContent = value; }
  function show(id, yes) { var el = document.getElementById(id); if (el) el.hidden = !yes; }

  // A status line as a paragraph, each case reference in it kept on one line
  // (the customer quotes it as one thing), as the server renders it.
  function withReferences(line, refs) {
    var p = document.createElement("p");
    var parts = [line];
    refs.forEach(function (r) {
      var next = [];
      parts.forEach(function (part) {
        if (typeof part !== "string") { next.push(part); return; }
        var pieces = part.split(r);
        pieces.forEach(function (piece, i) {
          if (i > 0) {
            var before = pieces[i - 1], after = piece;
            var alone = (before === "" || /\s$/.test(before)) && (after === "" || /^[\s.,;:!?)]/.test(after));
            if (alone) {
              var strong = document.createElement("strong");
              strong.className = "ref";
              strong.textContent = r;
              next.push(strong);
            } else {
              next.push(r);
            }
          }
          next.push(piece);
        });
      });
      parts = next;
    });
    parts.forEach(function (part) {
      p.appendChild(typeof part === "string" ? document.createTextNode(part) : part);
    });
    return p;
  }

  function render(view) {
    var status = view.status || {};
    // A delivery that has just finished changes the whole page (proof, no forms).
    if (!wasFinal && ["delivered", "lost", "returned"].indexOf(status.state) >= 0) {
      location.reload();
      return;
    }
    root.dataset.stage = view.stage || "";
    root.dataset.state = status.state || "";
    root.dataset.tone = status.tone || "";
    text("stage", status.headline || labels[view.stage] || "Waiting for news");
    if (status.headline) {
      document.title = status.headline + document.title.slice(document.title.indexOf(" · "));
    }
    var lines = document.getElementById("status-lines");
    if (lines) {
      lines.textContent = "";
      var refs = (view.cases || []).concat(view.lost_case ? [view.lost_case] : [])
        .map(function (c) { return c.reference; })
        .filter(function (r) { return r; });
      (status.lines || []).forEach(function (line) {
        lines.appendChild(withReferences(line, refs));
      });
    }
    document.querySelectorAll("#actions a").forEach(function (a) {
      a.hidden = (status.actions || []).indexOf(a.dataset.action) < 0 || !document.getElementById(a.getAttribute("href").slice(1));
    });
    var list = document.getElementById("stages");
    if (list) {
      list.textContent = "";
      view.stages.forEach(function (s) {
        var li = document.createElement("li");
        li.dataset.stage = s.stage;
        var strong = document.createElement("strong");
        strong.textContent = labels[s.stage] || s.stage;
        var time = document.createElement("time");
        time.dateTime = s.at;
        time.textContent = s.local;
        li.appendChild(strong);
        li.appendChild(document.createTextNode(" "));
        li.appendChild(time);
        list.appendChild(li);
      });
    }
    show("window", !!view.window);
    text("window-label", view.late && view.late.because === "window_moved" ? "Your new window" : "Your window");
    text("window-text", view.window ? view.window.local : "");
    // While late, the status lines give the new estimate with the apology.
    show("eta", !!view.eta && status.state !== "late");
    var eta = document.getElementById("eta-text");
    if (eta) { eta.dateTime = view.eta || ""; eta.textContent = view.eta_local || ""; }
    show("stops", view.stops_before !== null && view.stops_before !== undefined);
    text("stops-text", view.stops_before === null || view.stops_before === undefined ? "" : stopsText(view.stops_before));
    driverFrom(view);
  }

  // ---- The map. The server drew it (map.rs); this redraws it as positions come,
  // with the same Web-Mercator geometry as geo.rs and the sizes the server sent.
  function numbers(text) { return (text || "").split(" ").filter(Boolean).map(Number); }
  var TILE = 256;
  var frame = mapBox ? numbers(mapBox.dataset.frame) : [360, 300, 36, 60]; // width, height, padding, top
  var zooms = mapBox ? numbers(mapBox.dataset.zooms) : [3, 16, 15];    // min, max, one point
  // The room points are fitted into, as geo.rs's Frame::room.
  var W = frame[0], H = frame[1], PAD = frame[2], TOP = frame[3];
  var ROOM_W = W - 2 * PAD, ROOM_H = H - TOP - PAD;
  var trailMs = mapBox ? Number(mapBox.dataset.trailMs || 600000) : 600000;
  var stepM = mapBox ? Number(mapBox.dataset.stepM || 30) : 30;
  var map = {
    view: null, // {zoom, left, top}
    dest: null, // [lat, lon]
    trail: [],  // [[lat, lon, ms], ...] oldest first, the driver's position last
    tiles: mapBox ? mapBox.dataset.tiles : null
  };
  if (mapBox) {
    var v = numbers(mapBox.dataset.view);
    if (v.length === 3) map.view = { zoom: v[0], left: v[1], top: v[2] };
    if (mapBox.dataset.destLat) map.dest = [Number(mapBox.dataset.destLat), Number(mapBox.dataset.destLon)];
    try { map.trail = JSON.parse(mapBox.dataset.trail || "[]"); } catch (e) { map.trail = []; }
  }

  function world(p, zoom) {
    var size = TILE * Math.pow(2, zoom);
    var phi = Math.max(-85.05112878, Math.min(85.05112878, p[0])) * Math.PI / 180;
    return [(p[1] + 180) / 360 * size, (1 - Math.log(Math.tan(phi) + 1 / Math.cos(phi)) / Math.PI) / 2 * size];
  }

  function place(view, p) { var w = world(p, view.zoom); return [w[0] - view.left, w[1] - view.top]; }

  function fit(points) {
    if (!points.length) return null;
    var one = points.every(function (p) { return p[0] === points[0][0] && p[1] === points[0][1]; });
    var zoom = zooms[2];
    if (!one) {
      for (zoom = zooms[1]; zoom > zooms[0]; zoom--) {
        var b = box(points, zoom);
        if (b[2] - b[0] <= ROOM_W && b[3] - b[1] <= ROOM_H) break;
      }
    }
    var c = box(points, zoom);
    return { zoom: zoom, left: (c[0] + c[2]) / 2 - (PAD + ROOM_W / 2), top: (c[1] + c[3]) / 2 - (TOP + ROOM_H / 2) };
  }

  function box(points, zoom) {
    var b = [Infinity, Infinity, -Infinity, -Infinity];
    points.forEach(function (p) {
      var w = world(p, zoom);
      b = [Math.min(b[0], w[0]), Math.min(b[1], w[1]), Math.max(b[2], w[0]), Math.max(b[3], w[1])];
    });
    return b;
  }

  // Every point inside the margins: the map may stay where it is.
  function holds(view, points) {
    return points.every(function (p) {
      var q = place(view, p);
      return q[0] >= PAD && q[0] <= W - PAD && q[1] >= TOP && q[1] <= H - PAD;
    });
  }

  function distance(a, b) {
    var r = Math.PI / 180, dphi = (b[0] - a[0]) * r, dl = (b[1] - a[1]) * r;
    var h = Math.pow(Math.sin(dphi / 2), 2) + Math.cos(a[0] * r) * Math.cos(b[0] * r) * Math.pow(Math.sin(dl / 2), 2);
    return 2 * 6371000 * Math.asin(Math.sqrt(h));
  }

  // As geo.rs's thin: no cluster where the van waited; the driver's point always kept.
  function thin(points) {
    var kept = [];
    points.forEach(function (p, i) {
      if (kept.length && distance(kept[kept.length - 1], p) < stepM) {
        if (i === points.length - 1) kept[kept.length - 1] = p;
      } else kept.push(p);
    });
    return kept;
  }

  function scaleBar(view) {
    var c = [view.left + W / 2, view.top + H / 2], size = TILE * Math.pow(2, view.zoom);
    var lat = Math.atan(Math.sinh(Math.PI * (1 - 2 * c[1] / size)));
    var perUnit = 2 * Math.PI * 6378137 * Math.cos(lat) / size;
    var most = Math.max(1, perUnit * 90), power = Math.pow(10, Math.floor(Math.log10(most)));
    var metres = [5, 2, 1].map(function (m) { return m * power; }).filter(function (m) { return m <= most; })[0] || power;
    return { length: metres / perUnit, label: metres >= 1000 ? metres / 1000 + " km" : metres + " m" };
  }

  function el(name, attrs) {
    var e = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }

  function fixed(n) { return n.toFixed(1); }

  // The view changed: the ground's grid, the tiles and the scale bar follow it.
  function drawGround(view) {
    var bar = scaleBar(view), d = "";
    if (bar.length >= 8) {
      for (var x = bar.length - ((view.left % bar.length) + bar.length) % bar.length; x < W; x += bar.length) d += "M" + fixed(x) + " 0V" + H;
      for (var y = bar.length - ((view.top % bar.length) + bar.length) % bar.length; y < H; y += bar.length) d += "M0 " + fixed(y) + "H" + W;
    }
    var grid = document.getElementById("map-grid");
    if (grid) grid.setAttribute("d", d);
    var scale = document.getElementById("map-scale");
    if (scale) {
      scale.textContent = "";
      scale.appendChild(el("path", { d: "M0 -6V0H" + fixed(bar.length) + "V-6" }));
      var label = el("text", { x: 0, y: -10 });
      label.textContent = bar.label;
      scale.appendChild(label);
    }
    var layer = document.getElementById("map-tiles");
    if (!layer || !map.tiles) return;
    layer.textContent = "";
    var n = Math.pow(2, view.zoom);
    for (var ty = Math.floor(view.top / TILE); ty <= Math.ceil((view.top + H) / TILE) - 1; ty++) {
      if (ty < 0 || ty >= n) continue;
      for (var tx = Math.floor(view.left / TILE); tx <= Math.ceil((view.left + W) / TILE) - 1; tx++) {
        var img = document.createElement("img");
        img.alt = "";
        img.referrerPolicy = "strict-origin";
        img.decoding = "async";
        img.draggable = false;
        img.style.left = (tx * TILE - view.left) / W * 100 + "%";
        img.style.top = (ty * TILE - view.top) / H * 100 + "%";
        img.style.width = TILE / W * 100 + "%";
        img.style.height = TILE / H * 100 + "%";
        img.src = map.tiles.replace("{z}", view.zoom).replace("{x}", ((tx % n) + n) % n).replace("{y}", ty);
        layer.appendChild(img);
      }
    }
    watchTiles();
  }

  // Tiles that cannot load (no network, a server down) are hidden, so the plain
  // ground shows through; the attribution goes when no tile is shown.
  function watchTiles() {
    var layer = document.getElementById("map-tiles");
    var credit = document.getElementById("map-attribution");
    if (!layer) return;
    var imgs = Array.prototype.slice.call(layer.querySelectorAll("img"));
    function update() {
      var shown = imgs.some(function (i) { return !i.classList.contains("failed") && (!i.complete || i.naturalWidth > 0); });
      if (credit) credit.hidden = !shown;
    }
    imgs.forEach(function (img) {
      if (img.complete && img.naturalWidth === 0 && img.getAttribute("src")) img.classList.add("failed");
      img.addEventListener("error", function () { img.classList.add("failed"); update(); });
      img.addEventListener("load", update);
    });
    update();
  }

  function draw() {
    if (!mapBox) return;
    var points = map.trail.map(function (p) { return [p[0], p[1]]; });
    if (last) points.push([last.lat, last.lon]);
    if (map.dest) points.push(map.dest);
    if (!points.length) { mapBox.hidden = true; return; }
    mapBox.hidden = false;
    var fitted = fit(points), view = map.view;
    // The map keeps still while everything stays in view at the same zoom.
    if (!view || view.zoom !== fitted.zoom || !holds(view, points)) {
      view = map.view = fitted;
      drawGround(view);
    }
    var marks = document.getElementById("map-marks");
    if (!marks) return;
    marks.textContent = "";
    var stale = last && Date.now() + skew - Date.parse(last.at) > staleAfter;
    if (map.trail.length >= 2) {
      marks.appendChild(el("polyline", {
        id: "trail", "class": stale ? "trail stale" : "trail",
        points: map.trail.map(function (p) { var q = place(view, p); return fixed(q[0]) + "," + fixed(q[1]); }).join(" ")
      }));
    }
    if (map.dest) {
      var d = place(view, map.dest);
      var home = el("g", { id: "home", "class": "home", transform: "translate(" + fixed(d[0]) + " " + fixed(d[1]) + ")" });
      home.appendChild(el("path", { "class": "pin", d: "M0 0L-8.7 -12A10 10 0 1 1 8.7 -12Z" }));
      home.appendChild(el("path", { "class": "house", d: "M-5 -15.5L0 -20.5L5 -15.5V-11.5H-5Z" }));
      marks.appendChild(home);
    }
    if (last) {
      var q = place(view, [last.lat, last.lon]);
      marks.appendChild(el("circle", { id: "driver", cx: fixed(q[0]), cy: fixed(q[1]), r: 9, "class": "driver" }));
      marks.appendChild(el("text", {
        id: "driver-age", "class": "age", visibility: "hidden",
        x: fixed(Math.min(Math.max(q[0], 44), W - 44)), y: fixed(q[1] > 40 ? q[1] - 16 : q[1] + 28)
      }));
    }
    age();
  }

  // "just now", "4 min ago", "2 h 5 min ago", as the server words it.
  function ago(ms) {
    var minutes = Math.floor(Math.max(0, ms) / 60000);
    if (minutes < 1) return "just now";
    if (minutes < 60) return minutes + " min ago";
    return Math.floor(minutes / 60) + " h" + (minutes % 60 ? " " + (minutes % 60) + " min" : "") + " ago";
  }

  // The driver's age, and whether the position is too old to be where they are.
  function age() {
    if (!mapBox) return;
    var caption = document.getElementById("driver-at");
    if (!last) {
      if (caption) caption.className = "muted";
      text("driver-at", "The driver appears here once their phone reports where they are.");
      return;
    }
    var ms = Date.now() + skew - Date.parse(last.at);
    var stale = ms > staleAfter;
    var dot = document.getElementById("driver");
    if (dot) dot.setAttribute("class", stale ? "driver stale" : "driver");
    var trail = document.getElementById("trail");
    if (trail) trail.setAttribute("class", stale ? "trail stale" : "trail");
    var label = document.getElementById("driver-age");
    if (label) { label.textContent = ago(ms); label.setAttribute("visibility", stale ? "visible" : "hidden"); }
    if (caption) caption.className = stale ? "muted stale" : "muted";
    text("driver-at", stale
      ? "Last known position, " + ago(ms) + ": the driver's phone has not reported since, so this is not where they are now."
      : "Position " + ago(ms));
  }

  // "3 stops before yours", as map.rs words it.
  function stopsText(n) { return n === 0 ? "Your stop is next" : n === 1 ? "1 stop before yours" : n + " stops before yours"; }

  function driverFrom(view) {
    if (!mapBox) return;
    map.dest = view.destination ? [view.destination.lat, view.destination.lon] : null;
    var known = view.stops_before !== null && view.stops_before !== undefined;
    show("map-stops", known);
    text("map-stops", known ? stopsText(view.stops_before) : "");
    var p = view.last_position;
    if (p) position(p);
    else { last = null; map.trail = []; draw(); }
  }

  // A newer position: the driver moves, the trail grows (its last minutes only).
  function position(p) {
    if (!mapBox) return;
    var at = Date.parse(p.at);
    if (last && at < Date.parse(last.at)) return;
    if (!last || at > Date.parse(last.at)) {
      map.trail.push([p.lat, p.lon, at]);
      map.trail = thin(map.trail.filter(function (q) { return q[2] >= at - trailMs; }));
    }
    last = { lat: p.lat, lon: p.lon, at: p.at };
    draw();
  }

  if (mapBox && mapBox.dataset.at) {
    last = { at: mapBox.dataset.at, lat: Number(mapBox.dataset.lat), lon: Number(mapBox.dataset.lon) };
  }
  age();
  watchTiles();
  setInterval(age, 15000);

  var polling = null;
  function poll() {
    if (polling) return;
    var once = function () {
      if (document.hidden) return;
      fetch(api, { cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (v) { if (v) render(v); })
        .catch(function () {});
    };
    polling = setInterval(once, 10000);
    once();
  }

  if (!window.EventSource) return poll();
  var stream = new EventSource(api + "/events");
  stream.addEventListener("tracking", function (e) { render(JSON.parse(e.data)); });
  stream.addEventListener("position", function (e) { position(JSON.parse(e.data)); });
  // EventSource reconnects by itself; only a stream closed for good falls back.
  stream.onerror = function () { if (stream.readyState === EventSource.CLOSED) poll(); };
})();
