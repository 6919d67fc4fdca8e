// The tracking page, live: the stream /api/v1/track/{token}/events sends the view
// (`tracking`) and the driver's positions (`position`); without EventSource, or when
// the stream fails for good, the JSON twin is polled. Values are set as text only.
(function () {
  "use strict";
  var root = document.getElementById("track");
  if (!root) return;
  var api = "/api/v1/track/" + encodeURIComponent(root.dataset.token);
  var labels = JSON.parse(root.dataset.labels || "{}");
  var mapBox = document.getElementById("map");
  var NS = "http://www.w3.org/2000/svg";
  var SIZE = 300;

  function clock(t) { return t ? t.slice(0, 10) + " " + t.slice(11, 16) + " UTC" : ""; }
  function text(id, value) { var el = document.getElementById(id); if (el) el.textContent = value; }
  function show(id, yes) { var el = document.getElementById(id); if (el) el.hidden = !yes; }

  function render(view) {
    root.dataset.stage = view.stage || "";
    text("stage", labels[view.stage] || "Waiting for news");
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
        time.textContent = clock(s.at);
        li.appendChild(strong);
        li.appendChild(document.createTextNode(" "));
        li.appendChild(time);
        list.appendChild(li);
      });
    }
    show("window", !!view.window);
    if (view.window) {
      var end = view.window.start.slice(0, 10) === view.window.end.slice(0, 10)
        ? view.window.end.slice(11, 16) + " UTC" : clock(view.window.end);
      text("window-text", clock(view.window.start).replace(" UTC", "") + " – " + end);
    }
    show("eta", !!view.eta);
    text("eta-text", clock(view.eta));
    show("stops", view.stops_before !== null && view.stops_before !== undefined);
    text("stops-text", view.stops_before === null ? "" : String(view.stops_before));
    if (mapBox && view.destination) {
      mapBox.dataset.destLat = view.destination.lat;
      mapBox.dataset.destLon = view.destination.lon;
    }
    if (view.driver) position(view.driver); else if (mapBox) mapBox.hidden = true;
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

  // Draws the map as the server does: Web Mercator pixels, centred between the
  // driver and the destination, tiles only when configured.
  function position(p) {
    if (!mapBox) return;
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
    text("driver-at", "Position at " + clock(p.at));
    mapBox.hidden = false;
  }

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
