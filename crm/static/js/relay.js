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
