// cfgstore web UI: small enhancements only; every page works without it.
// Loaded as a file (the Content-Security-Policy allows no inline script).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // The new token's secret: copied to the clipboard with one click.
  var copy = document.getElementById("copy");
  var secret = document.getElementById("secret");
  if (copy && secret && navigator.clipboard) {
    copy.addEventListener("click", function () {
      navigator.clipboard.writeText(secret.textContent).then(function () {
        copy.textContent = "Copied";
      });
    });
  } else if (copy) {
    copy.hidden = true;
  }
  // Forms that destroy something ask once more.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    });
  });
  // Tab in the editor inserts two spaces instead of leaving the field.
  var editor = document.querySelector("textarea[name=content]");
  if (editor) {
    editor.addEventListener("keydown", function (event) {
      if (event.key === "Tab" && !event.shiftKey && !event.ctrlKey && !event.altKey) {
        event.preventDefault();
        var start = editor.selectionStart, end = editor.selectionEnd;
        editor.setRangeText("  ", start, end, "end");
      }
    });
  }
});
