// cfgstore web UI: small enhancements only; every page works without it.
// Loaded as a file (the Content-Security-Policy allows no inline script).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // The new token's secret: copied to the clipboard with one click.
  var copy = document.getElementById("copy");
  var secret = document.getElementById("secret");
  if (copy && secret && navigator.clipboard) {
    copy.addEventListener("click", function () {
      navigator.clipboard.writeText(secret.textContent.trim()).then(function () {
        copy.textContent = "Copied";
      });
    });
  } else if (copy) {
    copy.hidden = true;
  }
});
