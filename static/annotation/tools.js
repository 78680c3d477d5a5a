// The annotator tools panel. No inline script is allowed by our CSP, so this file adds a
// "Run" button to every code block inside a response (.response-body pre > code) that copies
// the code into the panel's editor, and keeps Tab inside the code editors.
"use strict";

(function () {
  var LANGUAGE_ALIASES = {
    python: "python", python3: "python", py: "python",
    javascript: "javascript", js: "javascript", node: "javascript", nodejs: "javascript",
    c: "c", cpp: "cpp", "c++": "cpp", cxx: "cpp", cc: "cpp"
  };
  // Code picked before the panel (loaded by htmx) was there; applied when it arrives.
  var pending = null;

  function languageOf(codeElement) {
    var classes = (codeElement.className || "").split(/\s+/);
    for (var i = 0; i < classes.length; i++) {
      var match = /^(?:language|lang)-(.+)$/.exec(classes[i]);
      if (match && LANGUAGE_ALIASES[match[1].toLowerCase()]) {
        return LANGUAGE_ALIASES[match[1].toLowerCase()];
      }
    }
    return null;
  }

  function putInEditor(code, language) {
    var editor = document.querySelector("[data-tools-editor]");
    if (!editor) {
      pending = { code: code, language: language };
      return false;
    }
    editor.value = code;
    var select = document.querySelector("[data-tools-language]");
    if (select && language) {
      for (var i = 0; i < select.options.length; i++) {
        if (select.options[i].value === language) { select.value = language; break; }
      }
    }
    var details = editor.closest("details");
    if (details) { details.open = true; }
    editor.scrollIntoView({ block: "center", behavior: "smooth" });
    editor.focus({ preventScroll: true });
    return true;
  }

  function addRunButtons(root) {
    var scope = root && root.querySelectorAll ? root : document;
    var blocks = scope.querySelectorAll(".response-body pre > code");
    blocks.forEach(function (code) {
      var pre = code.parentElement;
      if (pre.dataset.toolsRun) { return; }
      pre.dataset.toolsRun = "1";
      var button = document.createElement("button");
      button.type = "button";
      button.className = "code-run-button small";
      button.textContent = "Run";
      button.title = "Copy this code into the code runner";
      button.addEventListener("click", function () {
        putInEditor(code.textContent, languageOf(code));
      });
      pre.classList.add("has-run-button");
      pre.insertAdjacentElement("afterend", button);
    });
  }

  function keepTabInEditors(event) {
    var target = event.target;
    if (event.key !== "Tab" || event.shiftKey || !target.classList ||
        !target.classList.contains("tool-code-editor")) {
      return;
    }
    // Without this, Tab leaves the box: code needs indentation more than focus moves.
    event.preventDefault();
    var start = target.selectionStart;
    target.setRangeText("    ", start, target.selectionEnd, "end");
  }

  function onLoad(event) {
    var root = event && event.detail && event.detail.elt ? event.detail.elt : document;
    addRunButtons(root);
    if (pending && document.querySelector("[data-tools-editor]")) {
      var picked = pending;
      pending = null;
      putInEditor(picked.code, picked.language);
    }
  }

  document.addEventListener("keydown", keepTabInEditors);
  document.addEventListener("htmx:load", onLoad);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { onLoad(null); });
  } else {
    onLoad(null);
  }
  // Exposed for the browser test and for the workspace script.
  window.arbiterTools = { addRunButtons: addRunButtons, putInEditor: putInEditor };
})();
