# semon image: one image for every semon process (collector, api, simulator, CLI one-shots).
# The compose file picks the process with `command:`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Build from a copy of the source (see .dockerignore), then drop it: only the installed
# package stays in the image.
WORKDIR /src
COPY . /src
RUN pip install . && rm -rf /src

# Never run as root. /data is the one writable place (spool, registry CSV, SQLite if used);
# a named volume mounted there inherits this ownership on first use.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/semon semon \
    && mkdir -p /data \
    && chown semon:semon /data
USER semon
WORKDIR /data
ENV SEMON_DATA_DIR=/data/semon-data

CMD ["semon", "--help"]
