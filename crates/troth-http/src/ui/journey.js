// Keeps the journey heat map current without reloading the page: polls the health
// JSON named by #heatmap's data-health-url and rewrites each cell's figures and
// colour in place. The page is complete without this script; it only refreshes.
// Formatting mirrors ui/journey.rs (percent, whole, one_decimal) so the figures
// read the same before and after a refresh.
(function () {
  "use strict";
  var map = document.getElementById("heatmap");
  if (!map || !window.fetch) return;
  var url = map.getAttribute("data-health-url");
  var every = (Number(map.getAttribute("data-refresh-seconds")) || 5) * 1000;
  var warn = Number(map.getAttribute("data-warn"));
  var bad = Number(map.getAttribute("data-bad"));
  var status = document.getElementById("refresh-status");

  function percent(x) {
    return x === null || x === undefined ? "–" : Math.round(x * 100) + " %";
  }
  function whole(x) {
    return x === null || x === undefined ? "–" : String(Math.round(x) || 0);
  }
  function oneDecimal(x) {
    return x === null || x === undefined ? "–" : (Math.round(x * 10) / 10).toFixed(1);
  }

  // The same rule as the server: the worse of the shares of promises broken and of
  // negative answers.
  function level(t) {
    var settled = t.promises.kept + t.promises.broken;
    var shares = [];
    if (settled > 0) shares.push(t.promises.broken / settled);
    if (t.surveys.answers > 0) shares.push(t.surveys.negative_rate);
    if (shares.length === 0) return "h-none";
    var worst = Math.max.apply(null, shares);
    return worst >= bad ? "h-bad" : worst >= warn ? "h-warn" : "h-good";
  }

  function set(cell, field, text) {
    var el = cell.querySelector('[data-f="' + field + '"]');
    if (el && el.textContent !== text) el.textContent = text;
  }

  function showWhen(cell, field, value) {
    var line = cell.querySelector('[data-when="' + field + '"]');
    if (line) line.hidden = value === null || value === undefined;
  }

  var cells = {};
  Array.prototype.forEach.call(map.querySelectorAll("[data-touchpoint]"), function (cell) {
    cells[cell.getAttribute("data-touchpoint")] = cell;
  });

  function update(health) {
    health.stages.forEach(function (stage) {
      stage.touchpoints.forEach(function (t) {
        var cell = cells[t.key];
        if (!cell) return;
        set(cell, "exposure", String(t.exposure));
        set(cell, "kept_rate", percent(t.promises.kept_rate));
        set(cell, "settled", String(t.promises.kept + t.promises.broken));
        set(cell, "answers", String(t.surveys.answers));
        set(cell, "negative_rate", percent(t.surveys.negative_rate));
        set(cell, "nps", whole(t.surveys.nps));
        set(cell, "csat", oneDecimal(t.surveys.csat));
        showWhen(cell, "nps", t.surveys.nps);
        showWhen(cell, "csat", t.surveys.csat);
        ["h-good", "h-warn", "h-bad", "h-none"].forEach(function (c) {
          cell.classList.toggle(c, c === level(t));
        });
      });
    });
    if (status) status.textContent = "Updated " + new Date().toLocaleTimeString() + "; every " + every / 1000 + " s.";
  }

  function poll() {
    // A page nobody is looking at need not be kept current; catch up when shown.
    if (document.hidden) {
      document.addEventListener("visibilitychange", poll, { once: true });
      return;
    }
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(update)
      .catch(function (error) {
        if (status) status.textContent = "Refresh failed (" + error.message + "); retrying.";
      })
      .then(function () {
        setTimeout(poll, every);
      });
  }

  setTimeout(poll, every);
})();
