-- Forgetting the dead-letter changes (a truncation of the outbox) must delete every one, also those a reader folding
-- them (outboxMetrics) is re-adding as their sum: the fold deletes the rows and inserts their sum in one statement,
-- and a DELETE whose snapshot began before that statement committed skips the rows it deleted but never sees the sum
-- it added, which then outlived the truncation (the count said 10 dead letters of an empty outbox). The lock waits for
-- the fold to commit, and the DELETE after it takes a snapshot that holds the sum.
CREATE OR REPLACE FUNCTION webhook_outbox_forget_dead_letters() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  LOCK TABLE webhook_outbox_dead_letter_deltas IN EXCLUSIVE MODE;
  DELETE FROM webhook_outbox_dead_letter_deltas;
  RETURN NULL;
END
$$;
