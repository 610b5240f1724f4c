#!/usr/bin/env bash
# `make demo`: the example pipeline end to end on the local stack, then what it wrote.
# Expects the stack up and .venv installed (the make target does both first).
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${1:-config/example.yaml}
COUNT=${DEMO_EVENTS:-20000}
WEIR=.venv/bin/weir
PSQL=(psql "postgresql://weir:weir@127.0.0.1:${WEIR_PG_PORT:-15432}/weir" -v ON_ERROR_STOP=1 -q)
SCHEMA=$(.venv/bin/python -c "from processor.core.settings import load_settings as l; print(l('$CONFIG').postgres.schema_name)")

step() { printf '\n\033[1m[demo] %s\033[0m\n' "$*"; }

step "checking $CONFIG"
$WEIR check-config "$CONFIG"

step "creating the tables (weir migrate)"
$WEIR migrate --config "$CONFIG"

step "publishing $COUNT sample events, 1% of them deliberately broken (weir produce; --rich: orders with a shipping address, tags, an epoch time and a tenant header, which the config maps to columns)"
$WEIR produce --config "$CONFIG" --count "$COUNT" --invalid-ratio 0.01 --rich

AVRO_TOPIC=$(.venv/bin/python -c "from processor.core.settings import load_settings as l; print(next((t.name for t in l('$CONFIG').topics if t.format == 'avro'), ''))")
if [ -n "$AVRO_TOPIC" ]; then
    step "publishing $((COUNT / 4)) orders in Avro, framed with a schema id, to $AVRO_TOPIC (the schema is registered in the schema registry)"
    $WEIR produce --config "$CONFIG" --count "$((COUNT / 4))" --topic "$AVRO_TOPIC" --event-type order
fi

step "running weir until it has caught up (weir run --until-caught-up)"
WEIR_LOGGING__LEVEL=${WEIR_LOGGING__LEVEL:-info} $WEIR run --config "$CONFIG" --until-caught-up

step "rows per table"
"${PSQL[@]}" <<SQL
SELECT 'orders' AS "table", count(*) AS rows, min(event_time) AS first_event, max(event_time) AS last_event
  FROM ${SCHEMA}.orders
UNION ALL
SELECT 'order_items', count(*), min(event_time), max(event_time) FROM ${SCHEMA}.order_items
UNION ALL
SELECT 'page_views', count(*), min(event_time), max(event_time) FROM ${SCHEMA}.page_views;
SQL

step "orders by source topic and format: Avro and JSON land in the same typed table"
"${PSQL[@]}" -c "SELECT kafka_topic, count(*) AS rows, min(amount) AS min_amount, max(amount) AS max_amount FROM ${SCHEMA}.orders GROUP BY kafka_topic ORDER BY kafka_topic"

step "a taste of the orders table"
"${PSQL[@]}" -c "SELECT customer_id, seq, status, amount, currency, event_time, kafka_partition AS part, kafka_offset AS off FROM ${SCHEMA}.orders ORDER BY event_time DESC LIMIT 5"

step "mapped columns: a nested field, an epoch time, a header and a native array, each a typed column (docs/analysts.md)"
"${PSQL[@]}" -c "SELECT ship_country, ship_city, placed_at, tenant, tags FROM ${SCHEMA}.orders WHERE placed_at IS NOT NULL ORDER BY event_time DESC LIMIT 5"

step "line items as rows of order_items, written with their orders: the best-selling SKUs"
"${PSQL[@]}" -c "SELECT sku, sum(qty) AS units, sum(qty * price) AS revenue, count(DISTINCT event_id) AS orders FROM ${SCHEMA}.order_items GROUP BY sku ORDER BY units DESC LIMIT 5"

step "lag per partition (weir lag)"
$WEIR lag --config "$CONFIG"

step "orders per minute: a rollup Weir keeps in the same transaction as the rows"
"${PSQL[@]}" -c "SELECT minute, orders, amount FROM ${SCHEMA}.orders_per_minute ORDER BY minute DESC LIMIT 5"

step "dead letters by reason and place (the broken 1%: each kept with its original bytes and why)"
# weir dlq reads every place: the dead-letter topics (<topic>.dlq), the fallback table and
# the local spool (what neither took yet).
$WEIR dlq list --config "$CONFIG" --limit 1000000 --json | .venv/bin/python -c '
import collections, json, sys
counts = collections.Counter((d["reason"], d["stage"], d["place"]) for d in json.load(sys.stdin))
for (reason, stage, place), n in counts.most_common():
    print(f"{n:8}  {reason:<20} {stage:<10} in the {place}")'
$WEIR dlq list --config "$CONFIG" --limit 5

step "why page_views has fewer rows: the drop_bots transform filters crawler traffic on purpose"

step "done. The stack is still up: \`make status\`, \`make down\`. Run it again to add more events."
