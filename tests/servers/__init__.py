"""Real servers for the test suite: Dovecot (IMAP), aiosmtpd (SMTP) and a fault-injecting TCP
proxy. Nothing here mocks a protocol; docs/reliability.md says which faults each stands for."""
