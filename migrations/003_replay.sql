-- What each replay reset, one row per event and run: the state the event was in before it was made due again.
-- Only the primary key is indexed: the audit is written at replay speed and read rarely.
CREATE TABLE webhook_replay_audit (
  run_key               text NOT NULL,
  event_id              text NOT NULL,
  previous_status       webhook_status NOT NULL,
  previous_attempts     integer NOT NULL,
  previous_status_code  integer,
  previous_error        text,
  replayed_at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_key, event_id)
);

