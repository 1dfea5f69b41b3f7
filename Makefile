# Relay CRM. The two commands the README starts with; the work is in bin/ so that it can be read
# (and run) without make.

.PHONY: run test

# Web server, Celery worker and beat on embedded defaults, with demo data. Ctrl-C stops all.
run:
	@bin/run

# Installs what the suite needs, then lint, checks and the whole suite on PostgreSQL. .ci/run.
test:
	@bin/test
