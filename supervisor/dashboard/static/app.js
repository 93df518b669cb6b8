// The dashboard's own script: the read-only terminal (xterm.js fed by Server-Sent Events), the headless
// event stream, and small form niceties. htmx does the rest. No inline script anywhere: the CSP forbids it.
(function () {
  "use strict";

  function terminal(el) {
    if (typeof Terminal === "undefined") { el.textContent = "xterm.js did not load"; return; }
    var term = new Terminal({ disableStdin: true, cursorBlink: false, cols: 220, rows: 50, fontSize: 11,
                              scrollback: 0, convertEol: false });
    term.open(el);
    var source = new EventSource(el.dataset.src);
    var frames = 0;
    source.addEventListener("screen", function (e) {
      term.write(JSON.parse(e.data));
      el.dataset.frames = String(++frames);  // how many screens arrived (tests read it)
    });
    source.onerror = function () { el.classList.add("ended"); };
  }

  function events(el) {
    var source = new EventSource(el.dataset.src);
    source.addEventListener("line", function (e) {
      var line = document.createElement("div");
      line.className = "line";
      line.textContent = JSON.parse(e.data);  // text, never HTML: the agent wrote it
      var atBottom = el.scrollTop + el.clientHeight >= el.scrollHeight - 4;
      el.appendChild(line);
      while (el.childNodes.length > 500) { el.removeChild(el.firstChild); }
      if (atBottom) { el.scrollTop = el.scrollHeight; }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var t = document.getElementById("terminal");
    if (t) { terminal(t); }
    var ev = document.getElementById("events");
    if (ev) { events(ev); }
    document.body.addEventListener("htmx:afterRequest", function (e) {
      var form = e.detail.elt;
      if (e.detail.successful && form && form.classList && form.classList.contains("send")) { form.reset(); }
    });
  });
})();
