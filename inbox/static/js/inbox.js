/* The inbox pages: keyboard shortcuts, the selected conversation, the phone's one-pane view,
   the Qualify dialog and Triage's select-all. Loaded as a file (CSP script-src 'self'). */
(function () {
  "use strict";

  // htmx "settles" a swapped element by copying the old element's style attribute onto the
  // new one with setAttribute, which our CSP (style-src 'self') refuses and reports; our
  // transitions are classes, so settling class, width and height is all the inbox needs.
  htmx.config.attributesToSettle = ["class", "width", "height"];

  var layout = document.getElementById("inbox");
  var selectedThread = null; // data-thread of the highlighted row; survives list refreshes

  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("#thread-list .inbox-thread"));
  }

  function highlight(row, scroll) {
    rows().forEach(function (r) {
      r.classList.toggle("is-selected", r === row);
    });
    if (!row) {
      return;
    }
    selectedThread = row.getAttribute("data-thread");
    if (scroll) {
      row.scrollIntoView({ block: "nearest" });
      var link = row.querySelector(".inbox-thread-link");
      if (link) {
        link.focus({ preventScroll: true });
      }
    }
  }

  function currentIndex() {
    var list = rows();
    for (var i = 0; i < list.length; i++) {
      if (list[i].getAttribute("data-thread") === selectedThread) {
        return i;
      }
    }
    return -1;
  }

  function move(step) {
    var list = rows();
    if (!list.length) {
      return;
    }
    var index = currentIndex();
    index = index < 0 ? 0 : Math.min(Math.max(index + step, 0), list.length - 1);
    highlight(list[index], true);
  }

  function openSelected() {
    var list = rows();
    var index = currentIndex();
    var row = list[index < 0 ? 0 : index];
    if (row) {
      highlight(row, false);
      row.querySelector(".inbox-thread-link").click();
    }
  }

  function clickShortcut(key) {
    var target = document.querySelector('#conversation [data-shortcut="' + key + '"]');
    if (target) {
      target.click();
      return true;
    }
    return false;
  }

  function showModal(id) {
    var element = document.getElementById(id);
    if (element) {
      bootstrap.Modal.getOrCreateInstance(element).show();
    }
  }

  function anyModalOpen() {
    return document.querySelector(".modal.show") !== null;
  }

  function typing(target) {
    return (
      target.isContentEditable ||
      ["INPUT", "TEXTAREA", "SELECT"].indexOf(target.tagName) !== -1
    );
  }

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) {
      return;
    }
    if (anyModalOpen()) {
      return; // the dialog owns the keyboard (Esc closes it: Bootstrap)
    }
    if (document.body.classList.contains("modal-open")) {
      // A dialog is still fading out: act once it is gone, or Bootstrap giving the focus back
      // to what opened it would undo this key ("/" then Esc quickly: search loses the focus).
      event.preventDefault();
      document.addEventListener(
        "hidden.bs.modal",
        function () {
          window.setTimeout(function () {
            onKey(event);
          }, 0);
        },
        { once: true }
      );
      return;
    }
    var key = event.key;
    var handled = true;
    if (key === "j") {
      move(1);
    } else if (key === "k") {
      move(-1);
    } else if (key === "o" || (key === "Enter" && event.target.closest(".inbox-thread") === null)) {
      openSelected();
    } else if (key === "/") {
      var search = document.getElementById("inbox-search");
      handled = search !== null;
      if (search) {
        search.focus();
        search.select();
      }
    } else if (key === "?") {
      showModal("shortcuts-modal");
    } else if (key === "Escape" && layout && layout.classList.contains("is-reading")) {
      layout.classList.remove("is-reading");
    } else if (["q", "r", "a", "f", "u", "s", "e", "i", "h", "#"].indexOf(key) !== -1) {
      handled = clickShortcut(key);
    } else {
      handled = false;
    }
    if (handled) {
      event.preventDefault();
    }
  }

  // A row clicked (or opened with the keyboard) becomes the selected one, and on a phone the
  // reading pane takes the screen.
  document.addEventListener("click", function (event) {
    var link = event.target.closest(".inbox-thread-link");
    if (link) {
      highlight(link.closest(".inbox-thread"), false);
      if (layout) {
        layout.classList.add("is-reading");
      }
      // Say it is coming (on a phone the pane replaces the list at once).
      var pane = document.getElementById("conversation-pane");
      if (pane && !pane.querySelector(".relay-loading")) {
        var loading = document.createElement("div");
        loading.className = "relay-loading";
        loading.setAttribute("role", "status");
        loading.textContent = "Opening…";
        pane.replaceChildren(loading);
      }
    }
    if (event.target.closest("[data-inbox-back]") && layout) {
      layout.classList.remove("is-reading");
      var row = rows()[currentIndex()];
      if (row) {
        row.scrollIntoView({ block: "nearest" });
      }
    }
    // An older message of a conversation opens (and loads its body) when its header is clicked.
    var head = event.target.closest("[data-inbox-toggle]");
    if (head && !event.target.closest("a, button")) {
      head.closest(".inbox-msg").classList.toggle("is-open");
    }
  });

  // Once the conversation has been marked read, stop showing its messages as unread.
  document.body.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.successful && event.detail.elt.hasAttribute("data-inbox-autoread")) {
      document.querySelectorAll("#conversation .inbox-msg.is-unread").forEach(function (m) {
        m.classList.remove("is-unread");
      });
    }
  });

  document.body.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "thread-list") {
      // The list was refreshed (new mail, filters): keep the highlighted row highlighted.
      var row = document.querySelector('#thread-list .inbox-thread[data-thread="' + selectedThread + '"]');
      highlight(row, false);
    }
    if (target && target.id === "conversation-pane") {
      var heading = target.querySelector(".inbox-conversation-head h2");
      if (heading) {
        heading.setAttribute("tabindex", "-1");
      }
      target.scrollTop = 0;
    }
  });

  // outerHTML swaps report the new element as their target only after settling.
  document.body.addEventListener("htmx:afterSettle", function (event) {
    var target = event.detail.target;
    if (target && target.id === "thread-list" && selectedThread) {
      var row = document.querySelector('#thread-list .inbox-thread[data-thread="' + selectedThread + '"]');
      highlight(row, false);
    }
  });

  // The Qualify dialog starts fresh each time it opens, and puts the cursor in its search box
  // once both the dialog is shown (Bootstrap focuses the dialog itself then) and its content
  // has arrived, whichever comes last.
  var qualify = document.getElementById("qualify-modal");
  if (qualify) {
    var qualifyShown = false;
    var focusSearch = function () {
      var search = document.getElementById("qualify-q");
      if (qualifyShown && search && !search.value) {
        search.focus();
      }
    };
    qualify.addEventListener("shown.bs.modal", function () {
      qualifyShown = true;
      focusSearch();
    });
    qualify.addEventListener("hidden.bs.modal", function () {
      qualifyShown = false;
      var content = document.getElementById("qualify-content");
      content.replaceChildren();
      var loading = document.createElement("div");
      loading.className = "relay-loading";
      loading.textContent = "Loading…";
      content.append(loading);
    });
    document.body.addEventListener("htmx:afterSettle", function (event) {
      if (event.detail.target && event.detail.target.id === "qualify-content") {
        focusSearch();
      }
    });
  }

  // Triage: "select all" and the count of ticked messages.
  function updateCount(form) {
    var count = form.querySelectorAll('input[name="message"]:checked').length;
    form.querySelectorAll("[data-checked-count]").forEach(function (element) {
      element.textContent = String(count);
    });
  }
  document.addEventListener("change", function (event) {
    var form = event.target.form;
    if (!form) {
      return;
    }
    var all = event.target.getAttribute("data-check-all");
    if (all) {
      form.querySelectorAll('input[name="' + all + '"]').forEach(function (box) {
        box.checked = event.target.checked;
      });
    }
    if (all || event.target.name === "message") {
      updateCount(form);
    }
  });

  document.querySelectorAll("[data-checked-count]").forEach(function (element) {
    if (element.closest("form")) {
      updateCount(element.closest("form"));
    }
  });

  // The list's bulk bar: shown while conversations are ticked; the ticks survive the list
  // refreshing itself (new mail, someone else's change) and are cleared once an action ran.
  var ticked = {};
  function syncBulk() {
    var form = document.getElementById("bulk-form");
    var count = 0;
    document.querySelectorAll("#thread-list .inbox-thread-check").forEach(function (box) {
      if (ticked[box.value]) {
        box.checked = true;
      }
      if (box.checked) {
        count += 1;
      }
    });
    if (form) {
      form.hidden = count === 0;
      form.querySelectorAll("[data-bulk-count]").forEach(function (element) {
        element.textContent = String(count);
      });
    }
  }
  document.addEventListener("change", function (event) {
    if (event.target.classList && event.target.classList.contains("inbox-thread-check")) {
      if (event.target.checked) {
        ticked[event.target.value] = true;
      } else {
        delete ticked[event.target.value];
      }
      syncBulk();
    }
  });
  document.body.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.successful && event.detail.elt.id === "bulk-form") {
      ticked = {};
      document.querySelectorAll("#thread-list .inbox-thread-check").forEach(function (box) {
        box.checked = false;
      });
      syncBulk();
    }
  });
  document.body.addEventListener("htmx:afterSettle", syncBulk);
  syncBulk();

  document.addEventListener("keydown", onKey);
})();
