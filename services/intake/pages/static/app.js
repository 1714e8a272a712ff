// The pages' only script: served from here (no inline script, no CDN). It never writes
// HTML: what a user typed stays text.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.addEventListener("click", function () { window.print(); });
  });
  // After a refused form, take the keyboard to the list of what to correct.
  var errors = document.getElementById("errors");
  if (errors) {
    errors.setAttribute("tabindex", "-1");
    errors.focus();
  }
});
