/* Mailbox connect wizard and Reconnect: fill in a provider's settings from the address, warn
   about unverified certificates, keep the first sync's preview total in step with the ticked
   folders. A file, not inline (CSP script-src 'self'); the pages work without it. */
(function () {
  "use strict";

  var DEFAULT_PORTS = {
    imap: { ssl: "993", starttls: "143", none: "143" },
    smtp: { ssl: "465", starttls: "587", none: "25" },
  };

  function field(form, name) {
    return form.querySelector('[name="' + name + '"]');
  }

  // Fields the person typed in themselves are never overwritten by a guess.
  function markTouched(event) {
    if (event.isTrusted) {
      event.target.setAttribute("data-touched", "1");
    }
  }

  function setIfUntouched(input, value) {
    if (input && !input.hasAttribute("data-touched") && value !== undefined) {
      input.value = String(value);
    }
  }

  function guess(form, providers) {
    var email = (field(form, "email_address").value || "").trim().toLowerCase();
    var at = email.lastIndexOf("@");
    var hint = document.getElementById("guess-hint");
    var domain = at >= 0 ? email.slice(at + 1).replace(/\.$/, "") : "";
    if (!domain || domain.indexOf(".") < 0) {
      return;
    }
    var known = providers[domain];
    var settings = known || {
      imap_host: "imap." + domain,
      imap_port: 993,
      imap_security: "ssl",
      smtp_host: "smtp." + domain,
      smtp_port: 465,
      smtp_security: "ssl",
    };
    Object.keys(settings).forEach(function (name) {
      setIfUntouched(field(form, name), settings[name]);
    });
    if (hint) {
      hint.textContent = known
        ? "Filled in the usual settings for " + domain + "."
        : "Guessed the settings for " + domain + ": check them with your provider if the test fails.";
    }
  }

  function followSecurity(form, kind) {
    var security = field(form, kind + "_security");
    var port = field(form, kind + "_port");
    if (!security || !port) {
      return;
    }
    security.addEventListener("change", function () {
      var defaults = DEFAULT_PORTS[kind];
      var isDefault = Object.keys(defaults).some(function (key) {
        return defaults[key] === port.value;
      });
      if (!port.value || isDefault) {
        port.value = defaults[security.value] || port.value;
      }
    });
  }

  function updatePreview(root) {
    var total = root.querySelector("[data-preview-total]");
    if (!total) {
      return;
    }
    var sum = 0;
    root.querySelectorAll('input[name="active_folders"]:checked').forEach(function (box) {
      sum += parseInt(box.getAttribute("data-since") || "0", 10) || 0;
    });
    total.textContent = sum.toLocaleString("en-GB");
  }

  function setUp(form) {
    var providersElement = document.getElementById("relay-providers");
    var providers = providersElement ? JSON.parse(providersElement.textContent) : {};
    form.addEventListener("input", markTouched);
    var email = field(form, "email_address");
    if (email) {
      email.addEventListener("change", function () {
        guess(form, providers);
      });
      email.addEventListener("blur", function () {
        guess(form, providers);
      });
    }
    followSecurity(form, "imap");
    followSecurity(form, "smtp");
    var insecure = field(form, "allow_insecure_cert");
    var warning = document.getElementById("insecure-warning");
    if (insecure && warning) {
      insecure.addEventListener("change", function () {
        warning.classList.toggle("d-none", !insecure.checked);
      });
    }
    form.addEventListener("change", function (event) {
      if (event.target.name === "active_folders") {
        updatePreview(form);
      }
      // Another sync-from date changes what the first sync brings: ask the server again
      // once the folders are on screen (the preview counts come from a SEARCH SINCE).
      var button = document.getElementById("test-connection");
      if (event.target.name === "sync_from" && button && form.querySelector('[name="folders_shown"]')) {
        button.click();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-relay-connect]").forEach(setUp);
  });
})();
