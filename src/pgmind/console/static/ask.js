// Ask: posts the question, reads the server's event stream and shows the sources first, then the
// answer as the model writes it.  Every text from the server goes in with textContent: a source or
// an answer that holds markup shows it as text and runs nothing.
"use strict";
(function () {
  var form = document.getElementById("ask-form");
  if (!form) return;
  var $ = function (id) { return document.getElementById(id); };
  var label = function (k) { return form.getAttribute("data-" + k) || k; };
  var sources = [];

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function showSources(list) {
    sources = list || [];
    var ol = $("sources");
    ol.replaceChildren();
    sources.forEach(function (s) {
      var li = el("li", null, "source");
      li.id = "source-" + s.n;
      var a = el("a", "[" + s.n + "] " + s.key_text + " · #" + s.chunk_seq, "source-link");
      a.href = s.url;
      li.appendChild(a);
      li.appendChild(el("div", s.chunk, "chunk"));
      ol.appendChild(li);
    });
    $("sources-box").hidden = sources.length === 0;
  }

  // the answer's [n] markers become links to their sources (the text around them stays text)
  function renderAnswer(text) {
    var box = $("answer");
    box.replaceChildren();
    var re = /\[(\d+)\]/g, at = 0, m;
    while ((m = re.exec(text)) !== null) {
      box.appendChild(document.createTextNode(text.slice(at, m.index)));
      var n = parseInt(m[1], 10), s = sources[n - 1];
      if (s) {
        var a = el("a", m[0], "cite");
        a.href = s.url;
        a.setAttribute("data-n", String(n));
        box.appendChild(a);
      } else {
        box.appendChild(document.createTextNode(m[0]));
      }
      at = re.lastIndex;
    }
    box.appendChild(document.createTextNode(text.slice(at)));
  }

  // why ai.rag_prompt declined, as it said (the server puts its sentence in "why"): what it measured,
  // and the nearest passages as links to their documents
  function showReason(r) {
    var dl = $("reason");
    dl.replaceChildren();
    var fmt = function (v) { return v === null || v === undefined ? "—" : (typeof v === "number" ? v.toFixed(3) : String(v)); };
    var add = function (term, value) {
      dl.appendChild(el("dt", term));
      var dd = el("dd");
      if (value instanceof Node) dd.appendChild(value); else dd.textContent = value;
      dl.appendChild(dd);
      return dd;
    };
    if (r.why) add(label("decline-reason"), r.why).id = "decline-why";
    if (r.code === "off_topic") add(label("topic-score"), fmt(r.topic_score) + " / " + fmt(r.topic_threshold));
    if (r.best !== null && r.best !== undefined) {
      add(r.measure && r.measure !== "similarity" ? label("best-score") : label("best-similarity"), fmt(r.best));
    }
    if (r.threshold !== null && r.threshold !== undefined) add(label("threshold"), fmt(r.threshold));
    if (r.nearest && r.nearest.length) {
      var ul = el("ul", null, "nearest");
      r.nearest.forEach(function (n) {
        var li = el("li");
        var a = el("a", n.key_text + " · #" + n.chunk_seq, "nearest-link");
        a.href = n.url;
        li.appendChild(a);
        li.appendChild(document.createTextNode(" (" + fmt(n.similarity)
          + (n.score !== null && n.score !== undefined && n.score !== n.similarity ? " / " + fmt(n.score) : "") + ")"));
        ul.appendChild(li);
      });
      add(label("nearest"), ul);
    }
    dl.hidden = dl.childNodes.length === 0;
  }

  function finish(ev, question) {
    $("fb-question").value = question;
    $("fb-answer").value = ev.answer || "";
    $("fb-answered").value = ev.answered ? "true" : "false";
    $("fb-sources").value = JSON.stringify(sources.map(function (s) { return s.key_text; }));
    $("feedback-result").replaceChildren();
    $("feedback-box").hidden = false;
  }

  function handle(ev, state) {
    if (ev.type === "sources") {
      showSources(ev.sources);
      $("answer-box").hidden = false;
      $("status").textContent = label("writing");
    } else if (ev.type === "delta") {
      state.text += ev.content;
      renderAnswer(state.text);
    } else if (ev.type === "done") {
      $("status").textContent = ev.answered ? (ev.confidence ? label("confidence") + ": " + ev.confidence : "")
                                            : label("declined");
      $("answer-box").classList.toggle("declined", !ev.answered);
      renderAnswer(ev.answer || "");
      if (!ev.answered && ev.reason) showReason(ev.reason);
      finish(ev, state.question);
    } else if (ev.type === "error") {
      $("answer-box").hidden = false;
      $("status").textContent = label("error") + ": " + ev.message + (ev.hint ? " — " + label("hint") + ": " + ev.hint : "");
    }
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var state = { text: "", question: $("question").value };
    showSources([]);
    $("answer").replaceChildren();
    $("reason").hidden = true;
    $("feedback-box").hidden = true;
    $("answer-box").hidden = false;
    $("answer-box").classList.remove("declined");
    $("status").textContent = label("writing");
    fetch(form.action, {
      method: "POST", body: new URLSearchParams(new FormData(form)), credentials: "same-origin",
      headers: { "X-CSRF-Token": form.querySelector('input[name="csrf"]').value }
    }).then(function (resp) {
      var type = resp.headers.get("content-type") || "";
      if (type.indexOf("text/event-stream") !== 0) {
        // an error page (a refused request, a bad input): show it as it is
        return resp.text().then(function (html) {
          document.open(); document.write(html); document.close();
        });
      }
      var reader = resp.body.getReader(), decoder = new TextDecoder(), buf = "";
      function pump() {
        return reader.read().then(function (r) {
          if (r.done) return;
          buf += decoder.decode(r.value, { stream: true });
          var parts = buf.split("\n\n");
          buf = parts.pop();
          parts.forEach(function (p) {
            if (p.indexOf("data: ") === 0) handle(JSON.parse(p.slice(6)), state);
          });
          return pump();
        });
      }
      return pump();
    }).catch(function () {
      $("status").textContent = label("error");
    });
  });
})();
