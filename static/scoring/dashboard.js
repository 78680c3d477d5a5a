// Admin dashboard: panels poll every few seconds (hx-trigger="every 5s" on [data-poll]).
// A hidden tab skips its polls, and catches up once it is shown again.
"use strict";
(function () {
  document.addEventListener("htmx:beforeRequest", function (event) {
    var source = event.detail && event.detail.elt;
    if (document.hidden && source && source.hasAttribute("data-poll")) {
      event.preventDefault();
    }
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      document.body.dispatchEvent(new CustomEvent("dashboard-refresh", { bubbles: true }));
    }
  });
})();
