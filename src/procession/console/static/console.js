// Procession console: the few live parts of its pages. Plain script, no library.
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // [data-live] regions: fetched again every second and replaced, until the new one is no longer live
  function refresh(region) {
    setTimeout(function () {
      fetch(location.href, { headers: { accept: "text/html" }, credentials: "same-origin" })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(region.id);
          if (!fresh) return;
          region.replaceWith(fresh);
          if (fresh.hasAttribute("data-live")) refresh(fresh);
        })
        .catch(function () { refresh(region); });
    }, 1000);
  }
  document.querySelectorAll("[data-live][id]").forEach(refresh);

  // forms that delete or remove something: asked once more
  document.addEventListener("submit", function (e) {
    var form = e.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) e.preventDefault();
  });

  // the board: drag a card to a column; the server says whether the state graph allows it
  var board = document.querySelector(".board[data-procedure]");
  if (board) {
    var message = document.getElementById("board-message");
    var dragged = null;
    board.addEventListener("dragstart", function (e) {
      dragged = e.target.closest(".card");
      if (dragged) e.dataTransfer.setData("text/plain", dragged.dataset.id);
    });
    board.querySelectorAll(".lane").forEach(function (lane) {
      lane.addEventListener("dragover", function (e) { e.preventDefault(); lane.classList.add("over"); });
      lane.addEventListener("dragleave", function () { lane.classList.remove("over"); });
      lane.addEventListener("drop", function (e) {
        e.preventDefault();
        lane.classList.remove("over");
        if (!dragged || dragged.dataset.state === lane.dataset.state) return;
        move(dragged, lane.dataset.state);
      });
    });
    board.addEventListener("submit", function (e) {
      var form = e.target.closest("form.move");
      if (!form) return;
      e.preventDefault();
      move(form.closest(".card"), form.elements.state.value);
    });
    // "More" in a column: its next cards appended, with the next "More" (the link alone opens them as a page)
    board.addEventListener("click", function (e) {
      var more = e.target.closest("a.more");
      if (!more) return;
      e.preventDefault();
      var lane = more.closest(".lane");
      fetch(more.href, { headers: { accept: "text/html" }, credentials: "same-origin" })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html")
            .querySelector('.lane[data-state="' + lane.dataset.state + '"]');
          if (!fresh) return;
          var list = lane.querySelector("ul"), first = fresh.querySelector(".card");
          fresh.querySelectorAll(".card").forEach(function (card) { list.appendChild(card); });
          var next = fresh.querySelector("a.more");
          if (next) more.replaceWith(next); else more.remove();
          lane.querySelector(".count").textContent = "(" + list.children.length + (next ? "+" : "") + ")";
          if (first) (first.querySelector("a") || first).focus();  // the keyboard goes on from the new cards
        });
    });
    function move(card, state) {
      var body = new URLSearchParams({ state: state, csrf: csrf });
      var url = "/procedures/" + board.dataset.procedure + "/processes/" + card.dataset.id + "/state";
      fetch(url, { method: "POST", body: body, credentials: "same-origin",
                   headers: { accept: "application/json", "x-csrf-token": csrf } })
        .then(function (r) { return r.json(); })
        .then(function (reply) {
          if (reply.ok) {
            message.className = "notice";
            message.textContent = "Moved to " + state + ".";
            location.reload();
          } else {
            message.className = "error";
            message.textContent = "";
            var head = document.createElement("p"), list = document.createElement("ul");
            head.textContent = "Not moved:";
            (reply.reasons || [reply.message]).forEach(function (reason) {
              var item = document.createElement("li");
              item.textContent = reason;
              list.appendChild(item);
            });
            message.append(head, list);
          }
        });
    }
  }

  // the control panel: how many processes the filter finds, as it is changed
  var batch = document.querySelector("form[data-count]");
  if (batch) {
    var shown = document.getElementById("count");
    var timer = null;
    function count() {
      var params = new URLSearchParams(new FormData(batch));
      params.delete("csrf");
      fetch(batch.dataset.count + "?" + params.toString(), { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (reply) {
          shown.textContent = reply.error ? "The filter is not valid: " + reply.error
            : (reply.more ? "More than " : "") + reply.count.toLocaleString() + " matching processes";
          shown.dataset.count = reply.error ? "" : String(reply.count);
        });
    }
    batch.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(count, 250); });
    count();
  }
})();
