// The expert's pages: verdict keys as in the workspace (1-9 or a s d f g choose the n-th
// verdict, r the note, Enter records, Ctrl+Enter from the note), n for the next escalation,
// c for the differences of A and B. No inline script: our CSP forbids it.
"use strict";
(function () {
  const LETTERS = "asdfg";

  function isTyping(element) {
    return !!(element && element.matches && element.matches("textarea, select, input[type=text], input[type=search]"));
  }

  function decisionForm() {
    const verdict = document.querySelector("#decision-panel input[name=verdict]");
    return verdict ? verdict.form : null;
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.isComposing) return;
    const target = event.target;
    const form = decisionForm();
    if (isTyping(target)) {
      if (event.key === "Escape") {
        target.blur();
        event.preventDefault();
      } else if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && form && form.contains(target)) {
        event.preventDefault();
        form.requestSubmit();
      }
      return;
    }
    if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key === "c") {
      // The site script (js/arbiter.js) owns the diff and its button; it leaves c to this
      // page when a verdict control has the focus.
      if (window.arbiter && window.arbiter.toggleDiff()) event.preventDefault();
      return;
    }
    if (key === "n") {
      const next = document.querySelector("[data-next-escalation]");
      if (next) {
        event.preventDefault();
        next.click();
      }
      return;
    }
    if (!form) return;
    const verdicts = Array.from(form.querySelectorAll("input[name=verdict]"));
    let index = /^[1-9]$/.test(key) ? Number(key) - 1 : LETTERS.indexOf(key);
    if (index >= 0 && index < verdicts.length) {
      verdicts[index].checked = true;
      verdicts[index].focus();
      event.preventDefault();
      return;
    }
    if (key === "r") {
      const note = form.querySelector("textarea[name=note]");
      if (note) {
        event.preventDefault();
        note.focus();
      }
      return;
    }
    if (key === "Enter" && !(target.matches && target.matches("button, a[href], summary"))) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
})();
