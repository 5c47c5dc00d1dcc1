-- The runbook's confirm step (and its baseline) compares the number of dead letters with a baseline, so the
-- figure must be exact. Counting them reads every dead letter's index entry and, for each one on a page
-- changed since the last vacuum, the row itself: 100-250 ms with 200,000 dead letters in a busy 5,000,000-row
-- outbox. Instead every statement that changes the outbox records how it changed the number of dead letters
-- (a statement-level trigger over its transition tables, one row per statement that changed it, none for the
-- others), and the count is the sum of those rows. The rows commit with the statement's transaction, so the
-- sum is exactly the count a reader's snapshot would see. outboxMetrics folds them into one row now and then.
CREATE TABLE webhook_outbox_dead_letter_deltas (delta bigint NOT NULL);

CREATE FUNCTION webhook_outbox_count_dead_letters() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  change bigint := 0;
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    SELECT change - count(*) INTO change FROM gone_rows WHERE status = 'dead_letter';
  END IF;
  IF TG_OP IN ('UPDATE', 'INSERT') THEN
    SELECT change + count(*) INTO change FROM new_rows WHERE status = 'dead_letter';
  END IF;
  IF change <> 0 THEN
    INSERT INTO webhook_outbox_dead_letter_deltas (delta) VALUES (change);
  END IF;
  RETURN NULL;
END
$$;

CREATE FUNCTION webhook_outbox_forget_dead_letters() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM webhook_outbox_dead_letter_deltas;
  RETURN NULL;
END
$$;

CREATE TRIGGER webhook_outbox_dead_letters_insert AFTER INSERT ON webhook_outbox
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION webhook_outbox_count_dead_letters();
CREATE TRIGGER webhook_outbox_dead_letters_update AFTER UPDATE ON webhook_outbox
  REFERENCING OLD TABLE AS gone_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION webhook_outbox_count_dead_letters();
CREATE TRIGGER webhook_outbox_dead_letters_delete AFTER DELETE ON webhook_outbox
  REFERENCING OLD TABLE AS gone_rows FOR EACH STATEMENT EXECUTE FUNCTION webhook_outbox_count_dead_letters();
CREATE TRIGGER webhook_outbox_dead_letters_truncate AFTER TRUNCATE ON webhook_outbox
  FOR EACH STATEMENT EXECUTE FUNCTION webhook_outbox_forget_dead_letters();

-- The triggers above hold the outbox against writes until this transaction commits, so this count and the
-- deltas that follow it cover every change exactly once.
INSERT INTO webhook_outbox_dead_letter_deltas (delta)
SELECT count(*) FROM webhook_outbox WHERE status = 'dead_letter';

-- A queue table: rows change status several times each, so vacuum it (and refresh its statistics, which the
-- backlog estimate in `stats` reads) after 2% of its rows changed rather than PostgreSQL's default 20%.
ALTER TABLE webhook_outbox SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
