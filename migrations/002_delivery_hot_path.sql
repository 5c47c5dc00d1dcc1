-- The attempt log is append-only history written a thousand rows at a time by every dispatcher pass;
-- a foreign-key check per row costs more than it protects (outbox rows are never deleted by this tool).
ALTER TABLE webhook_delivery_attempts DROP CONSTRAINT webhook_delivery_attempts_event_id_fkey;

-- Every claim and every outcome changes status and updated_at; an index on (status, updated_at) made each
-- of those writes touch one more btree. Only dead letters are looked up by status and time (replay), so
-- they get an index of their own, written only when a row enters or leaves dead_letter.
DROP INDEX webhook_outbox_status_idx;
CREATE INDEX webhook_outbox_dead_letter_idx ON webhook_outbox (updated_at) WHERE status = 'dead_letter';
