/* Live updates (docs/product.md §7.14): one EventSource per page on the stream the server names
   in <body data-relay-events>, turned into the htmx refreshes the page already has. Events carry
   only ids; every refresh goes through the ordinary, access-checked views.

   While the stream is open, the periodic polls of elements marked data-relay-poll (the inbox
   list, the bell) are skipped; whenever it is not open (no Redis, the server said 204 or 429,
   the connection dropped) they run as before. Loaded as a file (CSP script-src 'self'). */
(function () {
  "use strict";

  var url = document.body.getAttribute("data-relay-events");
  if (!url || !window.EventSource || !window.htmx) {
    return; // no stream here: the page polls
  }

  var source = null;
  var retryTimer = null;
  var RETRY_AFTER_CLOSE_MS = 60000; // a refused or dropped stream is tried again this late

  function state(value) {
    document.body.setAttribute("data-relay-live", value);
  }

  function isOpen() {
    return source !== null && source.readyState === EventSource.OPEN;
  }

  function parse(event) {
    try {
      return JSON.parse(event.data || "{}");
    } catch (error) {
      return {};
    }
  }

  // A person typing in a conversation or a record must never lose it to a refresh, nor a reply
  // they have just unfolded under the thread and not yet typed in (the refresh folded it).
  function busy(element) {
    var active = document.activeElement;
    if (active && element.contains(active) && active.matches("input, textarea, select, [contenteditable]")) {
      return true;
    }
    return element.querySelector("form.dirty, [data-relay-busy], details.relay-inline-reply[open]") !== null;
  }

  // A refresh skipped because the element was busy, or answered after the person started on it,
  // is owed: asked again once the element is idle (looked at every second while it is on the
  // page), so the change shows as soon as the reply is folded or the note saved.
  var owed = [];
  var owedTimer = null;

  function owe(element) {
    if (owed.indexOf(element) === -1) {
      owed.push(element);
    }
    if (owedTimer === null) {
      owedTimer = window.setInterval(payOwed, 1000);
    }
  }

  function payOwed() {
    owed = owed.filter(function (element) {
      if (!document.body.contains(element)) {
        return false; // replaced meanwhile: what replaced it is new
      }
      if (busy(element)) {
        return true;
      }
      htmx.trigger(element, "relay:live");
      return false;
    });
    if (owed.length === 0) {
      window.clearInterval(owedTimer);
      owedTimer = null;
    }
  }

  // The busy test above runs when a refresh is asked for; its answer can land a moment later,
  // after the person unfolded the reply or started typing. Asked again here, as it is about to
  // be swapped in: a busy element keeps what the person has, and the refresh is owed.
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    var config = event.detail.requestConfig;
    var trigger = config && config.triggeringEvent;
    var element = event.detail.elt;
    if (!trigger || trigger.type !== "relay:live" || !element || !busy(element)) {
      return;
    }
    event.detail.shouldSwap = false;
    owe(element);
  });

  // A burst of events (mail stored, then filed a moment later) is one refresh of the list;
  // inbox.js runs one refresh at a time and asks again when one was asked for meanwhile.
  var listTimer = null;

  function refreshList() {
    if (listTimer === null) {
      listTimer = window.setTimeout(function () {
        listTimer = null;
        htmx.trigger(document.body, "inbox:changed");
      }, 50);
    }
  }

  function refreshConversation(threads) {
    var conversation = document.getElementById("conversation");
    if (!conversation) {
      return;
    }
    var thread = parseInt(conversation.getAttribute("data-relay-thread") || "", 10);
    if (threads === null || threads.indexOf(thread) !== -1) {
      if (busy(conversation)) {
        owe(conversation);
      } else {
        htmx.trigger(conversation, "relay:live");
      }
    }
  }

  // `timelineOnly`: a note changed, which shows on the timeline and not on the Email tab.
  function refreshRecord(records, timelineOnly) {
    document.querySelectorAll("[data-relay-record]").forEach(function (element) {
      var ref = element.getAttribute("data-relay-record");
      if (records !== null && records.indexOf(ref) === -1) {
        return;
      }
      if (element.id === "email-pane") {
        if (timelineOnly) {
          return;
        }
        // The Email tab loads the first time it is opened; until then there is nothing to refresh.
        if (element.childElementCount > 0 && !busy(element)) {
          htmx.ajax("GET", element.getAttribute("data-relay-url"), { target: element, swap: "innerHTML" });
        }
      } else if (busy(element)) {
        owe(element);
      } else {
        htmx.trigger(element, "relay:live");
      }
    });
  }

  function ringBell() {
    var bell = document.getElementById("relay-bell");
    if (bell) {
      htmx.trigger(bell, "relay:live");
    }
  }

  function everything() {
    refreshList();
    refreshConversation(null);
    refreshRecord(null);
    ringBell();
  }

  function count(kind) {
    // What arrived, for people debugging and for the browser tests (data-relay-events-seen).
    var seen = parseInt(document.body.getAttribute("data-relay-events-seen") || "0", 10) + 1;
    document.body.setAttribute("data-relay-events-seen", String(seen));
    document.body.setAttribute("data-relay-last-event", kind);
  }

  function connect() {
    retryTimer = null;
    state("connecting");
    source = new EventSource(url);
    source.addEventListener("open", function () {
      state("open");
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (204: no stream here now; 429: too many pages open) or broken: poll, and
        // try again later. (CONNECTING means the browser retries by itself.)
        state("closed");
        if (retryTimer === null) {
          retryTimer = window.setTimeout(connect, RETRY_AFTER_CLOSE_MS);
        }
      } else {
        state("connecting");
      }
    });
    source.addEventListener("mail", function () {
      count("mail");
      refreshList();
    });
    source.addEventListener("filed", function (event) {
      var data = parse(event);
      count("filed");
      refreshList();
      refreshConversation(data.threads || []);
      refreshRecord(data.records || []);
    });
    source.addEventListener("conversation", function (event) {
      var data = parse(event);
      count("conversation");
      refreshList();
      refreshConversation(data.threads || []);
    });
    // A note added to or deleted from a record: the pages showing that record reload its
    // timeline (inbox/live.py record_event); every other page ignores it.
    source.addEventListener("record", function (event) {
      var data = parse(event);
      count("record");
      refreshRecord(data.records || [], true);
    });
    source.addEventListener("notification", function () {
      count("notification");
      ringBell();
    });
    // Reconnected after a gap, or what this person may read changed: refresh what is shown.
    source.addEventListener("resync", function () {
      count("resync");
      everything();
    });
    source.addEventListener("access", function () {
      count("access");
      everything();
    });
    // Signed out or deactivated: no more stream on this page.
    source.addEventListener("end", function () {
      count("end");
      source.close();
      state("closed");
    });
  }

  // htmx fires htmx:trigger before a request caused by "load" or an event, never before a
  // periodic poll ("every"): a request without it, from a data-relay-poll element, while the
  // stream is open, is a poll the stream makes useless.
  document.body.addEventListener("htmx:trigger", function (event) {
    event.target.relayTriggered = true;
  });
  document.body.addEventListener("htmx:confirm", function (event) {
    var element = event.detail.elt;
    if (element.relayTriggered) {
      element.relayTriggered = false;
      return;
    }
    if (isOpen() && !event.detail.triggeringEvent && element.hasAttribute("data-relay-poll")) {
      event.preventDefault();
    }
  });

  window.addEventListener("pagehide", function () {
    if (source) {
      source.close(); // frees the server's slot at once instead of at the next heartbeat
    }
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted && source && source.readyState === EventSource.CLOSED && retryTimer === null) {
      connect(); // back from the back/forward cache: a fresh stream, then a resync
      everything();
    }
  });

  connect();
})();
