-- The Connect phase's tables, made before the connector starts (schema.evolution=none).
-- @SCHEMA@ is the phase's own schema. The columns are Weir's orders and page_views
-- (`weir migrate` of config/example.yaml) but for two that the connector has no value
-- for: `raw` (the event's own bytes) and `event_time` (Weir's copy of occurred_at, by
-- which Weir partitions); these tables are partitioned by occurred_at itself. The Kafka
-- coordinates come from the InsertField transform; ingested_at is the transaction's start,
-- as in every phase. No orders_per_minute rollup: the connector has none.
CREATE SCHEMA @SCHEMA@;

CREATE TABLE @SCHEMA@.orders (
  event_id uuid NOT NULL,
  customer_id text NOT NULL,
  seq bigint NOT NULL,
  occurred_at timestamptz NOT NULL,
  order_id text NOT NULL,
  status text NOT NULL,
  amount numeric NOT NULL,
  currency text NOT NULL,
  items jsonb NOT NULL,
  channel text,
  kafka_topic text NOT NULL,
  kafka_partition integer NOT NULL,
  kafka_offset bigint NOT NULL,
  kafka_timestamp timestamptz NOT NULL,
  ingested_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE INDEX ON @SCHEMA@.orders (occurred_at);
CREATE INDEX ON @SCHEMA@.orders (customer_id, occurred_at);

CREATE TABLE @SCHEMA@.page_views (
  event_id uuid NOT NULL,
  user_id text NOT NULL,
  seq bigint NOT NULL,
  occurred_at timestamptz NOT NULL,
  session_id text NOT NULL,
  url text NOT NULL,
  referrer text,
  user_agent text,
  duration_ms bigint,
  kafka_topic text NOT NULL,
  kafka_partition integer NOT NULL,
  kafka_offset bigint NOT NULL,
  kafka_timestamp timestamptz NOT NULL,
  ingested_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE INDEX ON @SCHEMA@.page_views (occurred_at);

-- One partition per UTC day from yesterday to three days ahead (Weir's premake: 3), and
-- a default partition, as Weir makes them.
DO $$
DECLARE
  t text;
  d date;
BEGIN
  FOREACH t IN ARRAY ARRAY['orders', 'page_views'] LOOP
    FOR i IN -1..3 LOOP
      d := (now() AT TIME ZONE 'UTC')::date + i;
      EXECUTE format('CREATE TABLE @SCHEMA@.%I PARTITION OF @SCHEMA@.%I '
                     'FOR VALUES FROM (%L) TO (%L)', t || '_p' || to_char(d, 'YYYYMMDD'), t,
                     d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
    END LOOP;
    EXECUTE format('CREATE TABLE @SCHEMA@.%I PARTITION OF @SCHEMA@.%I DEFAULT',
                   t || '_default', t);
  END LOOP;
END $$;
