/* Relay CRM page behaviour. Loaded as a file (CSP script-src 'self'): no inline scripts. */
(function () {
  "use strict";

  // Success toasts fade away on their own; warnings and errors stay until dismissed.
  function showToasts(root) {
    root.querySelectorAll("[data-relay-toast]").forEach(function (element) {
      var toast = bootstrap.Toast.getOrCreateInstance(element, {
        autohide: element.getAttribute("data-relay-toast") === "fade",
        // An Undo toast stays as long as Undo is possible (docs/product.md §5.5).
        delay: parseInt(element.getAttribute("data-relay-toast-delay") || "5000", 10),
      });
      toast.show();
    });
  }

  // A link to a record's "#email" opens its Email tab (the tab itself loads through htmx).
  function openTabFromHash() {
    if (window.location.hash !== "#email") {
      return;
    }
    var tab = document.getElementById("email-tab");
    if (tab) {
      tab.click();
    }
  }

  // Keep the address bar in step with the open tab, so reload and back return to it.
  function rememberTab(event) {
    var target = event.target.getAttribute("data-bs-target");
    if (target === "#email-pane") {
      history.replaceState(null, "", "#email");
    } else if (target === "#details-pane") {
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
  }

  // A part that fails to load (record deleted meanwhile, server error, network down) says so
  // and offers a retry, instead of leaving "Loading…" on screen for ever.
  function showLoadError(event) {
    var target = event.detail.target;
    var path = event.detail.pathInfo && event.detail.pathInfo.requestPath;
    if (!target || !path || event.detail.requestConfig.verb !== "get") {
      return;
    }
    var status = event.detail.xhr && event.detail.xhr.status;
    var box = document.createElement("div");
    box.className = "alert alert-warning d-flex flex-wrap align-items-center gap-2";
    box.setAttribute("role", "alert");
    var text = document.createElement("span");
    text.textContent =
      status === 404
        ? "This is no longer here: it may have been deleted."
        : "Could not load this part of the page.";
    var retry = document.createElement("button");
    retry.type = "button";
    retry.className = "btn btn-sm btn-outline-secondary ms-auto";
    retry.textContent = "Try again";
    retry.addEventListener("click", function () {
      htmx.ajax("GET", path, { target: target });
    });
    box.append(text, retry);
    target.replaceChildren(box);
  }

  // "Are you sure?" in the app's own dialog, never the browser's confirm() (which looks foreign,
  // blocks the page and is easy to click through). htmx asks through "htmx:confirm" for every
  // hx-confirm; a plain form asks with data-confirm. The OK button says what will happen: the
  // element's data-confirm-label, else the words of the button that was pressed.
  //
  // While the dialog is open the element that asked is marked data-relay-busy: no refresh of
  // what holds it (a live update, a poll) may replace it then, because htmx sends nothing for
  // an element that left the page, so the confirmed Delete would silently do nothing (a
  // colleague's note, or a poll, re-drew the timeline under the dialog). live.js skips a busy
  // element; any other GET whose target holds it is held back here (htmx:confirm below).
  var pending = null;
  var asking = null;

  function confirmDialog() {
    return document.getElementById("relay-confirm");
  }

  // Where the dialog is: Bootstrap ignores show() while it is still fading out, so a question
  // asked then never showed; one asked while the dialog is anywhere but hidden waits until it
  // is. (It ignores hide() during the fade-in too: OK and Cancel use relayHideModal below, or
  // an OK pressed then left the dialog open and the action undone.)
  var dialogState = "hidden";

  function ask(question, label, proceed, element) {
    var dialog = confirmDialog();
    if (!dialog || !window.bootstrap) {
      proceed(); // no dialog on this page (a bare error page): the server still decides
      return;
    }
    if (dialogState !== "hidden") {
      dialog.addEventListener(
        "hidden.bs.modal",
        function () {
          ask(question, label, proceed, element);
        },
        { once: true }
      );
      return;
    }
    dialog.querySelector("[data-relay-confirm-text]").textContent = question;
    var ok = dialog.querySelector("[data-relay-confirm-ok]");
    ok.textContent = label || "Continue";
    pending = proceed;
    asking = element || null;
    if (asking) {
      asking.setAttribute("data-relay-busy", "confirm");
    }
    bootstrap.Modal.getOrCreateInstance(dialog).show();
  }

  // Hide a Bootstrap dialog even while it still fades in: Bootstrap ignores hide() then, so a
  // button pressed during the fade-in (a quick hand, or a slow machine) left the dialog open.
  // It hides once the fade-in ends; a dialog hidden meanwhile another way stays hidden.
  // Also for inbox/static/js/compose.js's "Send without a subject".
  window.relayHideModal = function (element) {
    var modal = bootstrap.Modal.getOrCreateInstance(element);
    function whenShown() {
      modal.hide();
    }
    function forget() {
      element.removeEventListener("shown.bs.modal", whenShown);
      element.removeEventListener("hide.bs.modal", forget);
      element.removeEventListener("hidden.bs.modal", forget);
    }
    element.addEventListener("shown.bs.modal", whenShown, { once: true });
    element.addEventListener("hide.bs.modal", forget);
    element.addEventListener("hidden.bs.modal", forget);
    modal.hide();
  };

  // Cancel, Close and the like (data-bs-dismiss) in any dialog still fading in: Bootstrap's
  // own hide() would be ignored, so they hide it through relayHideModal instead.
  var fadingIn = new WeakSet();
  document.addEventListener("show.bs.modal", function (event) {
    fadingIn.add(event.target);
  });
  ["shown.bs.modal", "hide.bs.modal"].forEach(function (name) {
    document.addEventListener(name, function (event) {
      fadingIn.delete(event.target);
    });
  });
  document.addEventListener(
    "click",
    function (event) {
      var button = event.target.closest && event.target.closest('[data-bs-dismiss="modal"]');
      var modal = button && button.closest(".modal");
      if (modal && fadingIn.has(modal)) {
        event.stopPropagation();
        window.relayHideModal(modal);
      }
    },
    true
  );

  function doneAsking() {
    if (asking) {
      asking.removeAttribute("data-relay-busy");
      asking = null;
    }
  }

  // A refresh (GET) of a part of the page that holds the element being asked about waits:
  // the next one after the dialog closes brings it up to date.
  document.body.addEventListener("htmx:confirm", function (event) {
    var target = event.detail.target;
    if (
      asking &&
      event.detail.verb === "get" &&
      target &&
      target !== asking &&
      target.contains(asking) &&
      !asking.contains(event.detail.elt)
    ) {
      event.preventDefault();
    }
  });

  function labelOf(element, submitter) {
    var label = element.getAttribute("data-confirm-label");
    if (label) {
      return label;
    }
    var button =
      submitter ||
      (element.matches("button") ? element : element.querySelector("button[type=submit], button:not([type])"));
    return button ? button.textContent.trim() : "";
  }

  document.body.addEventListener("htmx:confirm", function (event) {
    var question = event.detail.question;
    if (!question) {
      return;
    }
    event.preventDefault();
    ask(
      question,
      labelOf(event.detail.elt),
      function () {
        event.detail.issueRequest(true);
      },
      event.detail.elt
    );
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (!question || form.hasAttribute("hx-post") || form.dataset.relayConfirmed) {
      return;
    }
    event.preventDefault();
    var submitter = event.submitter || null;
    ask(
      question,
      labelOf(form, submitter),
      function () {
        form.dataset.relayConfirmed = "1";
        form.requestSubmit(submitter);
        delete form.dataset.relayConfirmed;
      },
      form
    );
  });

  document.addEventListener("DOMContentLoaded", function () {
    var dialog = confirmDialog();
    if (!dialog) {
      return;
    }
    dialog.querySelector("[data-relay-confirm-ok]").addEventListener("click", function () {
      var proceed = pending;
      pending = null;
      dialog.addEventListener(
        "hidden.bs.modal",
        function () {
          if (proceed) {
            proceed();
          }
          doneAsking();
        },
        { once: true }
      );
      window.relayHideModal(dialog);
    });
    dialog.addEventListener("show.bs.modal", function () {
      dialogState = "showing";
    });
    dialog.addEventListener("shown.bs.modal", function () {
      dialogState = "shown";
    });
    dialog.addEventListener("hide.bs.modal", function () {
      dialogState = "hiding";
    });
    dialog.addEventListener("hidden.bs.modal", function () {
      dialogState = "hidden";
      pending = null; // Cancel, Esc or the backdrop: nothing happens
      doneAsking();
    });
  });

  // Fire a refresh on the element with this id once no request of its own runs (nor any that
  // `busy` reports): htmx queues a request asked meanwhile on that element and drops it when
  // the answer replaces the element, so a refresh asked then was lost (inbox/static/js/inbox.js
  // for the list, inbox/static/js/compose.js for the presence poller). An element just swapped
  // in and not yet wired up by htmx is marked htmx-added. Asked again while waiting: once.
  var idleWaits = {};
  window.relayWhenIdle = function (id, fire, busy) {
    if (idleWaits[id]) {
      return;
    }
    var element = document.getElementById(id);
    if (!element) {
      return;
    }
    if (
      element.classList.contains("htmx-request") ||
      element.classList.contains("htmx-added") ||
      (busy && busy())
    ) {
      idleWaits[id] = window.setTimeout(function () {
        idleWaits[id] = null;
        window.relayWhenIdle(id, fire, busy);
      }, 100);
      return;
    }
    fire(element);
  };

  // A toast in the corner saying what an action did: `marker` names it for tests and styles;
  // with `undoUrl` it offers Undo, which posts there.
  function cornerToast(text, marker, undoUrl, delay) {
    var container = document.getElementById("toasts");
    if (!container) {
      container = document.createElement("div");
      container.id = "toasts";
      container.className = "toast-container position-fixed bottom-0 end-0 p-3";
      container.setAttribute("aria-live", "polite");
      document.body.appendChild(container);
    }
    var toast = document.createElement("div");
    toast.className = "toast align-items-center border-0 text-bg-success";
    toast.setAttribute("role", "status");
    toast.setAttribute(marker, "");
    var row = document.createElement("div");
    row.className = "d-flex align-items-center";
    var body = document.createElement("div");
    body.className = "toast-body";
    body.textContent = text || "Done.";
    row.appendChild(body);
    if (undoUrl) {
      var undo = document.createElement("button");
      undo.type = "button";
      undo.className = "btn btn-sm btn-light ms-auto";
      undo.textContent = "Undo";
      undo.addEventListener("click", function () {
        undo.disabled = true;
        htmx.ajax("POST", undoUrl, { swap: "none", source: document.body }).then(function () {
          bootstrap.Toast.getOrCreateInstance(toast).hide();
        });
      });
      row.appendChild(undo);
    }
    var close = document.createElement("button");
    close.type = "button";
    close.className = "btn-close btn-close-white me-2 " + (undoUrl ? "ms-2" : "ms-auto");
    close.setAttribute("data-bs-dismiss", "toast");
    close.setAttribute("aria-label", "Close");
    row.appendChild(close);
    toast.appendChild(row);
    container.appendChild(toast);
    toast.addEventListener("hidden.bs.toast", function () {
      toast.remove();
    });
    bootstrap.Toast.getOrCreateInstance(toast, { autohide: true, delay: delay }).show();
  }

  // An action that can be taken back (unlinking a filing) answers with "relay:undo".
  document.body.addEventListener("relay:undo", function (event) {
    var detail = event.detail || {};
    cornerToast(detail.text, "data-relay-undo-toast", detail.url, 10000);
  });

  // An action done in the background (the inbox's bulk bar) answers with "relay:notice", e.g.
  // saying what was left alone.
  document.body.addEventListener("relay:notice", function (event) {
    var detail = event.detail || {};
    cornerToast(detail.text, "data-relay-notice-toast", null, 8000);
  });

  document.body.addEventListener("htmx:responseError", showLoadError);
  document.body.addEventListener("htmx:sendError", showLoadError);

  document.addEventListener("DOMContentLoaded", function () {
    showToasts(document);
    openTabFromHash();
    document.querySelectorAll('[data-bs-toggle="tab"]').forEach(function (tab) {
      tab.addEventListener("shown.bs.tab", rememberTab);
    });
  });
})();
