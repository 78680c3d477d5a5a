// The import page's drop target: a file dropped on it goes into the form's file input.
"use strict";
(function () {
  document.addEventListener("DOMContentLoaded", function () {
    const zone = document.querySelector("[data-dropzone]");
    if (!zone) return;
    const input = zone.querySelector("input[type=file]");
    const name = zone.querySelector("[data-dropzone-name]");
    function show() {
      if (input.files && input.files.length) name.textContent = input.files[0].name + " (" + input.files[0].size + " bytes)";
    }
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (event) {
        event.preventDefault();
        zone.classList.add("dropzone-over");
      });
    });
    ["dragleave", "drop"].forEach(function (type) {
      zone.addEventListener(type, function () {
        zone.classList.remove("dropzone-over");
      });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        show();
      }
    });
    input.addEventListener("change", show);
    // A file over the server's bound is refused (413) only once sent whole: say so at once.
    const form = zone.closest("form");
    const maxBytes = Number(form.dataset.maxBytes);
    let tooBig = null;
    form.addEventListener("submit", function (event) {
      const file = input.files && input.files[0];
      if (tooBig) tooBig.remove();
      tooBig = null;
      if (file && maxBytes && file.size > maxBytes) {
        event.preventDefault();
        tooBig = document.createElement("div");
        tooBig.className = "alert";
        tooBig.setAttribute("role", "alert");
        tooBig.setAttribute("data-testid", "import-too-big");
        tooBig.textContent = file.name + " is " + file.size + " bytes; files of at most " + maxBytes +
          " bytes are imported (ARBITER_IMPORT_MAX_BYTES). Split the file, or compress it with gzip.";
        zone.after(tooBig);
      }
    });
  });
})();
