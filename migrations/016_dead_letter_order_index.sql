-- gotong:no-transaction
-- A replay takes dead letters oldest first, ties broken by event_id (its dry run lists them in that order and its execute
-- must reset exactly those). A delivery pass dead-letters its events in one statement, so they share updated_at, and
-- a bulk change shares it across all its rows: on an index of updated_at alone every batch sorted each whole tie group
-- (100,000 rows dead-lettered together: every 20,000-row batch sorted all of them, half the replay's speed). With
-- event_id in the index, a batch reads its rows in order and stops at its limit. It replaces the index on updated_at,
-- whose queries it serves as well; it is written only when a row enters or leaves dead_letter, as that one was.
-- Built concurrently: writes to the outbox go on while it builds (see NO_TRANSACTION_MARKER in src/db/migrate.ts).
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_outbox_dead_letter_order_idx
  ON webhook_outbox (updated_at, event_id) WHERE status = 'dead_letter';

DROP INDEX CONCURRENTLY IF EXISTS webhook_outbox_dead_letter_idx;
