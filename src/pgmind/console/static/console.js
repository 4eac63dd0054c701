// The console's behaviour, in a file (the Content-Security-Policy allows no inline script).
// htmx sends the session's CSRF token as a header on every request it makes.
"use strict";
(function () {
  function token() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }
  document.addEventListener("htmx:configRequest", function (e) {
    e.detail.headers["X-CSRF-Token"] = token();
  });
  // a form that asks first (delete): the question is in data-confirm, shown with confirm()
  document.addEventListener("submit", function (e) {
    var f = e.target;
    if (f.classList && f.classList.contains("confirm") && !window.confirm(f.getAttribute("data-confirm"))) {
      e.preventDefault();
    }
  }, true);
  // the second configuration of the hit test shows only when "compare" is ticked
  document.addEventListener("change", function (e) {
    if (e.target && e.target.id === "compare") {
      var b = document.getElementById("config-b");
      if (b) b.classList.toggle("hidden-b", !e.target.checked);
    }
  });
})();
