-- The outbox is the queue: a row that is 'pending' with next_attempt_at <= now() is enqueued.
CREATE TYPE webhook_status AS ENUM ('pending', 'in_flight', 'delivered', 'retrying', 'dead_letter');

CREATE TABLE webhook_outbox (
  -- Capped so the primary-key btree entry can never exceed PostgreSQL's index row limit
  -- (backfill rejects longer ids per line before they reach this constraint).
  event_id          text PRIMARY KEY CHECK (octet_length(event_id) BETWEEN 1 AND 256),
  event_type        text NOT NULL,
  schema_version    text NOT NULL,
  request_id        text NOT NULL,
  actor_user_id     text NOT NULL,
  payload           jsonb NOT NULL,
  status            webhook_status NOT NULL DEFAULT 'pending',
  attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  max_attempts      integer NOT NULL CHECK (max_attempts >= 1),
  next_attempt_at   timestamptz,
  lease_owner       text,
  lease_expires_at  timestamptz,
  last_status_code  integer,
  last_error        text,
  last_attempt_at   timestamptz,
  delivered_at      timestamptz,
  replay_count      integer NOT NULL DEFAULT 0,
  last_replayed_at  timestamptz,
  last_replay_run   text,
  source_run        text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);

-- The dispatcher's claim query walks only rows that can become due.
CREATE INDEX webhook_outbox_due_idx ON webhook_outbox (next_attempt_at)
  WHERE status IN ('pending', 'retrying');
CREATE INDEX webhook_outbox_in_flight_idx ON webhook_outbox (lease_expires_at)
  WHERE status = 'in_flight';
CREATE INDEX webhook_outbox_status_idx ON webhook_outbox (status, updated_at);

CREATE TABLE webhook_delivery_attempts (
  id                    bigserial PRIMARY KEY,
  event_id              text NOT NULL REFERENCES webhook_outbox (event_id) ON DELETE CASCADE,
  attempt_number        integer NOT NULL,
  trigger               text NOT NULL CHECK (trigger IN ('scheduled', 'replay')),
  status_code           integer,
  duration_ms           integer NOT NULL,
  error                 text,
  request_body_sha256   text NOT NULL,
  response_body_sha256  text,
  response_excerpt      text,
  started_at            timestamptz NOT NULL,
  finished_at           timestamptz NOT NULL
);
CREATE INDEX webhook_delivery_attempts_event_idx ON webhook_delivery_attempts (event_id, attempt_number);

-- Exactly-once accounting: a batch's writes and this row commit together, so a retried
-- or re-executed batch finds its result here instead of redoing and recounting its work.
CREATE TABLE batch_ledger (
  run_key       text NOT NULL,
  batch_key     text NOT NULL,
  result        jsonb NOT NULL,
  committed_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_key, batch_key)
);

-- Lines a backfill could not take, for the operator to read back (`gotong-worker failed-lines`).
CREATE TABLE backfill_failed_lines (
  run_key      text NOT NULL,
  workflow_id  text NOT NULL,
  line_number  bigint NOT NULL,
  byte_offset  bigint NOT NULL,
  reason       text NOT NULL,
  excerpt      text NOT NULL,
  recorded_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_key, line_number)
);
CREATE INDEX backfill_failed_lines_workflow_idx ON backfill_failed_lines (workflow_id, recorded_at);

-- A dry run must dedupe across the whole file without touching the outbox and without
-- holding every id in memory: the ids it would have created live here until the run ends.
CREATE TABLE backfill_dry_run_seen (
  run_key   text NOT NULL,
  event_id  text NOT NULL,
  PRIMARY KEY (run_key, event_id)
);
