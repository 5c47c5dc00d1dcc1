-- The rows a replay dry run counted, kept when its caller asks (the runbook's step 4), so that the execute the gate
-- approved (step 5) resets those rows and no other. A bound on updated_at alone let in a row dead-lettered by a
-- transaction that began before the dry run and committed after it (updated_at is the time a transaction began), and,
-- when the limit cut through rows of one time, an uncounted row of that time in place of a counted one gone meanwhile.
-- At most the dry run's limit of rows per run; a dry run run again (a retried activity, a reset run) replaces its own,
-- and a runbook's rows are deleted when it finishes (completed, stopped or cancelled); rows nothing deleted (a
-- terminated runbook's, a dry run started by hand with keepSelection) go when the next dry run keeps, 30 days on.
CREATE TABLE webhook_replay_selection (
  run_key text NOT NULL,
  event_id text NOT NULL,
  kept_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_key, event_id)
);
