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
  });
})();
