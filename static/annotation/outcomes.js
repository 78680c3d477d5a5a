// The workspace's richer judgments: per-aspect ratings and the rewrite box. The outcome
// choices ("both bad", "both good") are radios of the preference group, so static/js/arbiter.js
// already answers their keys (data-key).
"use strict";

(function () {
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

  function isAspectRadio(element) {
    return Boolean(element && element.matches && element.matches("[data-aspects] input[type=radio]"));
  }

  function focusFirstAspect(form) {
    const group = form.querySelector("[data-aspects] .aspect-scale");
    if (!group) return false;
    const target = group.querySelector("input:checked") || group.querySelector("input");
    if (!target) return false;
    target.focus();
    return true;
  }

  function openRewrite(form, focus) {
    const panel = form.querySelector("[data-rewrite]");
    if (!panel) return false;
    panel.open = true;
    if (focus) {
      // First the response to start from (Space or the arrow keys pick it and copy its text),
      // then, once one is picked, the text itself.
      const base = panel.querySelector("[data-rewrite-base]:checked");
      const target = base
        ? panel.querySelector("[data-rewrite-text]")
        : panel.querySelector("[data-rewrite-base]");
      if (target) target.focus();
    }
    return true;
  }

  // Capture phase on window: runs before arbiter.js's document listener, which then sees the
  // key as handled (defaultPrevented) and leaves it alone.
  window.addEventListener(
    "keydown",
    function (event) {
      if (event.defaultPrevented || event.isComposing) return;
      if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
      const form = labelForm();
      const target = event.target;
      if (!form || isTyping(target)) return;
      if (target && target.form && target.form !== form) return;
      // In an aspect's radio group, a digit picks that rating (not a preference).
      if (isAspectRadio(target) && /^[0-9]$/.test(event.key)) {
        const choice = Array.from(document.getElementsByName(target.name)).find(function (input) {
          return input.value === event.key;
        });
        if (choice) {
          choice.checked = true;
          choice.focus();
          choice.dispatchEvent(new Event("change", { bubbles: true }));
        }
        event.preventDefault();
        return;
      }
      if (event.key === "t" && focusFirstAspect(form)) {
        event.preventDefault();
      } else if (event.key === "w" && openRewrite(form, true)) {
        event.preventDefault();
      }
    },
    true
  );

  document.addEventListener("change", function (event) {
    const input = event.target;
    if (!input || !input.matches) return;
    const form = input.form;
    if (!form || !form.matches("[data-label-form]")) return;
    // Starting a rewrite copies the chosen response, unless the box already holds an edit.
    if (input.matches("[data-rewrite-base]") && input.checked) {
      const text = form.querySelector("[data-rewrite-text]");
      const original = form.querySelector('[data-rewrite-original="' + input.value + '"]');
      const untouched = Array.from(form.querySelectorAll("[data-rewrite-original]")).some(
        function (area) {
          return area.value === text.value;
        }
      );
      if (text && original && (!text.value.trim() || untouched)) text.value = original.value;
      return;
    }
    // Where the campaign sends "both bad" to the rewrite step, choosing it opens the box.
    if (input.matches("input[name=preference]") && input.value === "both_bad" && input.checked) {
      const row = form.querySelector("[data-both-bad-route]");
      if (row && row.dataset.bothBadRoute === "rewrite") openRewrite(form, false);
    }
  });
})();
