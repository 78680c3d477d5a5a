// Arbiter's page behaviour. No inline script is allowed by our Content-Security-Policy,
// so everything interactive lives in this file.
"use strict";

(function () {
  // A marker for "this page was not reloaded": it lives as long as the document does.
  window.arbiter = { loadedAt: Date.now() };

  // When each assignment's pair was first shown, by assignment id. Kept across re-renders
  // of the same pair (a validation error) so that the clock does not restart.
  const shownAt = new Map();

  function pairsIn(root) {
    const scope = root && root.querySelectorAll ? root : document;
    const found = Array.from(scope.querySelectorAll("[data-assignment]"));
    if (scope.matches && scope.matches("[data-assignment]")) found.push(scope);
    return found;
  }

  function markShown(root) {
    for (const pair of pairsIn(root)) {
      const id = pair.dataset.assignment;
      if (!shownAt.has(id)) shownAt.set(id, performance.now());
    }
  }

  function secondsSpent(form) {
    const pair = form.closest("[data-assignment]");
    const start = pair ? shownAt.get(pair.dataset.assignment) : undefined;
    return start === undefined ? "" : ((performance.now() - start) / 1000).toFixed(2);
  }

  // Capture phase: runs before htmx reads the form's values on the form's own listener.
  document.addEventListener(
    "submit",
    function (event) {
      const form = event.target;
      if (!(form instanceof HTMLFormElement) || !form.matches("[data-label-form]")) return;
      const field = form.querySelector("[data-seconds-spent]");
      if (field) field.value = secondsSpent(form);
    },
    true
  );

  function labelForm() {
    return document.querySelector("[data-label-form]");
  }

  function isTyping(element) {
    if (!element || !element.matches) return false;
    if (element.isContentEditable) return true;
    return element.matches(
      "textarea, select, input:not([type=radio]):not([type=checkbox]):not([type=submit]):not([type=button]):not([type=hidden])"
    );
  }

  function isActivatable(element) {
    return element && element.matches && element.matches("button, a[href], summary, input[type=submit]");
  }

  function toggle(id) {
    const panel = document.getElementById(id);
    if (panel) panel.open = !panel.open;
  }

  // The inline diff of A and B: its button, or the c key anywhere on the page.
  function toggleDiff() {
    const button = document.querySelector("[data-diff-toggle]");
    const panel = document.getElementById("pair-diff");
    if (!button || !panel) return false;
    panel.hidden = !panel.hidden;
    button.setAttribute("aria-expanded", String(!panel.hidden));
    button.firstChild.textContent = panel.hidden ? "Show differences " : "Hide differences ";
    return true;
  }

  // Every page loads this file, so this is the one click handler of the diff button; page
  // scripts with keys of their own call window.arbiter.toggleDiff.
  document.addEventListener("click", function (event) {
    const button = event.target.closest && event.target.closest("[data-diff-toggle]");
    if (button) toggleDiff();
  });
  window.arbiter.toggleDiff = toggleDiff;

  function submitLabel(form) {
    const next = document.querySelector("[data-next-pair]");
    if (form.hasAttribute("data-closed") || !form.querySelector("button[type=submit]")) {
      if (next) next.click();
      return;
    }
    form.requestSubmit();
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.isComposing) return;
    const pair = document.getElementById("pair");
    if (!pair || !pair.dataset.ready) return;
    const form = labelForm();
    const next = document.querySelector("[data-next-pair]");
    const target = event.target;

    if (isTyping(target)) {
      if (event.key === "Escape") {
        target.blur();
        event.preventDefault();
      } else if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && form && form.contains(target)) {
        event.preventDefault();
        submitLabel(form);
      }
      return;
    }
    if (event.altKey || event.ctrlKey || event.metaKey) return;

    if (event.key === "Escape" && target !== document.body && target.blur) {
      target.blur(); // back to the page, where Enter submits
      return;
    }
    if (event.key === "?") {
      toggle("shortcuts");
      event.preventDefault();
      return;
    }
    if (event.key === "i") {
      toggle("guidelines");
      event.preventDefault();
      return;
    }
    if (event.key === "c" && !event.shiftKey && (!target.form || target.form === form)) {
      if (toggleDiff()) event.preventDefault();
      return;
    }
    if (!form) {
      if (event.key === "Enter" && next && !isActivatable(target)) {
        event.preventDefault();
        next.click();
      }
      return;
    }
    // Inside another form (the tools panel), keys belong to that form.
    if (target.form && target.form !== form) return;

    if (event.shiftKey && /^Digit[1-5]$/.test(event.code)) {
      const level = form.querySelector('input[name=confidence][value="' + event.code.slice(5) + '"]');
      if (level) {
        level.checked = true;
        event.preventDefault();
      }
      return;
    }
    if (event.key === "Enter") {
      if (isActivatable(target)) return; // a focused button or link does its own thing
      event.preventDefault();
      submitLabel(form);
      return;
    }
    const key = event.key.length === 1 ? event.key.toLowerCase() : "";
    if (!key || event.shiftKey) return;
    const choice = form.querySelector(
      'input[name=preference][data-key="' + CSS.escape(key) + '"], input[name=preference][data-key-alt="' + CSS.escape(key) + '"]'
    );
    if (choice) {
      choice.checked = true;
      choice.dispatchEvent(new Event("change", { bubbles: true }));
      event.preventDefault();
      return;
    }
    if (key === "k") {
      const skip = document.querySelector("[data-skip]");
      if (skip) {
        event.preventDefault();
        skip.click();
      }
      return;
    }
    if (key === "r") {
      const rationale = form.querySelector("[data-rationale]");
      if (rationale) {
        event.preventDefault();
        rationale.focus();
      }
    }
  });

  // A failed request leaves the form as it was; say so in the pair's status area.
  function showClientError(message) {
    const status = document.querySelector("#pair .pair-status");
    if (!status) return;
    let box = status.querySelector("[data-client-error]");
    if (!box) {
      box = document.createElement("p");
      box.className = "alert";
      box.setAttribute("role", "alert");
      box.setAttribute("data-client-error", "");
      status.appendChild(box);
    }
    box.textContent = message;
  }

  document.addEventListener("htmx:responseError", function (event) {
    const code = event.detail && event.detail.xhr ? event.detail.xhr.status : "an error";
    if (code === 403 || code === 404) {
      // Not a passing failure: the same request is refused again (the annotator was removed
      // from the campaign, or the session changed in another tab), so "try again" loops.
      showClientError(
        "The server answered " + code + ": this page is no longer yours to use (you may have been " +
          "removed from this campaign, or signed in as someone else). Reload the page."
      );
      return;
    }
    showClientError("The server answered " + code + ". Nothing was lost: your input is still here, so try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    showClientError("Could not reach the server. Check your connection, then try again.");
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    // Focus stays on a button that no longer exists; give it back to the page so that the
    // shortcuts work at once on the new pair.
    if (event.detail && event.detail.target && event.detail.target.id === "pair") {
      if (document.activeElement && document.activeElement !== document.body) {
        document.activeElement.blur();
      }
    }
  });

  // htmx binds a swapped-in fragment's forms a moment after inserting it (when it settles);
  // a key pressed before then would submit natively and reload the page, so the keys wait
  // for this mark.
  function markReady(root) {
    const scope = root && root.querySelectorAll ? root : document;
    const pairs = Array.from(scope.querySelectorAll("#pair"));
    if (scope.id === "pair") pairs.push(scope);
    for (const pair of pairs) pair.dataset.ready = "1";
  }

  // Each pair has its own URL, so that Back returns to the previous pair (where its label can
  // be changed). htmx pushes it with every new pair (HX-Push-Url); a page loaded from the
  // campaign's URL takes its pair's URL here, in a history entry that htmx restores from the
  // server (no cached snapshot: a stale form would post to a pair already judged).
  function adoptPairUrl() {
    const pair = document.querySelector("#pair[data-pair-url]");
    if (!pair || window.location.pathname === pair.dataset.pairUrl) return;
    window.history.replaceState({ htmx: true }, "", pair.dataset.pairUrl);
  }

  function onLoad(root) {
    markShown(root);
    markReady(root);
    if (root === document || root === document.body) adoptPairUrl();
  }

  if (window.htmx) {
    window.htmx.onLoad(onLoad);
  } else {
    document.addEventListener("DOMContentLoaded", function () {
      onLoad(document);
    });
  }
})();
