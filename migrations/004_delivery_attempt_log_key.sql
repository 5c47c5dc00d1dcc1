-- The attempt log is append-only history written a thousand rows a pass and read by event
-- (webhook_delivery_attempts_event_idx). Its surrogate key was never read, yet cost every row a
-- sequence step and a btree insert on the dispatcher's hot path.
ALTER TABLE webhook_delivery_attempts DROP COLUMN id;
