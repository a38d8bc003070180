#!/bin/sh
# Run once by the timescaledb image on an empty data directory (docker-compose.yml): Grafana's
# login, a member of hub_readonly, which the hub's migration 0009 grants SELECT on the management
# tables and views only (no tokens, signing keys or receivers).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v password="$GRAFANA_DB_PASSWORD" <<'SQL'
CREATE ROLE hub_readonly NOLOGIN;
CREATE ROLE grafana LOGIN PASSWORD :'password' IN ROLE hub_readonly;
SQL
