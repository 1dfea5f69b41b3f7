# Relay CRM: one image for web (gunicorn with uvicorn workers), worker and beat (celery). See docker-compose.yml.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RELAY_DATA_DIR=/data

WORKDIR /app
RUN groupadd --system relay \
    && useradd --system --gid relay --home-dir /app --no-create-home relay \
    && mkdir -p /data \
    && chown relay:relay /data

# Dependencies first, from pyproject.toml alone, so a code change does not reinstall them.
# Installed editable, so the code runs from /app and manage.py finds it there (templates and
# static files live in the apps: a plain `pip install .` carries them too).
COPY pyproject.toml README.md ./
RUN mkdir crm inbox connector demo \
    && touch crm/__init__.py inbox/__init__.py connector/__init__.py demo/__init__.py \
    && pip install -e .
COPY . .

# collectstatic needs settings to import; production settings refuse to start without secrets,
# so build-only placeholders stand in (none of them ends up in the image's environment).
RUN DJANGO_SECRET_KEY=collectstatic-only \
    RELAY_ENCRYPTION_KEYS=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
    RELAY_TOKEN_KEY=collectstatic-only \
    RELAY_PRODUCTION=true \
    DATABASE_URL=postgres://build@localhost/unused \
    REDIS_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput --verbosity 0

USER relay
EXPOSE 8000
# The web health check lives in docker-compose.yml: worker and beat run this image too.
# Uvicorn workers under gunicorn: ASGI, so the live-update stream (an async view, docs/product.md
# §7.14) holds its connections without a process or thread each.
# Every line in the app's log format, access lines included (crm/gunicorn.py, crm/settings.py).
CMD ["gunicorn", "crm.asgi:application", "--worker-class", "uvicorn_worker.UvicornWorker", "--bind", "0.0.0.0:8000", "--config", "python:crm.gunicorn"]
