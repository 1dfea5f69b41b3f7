"""Services write inbox state, one module a subject: mailboxes, messages (read, flag, move,
delete), qualify (filing by hand), composing, the outbox, triage."""
