/* Relay CRM page behaviour. Loaded as a file (CSP script-src 'self'): no inline scripts. */
(function () {
  "use strict";

  // Success toasts fade away on their own; errors stay until dismissed.
  function showToasts(root) {
    root.querySelectorAll("[data-relay-toast]").forEach(function (element) {
      var isError = element.getAttribute("role") === "alert";
      var toast = bootstrap.Toast.getOrCreateInstance(element, {
        autohide: !isError,
        delay: 5000,
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

  document.addEventListener("DOMContentLoaded", function () {
    showToasts(document);
    openTabFromHash();
    document.querySelectorAll('[data-bs-toggle="tab"]').forEach(function (tab) {
      tab.addEventListener("shown.bs.tab", rememberTab);
    });
  });
})();
