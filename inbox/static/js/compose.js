/* The composer (docs/product.md §5.1, §5.5). Without this file it is a plain form (a
   textarea, a file input, Save draft and Send). With it: a small rich-text editor
   (contenteditable; the server sanitises whatever it sends, docs/reliability.md X-20), the
   draft saved as the person types, files dropped or chosen uploaded into the draft at once,
   "Send without a subject?" asked in the app's dialog, and the warning for a personal address
   on a shared conversation. Loaded as a file (CSP script-src 'self'). */
(function () {
  "use strict";

  var AUTOSAVE_MS = 1200;
  var MAX_BYTES = 18 * 1024 * 1024;
  var SAFE_LINK = /^(https?:|mailto:)/i;

  function textToEditor(editor, text) {
    editor.textContent = "";
    var lines = (text || "").split("\n");
    lines.forEach(function (line, index) {
      var div = document.createElement("div");
      if (line) {
        div.textContent = line;
      } else {
        div.appendChild(document.createElement("br"));
      }
      editor.appendChild(div);
      if (index === 0 && !line && lines.length === 1) {
        return;
      }
    });
  }

  function setup(form) {
    if (form.hasAttribute("data-composer-ready")) {
      return;
    }
    form.setAttribute("data-composer-ready", "");
    var textarea = form.querySelector("[data-composer-text]");
    var editor = form.querySelector("[data-composer-editor]");
    var toolbar = form.querySelector("[data-composer-toolbar]");
    var htmlField = form.querySelector("[data-composer-html]");
    var draftField = form.querySelector("[data-composer-draft]");
    var confirmField = form.querySelector("[data-composer-confirm]");
    var subject = form.querySelector("[data-composer-subject]");
    var status = form.querySelector("[data-composer-status]");
    var fileInput = form.querySelector("[data-composer-input]");
    var dropzone = form.querySelector("[data-composer-dropzone]");
    var fileError = form.querySelector("[data-composer-file-error]");
    var filesBox = form.querySelector("[data-composer-files]");
    var dialogElement = form.querySelector("[data-composer-dialog]");
    var timer = null;
    var saving = null;
    var dirty = false;

    // The signature of each sending address (docs/product.md §5.5), swapped when the From
    // changes unless the person edited it.
    var mailboxSelect = form.querySelector("select[data-composer-mailbox]");
    var signatures = {};
    var signaturesData = form.querySelector("[data-composer-signatures] script");
    if (signaturesData) {
      signatures = JSON.parse(signaturesData.textContent || "{}");
    }
    function signatureOf(value) {
      return (signatures[value] || "").replace(/^\n+/, "").replace(/\n+$/, "");
    }
    var currentSignature = mailboxSelect ? signatureOf(mailboxSelect.value) : "";

    // The editor replaces the textarea; the textarea stays the plain-text copy that is posted.
    if (editor && textarea) {
      if (htmlField.value) {
        // Sanitised by the server before it was put here (inbox/richtext.py).
        editor.innerHTML = htmlField.value;
      } else {
        var text = textarea.value;
        var at = currentSignature ? text.lastIndexOf(currentSignature) : -1;
        if (at >= 0 && !text.slice(at + currentSignature.length).trim()) {
          // The signature in a block of its own, so that it can be told apart and swapped.
          textToEditor(editor, text.slice(0, at).replace(/\n$/, ""));
          var block = document.createElement("div");
          block.setAttribute("data-composer-signature", "");
          textToEditor(block, currentSignature);
          editor.appendChild(block);
        } else {
          textToEditor(editor, text);
        }
      }
      // The placeholder moves to the editor (shown while it is empty, inbox.css).
      editor.setAttribute("placeholder", textarea.getAttribute("placeholder") || "");
      textarea.removeAttribute("placeholder");
      editor.hidden = false;
      toolbar.hidden = false;
      textarea.hidden = true;
      textarea.setAttribute("tabindex", "-1");
    }

    function sync() {
      if (!editor || editor.hidden) {
        return;
      }
      htmlField.value = editor.innerHTML;
      textarea.value = editor.innerText;
    }

    // Formatting: execCommand keeps the undo stack of the browser; links only to web and mail.
    var savedRange = null;
    if (toolbar) {
      toolbar.addEventListener("mousedown", function (event) {
        if (event.target.closest("[data-command]")) {
          event.preventDefault(); // keep the selection in the editor
        }
      });
      toolbar.addEventListener("click", function (event) {
        var button = event.target.closest("[data-command]");
        if (!button) {
          return;
        }
        var command = button.getAttribute("data-command");
        editor.focus();
        if (command === "createLink") {
          var selection = window.getSelection();
          savedRange = selection.rangeCount ? selection.getRangeAt(0).cloneRange() : null;
          showLinkBox();
          return;
        }
        document.execCommand(command, false, null);
        changed();
      });
    }

    var linkBox = null;
    function showLinkBox() {
      if (!linkBox) {
        linkBox = document.createElement("span");
        linkBox.className = "relay-editor-link";
        var input = document.createElement("input");
        input.type = "url";
        input.className = "form-control form-control-sm";
        input.placeholder = "https://…";
        input.setAttribute("aria-label", "Link address");
        var add = document.createElement("button");
        add.type = "button";
        add.className = "btn btn-sm btn-primary";
        add.textContent = "Add link";
        var hint = document.createElement("span");
        hint.className = "small text-danger";
        hint.setAttribute("role", "alert");
        linkBox.appendChild(input);
        linkBox.appendChild(add);
        linkBox.appendChild(hint);
        toolbar.appendChild(linkBox);
        var apply = function () {
          var url = input.value.trim();
          if (!SAFE_LINK.test(url)) {
            hint.textContent = "A link starts with https://, http:// or mailto:";
            return;
          }
          hint.textContent = "";
          editor.focus();
          if (savedRange) {
            var selection = window.getSelection();
            selection.removeAllRanges();
            selection.addRange(savedRange);
          }
          if (savedRange && !savedRange.collapsed) {
            document.execCommand("createLink", false, url);
          } else {
            var a = document.createElement("a");
            a.href = url;
            a.textContent = url;
            document.execCommand("insertHTML", false, a.outerHTML);
          }
          linkBox.hidden = true;
          input.value = "";
          changed();
        };
        add.addEventListener("click", apply);
        input.addEventListener("keydown", function (event) {
          if (event.key === "Enter") {
            event.preventDefault();
            apply();
          } else if (event.key === "Escape") {
            linkBox.hidden = true;
            editor.focus();
          }
        });
      }
      linkBox.hidden = false;
      linkBox.querySelector("input").focus();
    }

    // A pasted image goes in inline (a data: URL here; a cid: part of the mail when sent).
    if (editor) {
      editor.addEventListener("paste", function (event) {
        var items = (event.clipboardData && event.clipboardData.files) || [];
        var images = Array.prototype.filter.call(items, function (file) {
          return /^image\/(png|jpeg|gif|webp)$/.test(file.type);
        });
        if (!images.length) {
          return;
        }
        event.preventDefault();
        images.forEach(function (file) {
          var reader = new FileReader();
          reader.onload = function () {
            // Put in as an element of our own: execCommand("insertImage") lets the browser
            // add an inline style, which the page's CSP (style-src 'self') refuses.
            var image = document.createElement("img");
            image.src = reader.result;
            image.alt = file.name || "image";
            var selection = window.getSelection();
            if (selection.rangeCount && editor.contains(selection.getRangeAt(0).commonAncestorContainer)) {
              var range = selection.getRangeAt(0);
              range.deleteContents();
              range.insertNode(image);
              range.setStartAfter(image);
              range.collapse(true);
              selection.removeAllRanges();
              selection.addRange(range);
            } else {
              editor.appendChild(image);
            }
            changed();
          };
          reader.readAsDataURL(file);
        });
      });
      editor.addEventListener("input", changed);
    }

    // The draft, saved as the person types (debounced), and at once when files are added.
    function showStatus(text) {
      if (status) {
        status.textContent = text;
      }
    }

    function renderAttachments(list) {
      var ul = filesBox.querySelector("[data-composer-draft-files]");
      if (!ul) {
        ul = document.createElement("ul");
        ul.className = "list-unstyled relay-attachment-list mb-2";
        ul.setAttribute("data-composer-draft-files", "");
        ul.setAttribute("aria-label", "Attached files");
        filesBox.insertBefore(ul, dropzone);
      }
      filesBox.querySelectorAll('input[name="keep_attachment"]').forEach(function (box) {
        var item = box.closest("li");
        if (item && item.parentNode !== ul) {
          item.remove();
        }
      });
      ul.textContent = "";
      list.forEach(function (row, index) {
        var li = document.createElement("li");
        li.className = "relay-attachment";
        var box = document.createElement("input");
        box.type = "checkbox";
        box.className = "form-check-input";
        box.name = "keep_attachment";
        box.value = row.blob;
        box.checked = true;
        box.id = "keep-js-" + index + "-" + Math.random().toString(36).slice(2, 7);
        box.addEventListener("change", changed);
        var label = document.createElement("label");
        label.className = "form-check-label relay-attachment-name";
        label.htmlFor = box.id;
        label.textContent = row.filename || "attachment";
        li.appendChild(box);
        li.appendChild(label);
        ul.appendChild(li);
      });
    }

    function save(files) {
      sync();
      var data = new FormData(form);
      data.delete("attachments");
      data.set("action", "save_draft");
      (files || []).forEach(function (file) {
        data.append("attachments", file, file.name);
      });
      showStatus(files && files.length ? "Attaching…" : "Saving…");
      dirty = false;
      // form.getAttribute: form.action would be the "Save draft" button, named "action".
      saving = fetch(form.getAttribute("action"), {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: { "X-Relay-Autosave": "1" },
      })
        .then(function (response) {
          return response.json().then(function (body) {
            return { ok: response.ok, body: body };
          });
        })
        .then(function (result) {
          if (!result.ok) {
            showError(result.body.error || "The draft could not be saved.");
            showStatus("Not saved");
            return;
          }
          draftField.value = result.body.draft;
          renderAttachments(result.body.attachments || []);
          var when = new Date(result.body.saved_at);
          showStatus("Draft saved " + when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
          if (files && files.length) {
            fileInput.value = "";
            showError("");
          }
        })
        .catch(function () {
          dirty = true;
          showStatus("Not saved: offline?");
        })
        .finally(function () {
          saving = null;
        });
      return saving;
    }

    function changed() {
      dirty = true;
      showStatus("Editing…");
      clearTimeout(timer);
      timer = setTimeout(function () {
        if (saving) {
          saving.then(function () {
            changed();
          });
          return;
        }
        save();
      }, AUTOSAVE_MS);
    }

    form.querySelectorAll("input[type=text], select").forEach(function (field) {
      field.addEventListener("input", changed);
    });
    if (textarea) {
      textarea.addEventListener("input", changed);
    }

    // Files: chosen or dropped, checked here for size, uploaded into the draft at once.
    function showError(text) {
      if (!fileError) {
        return;
      }
      fileError.textContent = text;
      fileError.hidden = !text;
    }

    function addFiles(fileList) {
      var files = Array.prototype.slice.call(fileList || []);
      if (!files.length) {
        return;
      }
      var total = files.reduce(function (sum, file) {
        return sum + file.size;
      }, 0);
      if (total > MAX_BYTES) {
        showError("Attachments may add up to 18 MB at most: " + files.map(function (f) {
          return f.name;
        }).join(", ") + " is too big.");
        fileInput.value = "";
        return;
      }
      clearTimeout(timer);
      save(files);
    }

    if (fileInput) {
      fileInput.addEventListener("change", function () {
        addFiles(fileInput.files);
      });
    }
    if (dropzone) {
      ["dragenter", "dragover"].forEach(function (name) {
        dropzone.addEventListener(name, function (event) {
          event.preventDefault();
          dropzone.classList.add("is-over");
        });
      });
      ["dragleave", "drop"].forEach(function (name) {
        dropzone.addEventListener(name, function () {
          dropzone.classList.remove("is-over");
        });
      });
      dropzone.addEventListener("drop", function (event) {
        event.preventDefault();
        addFiles(event.dataTransfer && event.dataTransfer.files);
      });
    }

    // Send: no subject asks first, in the app's dialog.
    var dialog = dialogElement ? bootstrap.Modal.getOrCreateInstance(dialogElement) : null;
    var sendButton = form.querySelector("[data-composer-send]");
    form.addEventListener("submit", function (event) {
      sync();
      clearTimeout(timer);
      var submitter = event.submitter;
      var isSend = !submitter || submitter === sendButton;
      if (isSend && subject && !subject.value.trim() && !confirmField.value && dialog) {
        event.preventDefault();
        // Shown from <body>: inside the conversation pane (a stacking context of its own) the
        // dialog would sit under its backdrop. One left there by an earlier composer goes.
        if (dialogElement.parentElement !== document.body) {
          document.body.querySelectorAll(":scope > .modal").forEach(function (other) {
            if (other.id === dialogElement.id) {
              other.remove();
            }
          });
          document.body.appendChild(dialogElement);
        }
        dialog.show();
      }
    });
    if (dialogElement) {
      dialogElement.querySelector("[data-composer-send-anyway]").addEventListener("click", function () {
        confirmField.value = "1";
        window.relayHideModal(dialogElement); // crm/static/js/relay.js: even mid fade-in
        form.requestSubmit(sendButton);
      });
      dialogElement.addEventListener("hidden.bs.modal", function () {
        if (!confirmField.value && subject) {
          subject.focus();
        }
      });
    }
    window.addEventListener("beforeunload", function () {
      if (dirty && !form.hasAttribute("data-submitting")) {
        save();
      }
    });
    form.addEventListener("submit", function (event) {
      if (!event.defaultPrevented) {
        form.setAttribute("data-submitting", "");
      }
    });

    // Presence (docs/product.md §5.4): this composer marks its person "writing a reply"
    // while it is open (the compose page; the inline reply while unfolded), and says at once
    // when it is folded away or left, so that colleagues do not wait for a refresh.
    var writingField = form.querySelector("[data-composer-writing]");
    var composerField = form.querySelector('input[name="composer"][data-presence-field]');
    if (writingField && composerField) {
      var inlineBox = form.closest("details");
      // Said while the poller's own request runs, once that one is back: htmx would drop it
      // with the poller that answer replaces (crm/static/js/relay.js relayWhenIdle), and
      // colleagues saw "writing a reply" until the next 10 s refresh.
      var refreshPresence = function () {
        if (window.htmx) {
          window.relayWhenIdle("presence", function (poller) {
            htmx.trigger(poller, "relay-presence");
          });
        }
      };
      var setWriting = function (writing) {
        var value = writing ? "1" : "0";
        if (writingField.value !== value) {
          writingField.value = value;
          refreshPresence();
        }
      };
      var left = false;
      var leave = function () {
        var poller = document.getElementById("presence");
        if (left || !poller || !navigator.sendBeacon) {
          return;
        }
        left = true;
        var data = new FormData();
        data.set("csrfmiddlewaretoken", form.querySelector('input[name="csrfmiddlewaretoken"]').value);
        data.set("composer", composerField.value);
        data.set("leaving", "1");
        navigator.sendBeacon(poller.getAttribute("hx-post"), data);
      };
      if (inlineBox) {
        writingField.value = "0";
        setWriting(inlineBox.open);
        inlineBox.addEventListener("toggle", function () {
          setWriting(inlineBox.open);
        });
      }
      // Sending ends the composer on the server too; closing the tab or navigating away
      // ends it here, and so does htmx replacing the conversation in the reading pane.
      window.addEventListener("pagehide", leave);
      form.addEventListener("htmx:beforeCleanupElement", function (event) {
        if (event.target === form) {
          leave();
        }
      });
    }

    // From changed: the previous address's signature makes way for the new one's, unless it
    // was edited (or removed) by hand.
    function same(a, b) {
      return a.replace(/\s+/g, " ").trim() === b.replace(/\s+/g, " ").trim();
    }
    if (mailboxSelect) {
      mailboxSelect.addEventListener("change", function () {
        var next = signatureOf(mailboxSelect.value);
        var previous = currentSignature;
        currentSignature = next;
        if (editor && !editor.hidden) {
          var block = editor.querySelector("[data-composer-signature]");
          if (block) {
            if (!same(block.innerText, previous)) {
              return; // edited by hand: left as it is
            }
            if (next) {
              textToEditor(block, next);
            } else {
              block.remove();
            }
          } else if (!previous && next) {
            var added = document.createElement("div");
            added.setAttribute("data-composer-signature", "");
            textToEditor(added, next);
            editor.appendChild(document.createElement("div")).appendChild(document.createElement("br"));
            editor.appendChild(added);
          } else {
            return;
          }
          changed();
          return;
        }
        if (textarea) {
          var value = textarea.value.replace(/\s+$/, "");
          if (previous && value.slice(-previous.length) === previous) {
            textarea.value = value.slice(0, -previous.length) + next + "\n";
          } else if (!previous && next) {
            textarea.value = value + "\n\n" + next + "\n";
          } else {
            return;
          }
          changed();
        }
      });
    }

    // A personal address on a shared conversation (docs/product.md §5.4).
    var select = form.querySelector("select[data-warn-personal]");
    var warning = form.querySelector("#personal-sender-warning");
    if (select && warning) {
      var update = function () {
        var option = select.options[select.selectedIndex];
        warning.hidden = !(option && option.hasAttribute("data-personal"));
      };
      select.addEventListener("change", update);
      update();
    }
  }

  function setupAll(root) {
    (root || document).querySelectorAll("form[data-composer]").forEach(setup);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      setupAll(document);
    });
  } else {
    setupAll(document);
  }
  // The inline composer arrives with the conversation, through htmx.
  document.addEventListener("htmx:load", function (event) {
    setupAll(event.target);
  });
  // Reply, Reply all or Forward (the toolbar's or a message's own) put the composer under the
  // thread: bring it into view and start writing there.
  document.addEventListener("htmx:afterSettle", function (event) {
    var slot = event.detail.target;
    if (!slot || slot.id !== "inline-reply-slot") {
      return;
    }
    var editor = slot.querySelector("[data-composer-editor]");
    slot.scrollIntoView({ block: "nearest" });
    if (editor) {
      editor.focus();
    }
  });
})();
