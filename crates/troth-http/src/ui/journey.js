// Keeps the journey page's weakest links and heat map current without reloading:
// asks #live's data-live-url for the same part of the page, rendered by the server,
// and swaps in each card or list whose markup changed. The server is the only one
// that formats a figure or judges a colour, so nothing here can disagree with it.
// The page is complete without this script; it only refreshes.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.fetch || !window.DOMParser) return;
  var url = live.getAttribute("data-live-url");
  var every = (Number(live.getAttribute("data-refresh-seconds")) || 5) * 1000;
  var status = document.getElementById("refresh-status");

  // The same time format as the pages, in the retailer's zone: 2026-11-23 12:37:05 CET.
  var zone = live.getAttribute("data-timezone") || "UTC";
  function stamp(date) {
    try {
      var parts = {};
      new Intl.DateTimeFormat("en-GB", {
        timeZone: zone, hourCycle: "h23", timeZoneName: "short",
        year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit"
      }).formatToParts(date).forEach(function (p) { parts[p.type] = p.value; });
      return parts.year + "-" + parts.month + "-" + parts.day + " " + parts.hour + ":" + parts.minute + ":" +
        parts.second + " " + parts.timeZoneName;
    } catch (e) {
      return date.toISOString().slice(0, 19).replace("T", " ") + " UTC";
    }
  }

  function swap(fresh) {
    // Cards one by one, so a card under the pointer or focus is replaced only when it changed.
    Array.prototype.forEach.call(fresh.querySelectorAll("#heatmap [data-touchpoint]"), function (card) {
      var key = card.getAttribute("data-touchpoint");
      var old = live.querySelector('#heatmap [data-touchpoint="' + CSS.escape(key) + '"]');
      if (old && old.outerHTML !== card.outerHTML) old.replaceWith(document.importNode(card, true));
    });
    var links = fresh.getElementById("weakest-links");
    var oldLinks = document.getElementById("weakest-links");
    if (links && oldLinks && links.innerHTML !== oldLinks.innerHTML) {
      oldLinks.replaceWith(document.importNode(links, true));
    }
  }

  function poll() {
    // A page nobody is looking at need not be kept current; catch up when shown.
    if (document.hidden) {
      document.addEventListener("visibilitychange", poll, { once: true });
      return;
    }
    fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        swap(new DOMParser().parseFromString(html, "text/html"));
        if (status) status.textContent = "Updated " + stamp(new Date()) + "; every " + every / 1000 + " s.";
      })
      .catch(function (error) {
        if (status) status.textContent = "Refresh failed (" + error.message + "); retrying.";
      })
      .then(function () {
        setTimeout(poll, every);
      });
  }

  setTimeout(poll, every);
})();
