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
// drag and drop onto an upload box (documents, pictures): the dropped files become its file input's
(function () {
  Array.prototype.forEach.call(document.querySelectorAll(".dropzone"), function (zone) {
    var input = zone.querySelector('input[type="file"]');
    if (!input) return;
    ["dragenter", "dragover"].forEach(function (t) {
      zone.addEventListener(t, function (e) { e.preventDefault(); zone.classList.add("over"); });
    });
    zone.addEventListener("dragleave", function () { zone.classList.remove("over"); });
    zone.addEventListener("drop", function (e) {
      e.preventDefault();
      zone.classList.remove("over");
      if (e.dataTransfer && e.dataTransfer.files.length) input.files = e.dataTransfer.files;
    });
  });
})();
