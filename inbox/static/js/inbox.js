/* The inbox pages: keyboard shortcuts, the selected conversation, the phone's one-pane view,
   the Qualify dialog and Triage's select-all. Loaded as a file (CSP script-src 'self'). */
(function () {
  "use strict";

  // htmx "settles" a swapped element by copying the old element's style attribute onto the
  // new one with setAttribute, which our CSP (style-src 'self') refuses and reports; our
  // transitions are classes, so settling class, width and height is all the inbox needs.
  htmx.config.attributesToSettle = ["class", "width", "height"];

  // The panes are the history element (inbox.html hx-history-elt): Back and Forward swap what
  // is inside #inbox, never #inbox itself, so it is looked up once.
  var layout = document.getElementById("inbox");
  var selectedThread = null; // data-thread of the highlighted row; survives list refreshes
  var openedFromList = false; // a conversation was opened from the list in this page

  // "The mail changed" (an action's answer, a live event) refreshes the list, one request in
  // the list pane at a time: asked while the list or a search runs, once that one is back
  // (crm/static/js/relay.js relayWhenIdle; the search and the list share one hx-sync element).
  function searchRuns() {
    var search = document.querySelector("form.inbox-search");
    return search !== null && search.classList.contains("htmx-request");
  }
  function refreshList() {
    window.relayWhenIdle(
      "thread-list",
      function () {
        htmx.trigger(document.body, "inbox:list-refresh");
      },
      searchRuns
    );
  }
  document.body.addEventListener("inbox:changed", refreshList);

  var initial = document.querySelector("#thread-list .inbox-thread.is-selected");
  if (initial) {
    selectedThread = initial.getAttribute("data-thread");
  }

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
    // A field of a dialog that is closing (Esc, then "/" at once) still has the focus until the
    // dialog is gone: the key is the inbox's, not that field's, or "/" went into Qualify's
    // hidden search box and the inbox's search never got the focus.
    // (Remembered for the key held below: by then Qualify has emptied itself, field included.)
    var closing =
      event.relayFromClosingDialog === true ||
      (event.target.closest && event.target.closest(".modal:not(.show)") !== null);
    event.relayFromClosingDialog = closing;
    if (event.ctrlKey || event.metaKey || event.altKey || (typing(event.target) && !closing)) {
      return;
    }
    if (anyModalOpen()) {
      return; // the dialog owns the keyboard (Esc closes it: Bootstrap)
    }
    if (event.key === "Escape" && event.target.closest(".modal") !== null) {
      // The Esc that closes a dialog: Bootstrap starts hiding on it before it reaches this
      // listener, and held as if pressed during the fade-out it also closed the conversation.
      return;
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
      var back = document.querySelector("#conversation [data-inbox-back]");
      if (back) {
        back.click();
      }
    } else if (["q", "r", "a", "f", "u", "s", "e", "i", "h", "#"].indexOf(key) !== -1) {
      handled = clickShortcut(key);
    } else {
      handled = false;
    }
    if (handled) {
      event.preventDefault();
    }
  }

  // A row clicked (or opened with the keyboard) becomes the selected one. The pane changes
  // only when the conversation arrives: htmx keeps a copy of the page as it was for Back
  // (docs/product.md §7.12), so the list must still be the list when it does.
  document.addEventListener("click", function (event) {
    var link = event.target.closest(".inbox-thread-link");
    if (link) {
      highlight(link.closest(".inbox-thread"), false);
      openedFromList = true;
    }
    // The conversation's Back: the list as it was (scroll included), through the history when
    // the conversation was opened from it; else the list's own URL (the link's href).
    var back = event.target.closest("[data-inbox-back]");
    if (back && openedFromList && layout) {
      event.preventDefault();
      window.history.back();
    }
  });

  // The conversation opened at its newest message (docs/product.md §7.12): the pane scrolls
  // itself on a laptop, the page on a phone.
  function showNewest() {
    var pane = document.getElementById("conversation-pane");
    var newest = document.querySelector("#conversation .inbox-msg.is-latest");
    if (!pane || !newest) {
      return;
    }
    var scrolls = pane.scrollHeight > pane.clientHeight && getComputedStyle(pane).overflowY === "auto";
    var several = document.querySelectorAll("#conversation .inbox-msg").length > 1;
    if (scrolls) {
      pane.scrollTop = several
        ? pane.scrollTop + newest.getBoundingClientRect().top - pane.getBoundingClientRect().top - 8
        : 0;
    } else {
      var top = several ? newest.getBoundingClientRect().top + window.scrollY - 72 : 0;
      window.scrollTo(0, Math.max(top, 0));
    }
  }

  function reading(open) {
    if (layout) {
      layout.classList.toggle("is-reading", open);
    }
  }

  // Back and Forward (docs/product.md §7.12, docs/reliability.md X-18). htmx keeps no copy of these pages: its history
  // cache is localStorage, which outlives signing out, and mail must not. Back asks the
  // server again (inbox.html's hx-history-elt: only the panes are swapped); what this tab
  // keeps is where the list was scrolled, two numbers per address, for as long as the tab.
  htmx.config.historyCacheSize = 0;
  var SCROLLS = "relay.inbox.scroll";
  function scrolls() {
    try {
      return JSON.parse(window.sessionStorage.getItem(SCROLLS) || "{}");
    } catch (error) {
      return {};
    }
  }
  document.body.addEventListener("htmx:beforeHistorySave", function (event) {
    var list = document.querySelector(".inbox-list-pane");
    var saved = scrolls();
    saved[event.detail.path] = [list ? Math.round(list.scrollTop) : 0, Math.round(window.scrollY)];
    try {
      window.sessionStorage.setItem(SCROLLS, JSON.stringify(saved));
    } catch (error) {
      // Storage full or refused: Back still works, at the top of the list.
    }
  });
  document.body.addEventListener("htmx:historyRestore", function (event) {
    var open = document.getElementById("conversation") !== null;
    reading(open);
    var row = document.querySelector("#thread-list .inbox-thread.is-selected");
    selectedThread = row ? row.getAttribute("data-thread") : null;
    var where = scrolls()[event.detail.path];
    if (open) {
      showNewest();
    } else if (where) {
      var list = document.querySelector(".inbox-list-pane");
      if (list) {
        list.scrollTop = where[0];
      }
      // After htmx's own scroll to the top of a page it fetched again.
      window.setTimeout(function () {
        window.scrollTo(0, where[1]);
      }, 0);
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
      reading(true);
      showNewest();
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

  // Opened by its address (a reload, a shared link): the newest message in view, and the
  // list's selected row too.
  if (document.getElementById("conversation")) {
    showNewest();
    if (initial && document.querySelector(".inbox-list-pane")) {
      var listPane = document.querySelector(".inbox-list-pane");
      if (listPane.scrollHeight > listPane.clientHeight) {
        listPane.scrollTop = initial.offsetTop - listPane.clientHeight / 3;
      }
    }
  }
})();
