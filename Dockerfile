# byline API (and, by default, its embedded background workers: removals, e-mail, webhooks).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/byline

# Dependencies in their own layer: rebuilt only when pyproject.toml changes. A placeholder
# package lets pip resolve and install them before the source is copied.
COPY pyproject.toml README.md ./
RUN mkdir app && touch app/__init__.py \
    && pip install . \
    && pip uninstall -y byline \
    && rm -rf app build *.egg-info

COPY alembic.ini ./
COPY migrations ./migrations
COPY app ./app
# Editable, so that `byline migrate` finds migrations/ beside app/.
RUN pip install --no-deps -e . \
    && useradd --system --uid 10001 --home-dir /srv/byline byline \
    && mkdir /data && chown byline:byline /data

USER byline
# Without BYLINE_SMTP_URL, e-mails are written as .eml files into the volume as well.
ENV BYLINE_DATABASE_URL=sqlite:////data/byline.db \
    BYLINE_MAIL_DIR=/data/mail
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]

CMD ["byline", "serve", "--host", "0.0.0.0", "--port", "8000"]
