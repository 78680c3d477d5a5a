// Ranking items in the workspace: digit keys and drag and drop set each response's rank
// select (templates/annotation/_ranking.html); the form posts the selects, so the page also
// works without this file. Loaded only on ranking campaigns.
"use strict";

(function () {
  function list() {
    return document.querySelector("#pair[data-ready] [data-ranking]");
  }

  function cards(root) {
    return Array.from(root.querySelectorAll("[data-rank-card]"));
  }

  function select(card) {
    return card.querySelector("[data-rank-select]");
  }

  function show(card) {
    const rank = select(card).value;
    const number = card.querySelector(".badge").textContent.trim();
    card.dataset.rank = rank;
    card.setAttribute("aria-label", "Response " + number + (rank ? ", rank " + rank : ", not ranked"));
  }

  function setRank(card, rank) {
    select(card).value = rank;
    show(card);
  }

  function focusCard(card) {
    if (card) card.focus();
  }

  // Capture phase: runs before arbiter.js's shortcuts, which skip prevented events (its
  // digits choose an A/B preference, which a ranking item has not).
  document.addEventListener(
    "keydown",
    function (event) {
      const root = list();
      if (!root || event.defaultPrevented || event.isComposing) return;
      if (event.altKey || event.ctrlKey || event.metaKey) return;
      const target = event.target;
      if (target.matches && target.matches("textarea, input:not([type=radio]):not([type=checkbox])")) return;
      if (target.form && target.form.id !== "label-form") return; // the tools panel's forms
      const all = cards(root);
      const focused = target.closest ? target.closest("[data-rank-card]") : null;
      const size = all.length;
      let handled = false;
      if (/^[1-9]$/.test(event.key) && Number(event.key) <= size && !event.shiftKey) {
        const card = focused || all.find(function (c) { return !select(c).value; });
        if (card) {
          setRank(card, event.key);
          if (focused) focusCard(all[all.indexOf(card) + 1] || card);
          handled = true;
        }
      } else if (focused && (event.key === "Backspace" || event.key === "Delete" || event.key === "0")) {
        setRank(focused, "");
        handled = true;
      } else if (event.key === "j" || event.key === "ArrowDown") {
        focusCard(focused ? all[all.indexOf(focused) + 1] : all[0]);
        handled = Boolean(focused) || event.key === "j";
      } else if (event.key === "ArrowUp" && focused) {
        focusCard(all[all.indexOf(focused) - 1]);
        handled = true;
      }
      if (handled) {
        event.preventDefault();
        event.stopPropagation();
      }
    },
    true
  );

  document.addEventListener("change", function (event) {
    const card = event.target.closest && event.target.closest("[data-rank-card]");
    if (card) show(card);
  });

  // Drag a response above or below another: the responses take ranks 1..K in their new
  // order (a strict order; digits make ties).
  let dragged = null;
  document.addEventListener("dragstart", function (event) {
    const card = event.target.closest && event.target.closest("[data-rank-card]");
    if (!card) return;
    dragged = card;
    card.classList.add("dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", card.dataset.position);
  });
  document.addEventListener("dragover", function (event) {
    const card = event.target.closest && event.target.closest("[data-rank-card]");
    if (dragged && card) event.preventDefault();
  });
  document.addEventListener("drop", function (event) {
    const card = event.target.closest && event.target.closest("[data-rank-card]");
    if (!dragged || !card || card === dragged) return;
    event.preventDefault();
    const box = card.getBoundingClientRect();
    const after = event.clientY > box.top + box.height / 2;
    card.parentNode.insertBefore(dragged, after ? card.nextSibling : card);
    cards(card.parentNode).forEach(function (item, index) {
      setRank(item, String(index + 1));
    });
  });
  document.addEventListener("dragend", function () {
    if (dragged) dragged.classList.remove("dragging");
    dragged = null;
  });

  function refresh() {
    const root = document.querySelector("[data-ranking]");
    if (root) cards(root).forEach(show);
  }
  if (window.htmx) {
    window.htmx.onLoad(refresh);
  } else {
    document.addEventListener("DOMContentLoaded", refresh);
  }
})();
