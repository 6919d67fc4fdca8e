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
  var SIZE = 300;
  // The server's clock minus this device's: ages are measured on the server's.
  var skew = (Date.parse(root.dataset.now) || Date.now()) - Date.now();
  var staleAfter = Number(root.dataset.staleAfter || 300) * 1000;
  var wasFinal = root.dataset.final === "true";
  var last = null; // the driver's latest position {lat, lon, at}

  function text(id, value) { var el = document.getElementById(id); if (el) el.textContent = value; }
  function show(id, yes) { var el = document.getElementById(id); if (el) el.hidden = !yes; }

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
      (status.lines || []).forEach(function (line) {
        var p = document.createElement("p");
        p.textContent = line;
        lines.appendChild(p);
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
    text("stops-text", view.stops_before === null || view.stops_before === undefined ? "" : String(view.stops_before));
    if (mapBox && view.destination) {
      mapBox.dataset.destLat = view.destination.lat;
      mapBox.dataset.destLon = view.destination.lon;
    }
    var p = view.last_position;
    if (p) position(p); else if (mapBox) { last = null; mapBox.hidden = true; }
  }

  function pixel(lat, lon, zoom) {
    var scale = 256 * Math.pow(2, zoom);
    var phi = lat * Math.PI / 180;
    return [(lon + 180) / 360 * scale,
      (1 - Math.log(Math.tan(phi) + 1 / Math.cos(phi)) / Math.PI) / 2 * scale];
  }

  function zoomToFit(points) {
    for (var z = 16; z > 3; z--) {
      var px = points.map(function (p) { return pixel(p[0], p[1], z); });
      var xs = px.map(function (p) { return p[0]; }), ys = px.map(function (p) { return p[1]; });
      if (Math.max.apply(null, xs) - Math.min.apply(null, xs) <= SIZE - 60 &&
          Math.max.apply(null, ys) - Math.min.apply(null, ys) <= SIZE - 60) return z;
    }
    return 3;
  }

  function el(name, attrs) {
    var e = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
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
    if (!last || !mapBox) return;
    var ms = Date.now() + skew - Date.parse(last.at);
    var stale = ms > staleAfter;
    var dot = document.getElementById("driver");
    if (dot) dot.setAttribute("class", stale ? "driver stale" : "driver");
    var label = document.getElementById("driver-age");
    if (label) { label.textContent = ago(ms); label.setAttribute("visibility", stale ? "visible" : "hidden"); }
    var caption = document.getElementById("driver-at");
    if (caption) caption.className = stale ? "muted stale" : "muted";
    text("driver-at", stale
      ? "Last known position, " + ago(ms) + ": the driver's phone has not reported since, so this is not where they are now."
      : "Position " + ago(ms));
  }

  // Draws the map as the server does: Web Mercator pixels, centred between the
  // driver and the destination, tiles only when configured.
  function position(p) {
    if (!mapBox) return;
    if (last && Date.parse(p.at) < Date.parse(last.at)) return;
    last = { lat: p.lat, lon: p.lon, at: p.at };
    var svg = mapBox.querySelector("svg");
    var points = [[p.lat, p.lon]];
    var dest = mapBox.dataset.destLat ? [Number(mapBox.dataset.destLat), Number(mapBox.dataset.destLon)] : null;
    if (dest) points.push(dest);
    var zoom = zoomToFit(points);
    var c = points.reduce(function (a, q) { return [a[0] + q[0] / points.length, a[1] + q[1] / points.length]; }, [0, 0]);
    var cp = pixel(c[0], c[1], zoom), ox = cp[0] - SIZE / 2, oy = cp[1] - SIZE / 2;
    svg.textContent = "";
    var tiles = mapBox.dataset.tiles, n = Math.pow(2, zoom);
    if (tiles) {
      for (var ty = Math.floor(oy / 256); ty <= Math.floor((oy + SIZE) / 256); ty++) {
        for (var tx = Math.floor(ox / 256); tx <= Math.floor((ox + SIZE) / 256); tx++) {
          if (ty < 0 || ty >= n) continue;
          var href = tiles.replace("{z}", zoom).replace("{x}", ((tx % n) + n) % n).replace("{y}", ty);
          svg.appendChild(el("image", { href: href, x: tx * 256 - ox, y: ty * 256 - oy, width: 256, height: 256 }));
        }
      }
    }
    if (dest) {
      var d = pixel(dest[0], dest[1], zoom);
      svg.appendChild(el("circle", { cx: d[0] - ox, cy: d[1] - oy, r: 9, "class": "home" }));
    }
    var q = pixel(p.lat, p.lon, zoom);
    svg.appendChild(el("circle", { id: "driver", cx: q[0] - ox, cy: q[1] - oy, r: 8, "class": "driver" }));
    var y = q[1] - oy > 40 ? q[1] - oy - 14 : q[1] - oy + 26;
    svg.appendChild(el("text", { id: "driver-age", x: Math.min(Math.max(q[0] - ox, 40), SIZE - 40), y: y, "class": "age", visibility: "hidden" }));
    mapBox.hidden = false;
    age();
  }

  if (mapBox && mapBox.dataset.at) {
    var dot = document.getElementById("driver");
    last = { at: mapBox.dataset.at, lat: 0, lon: 0 };
    if (dot) age();
  }
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
