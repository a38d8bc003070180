# The hub's worker and API for docker-compose. The checkout is the app: deploy/ and schemas/ ship with it.
FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir -c requirements.lock -e . && useradd --system --home /var/lib/hub hub \
    && mkdir -p /var/lib/hub && chown hub /var/lib/hub
USER hub
ENV HUB_HOME=/var/lib/hub
