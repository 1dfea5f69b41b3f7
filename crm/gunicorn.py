"""gunicorn's settings for docker-compose's web service (`--config=python:crm.gunicorn`): the
lines of gunicorn's master process (starting, booting a worker, a worker timing out) in the
app's log format, as crm/settings.py LOGGING writes everything else. The workers load Relay,
whose LOGGING then takes over there, uvicorn's access lines included (crm/logs.py
UvicornFields; tests/crm/test_web_server_logs.py)."""

import os

_level = os.environ.get("LOG_LEVEL", "INFO")
_logger = {"handlers": ["console"], "level": _level, "propagate": False}

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "crm.logs.RedactSecretsFilter"}},
    "formatters": {
        "structured": {
            "()": "crm.logs.StructuredFormatter",
            "style": os.environ.get("LOG_FORMAT", "logfmt"),
        }
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "structured",
            "filters": ["redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": _level},
    "loggers": {"gunicorn.error": _logger, "gunicorn.access": _logger},
}
