-- gotong:no-transaction
-- The runbook's verify and confirm steps poll where one run's events stand: those a backfill created
-- (source_run) and those a replay reset (last_replay_run), counted by status. Without these, each poll read
-- every waiting or dead-lettered row of the whole outbox to pick out one run's. Delivered rows, almost all
-- of a large outbox, are left out: the polls never count them (delivered = created - waiting - dead-lettered),
-- and a row that is delivered leaves the index, so it stays the size of what is still open.
-- Built concurrently: writes to the outbox go on while they build (see NO_TRANSACTION_MARKER in src/db/migrate.ts).
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_outbox_source_run_open_idx
  ON webhook_outbox (source_run, status)
  WHERE status <> 'delivered' AND source_run IS NOT NULL;

CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_outbox_replay_run_open_idx
  ON webhook_outbox (last_replay_run, status)
  WHERE status <> 'delivered' AND last_replay_run IS NOT NULL;
