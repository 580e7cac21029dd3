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
            message.textContent = "Not moved: " + reply.message;
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
