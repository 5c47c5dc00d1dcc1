-- One row per run of the recovery runbook (its run key: stable across reset and continue-as-new). A new run on
-- the same file at the same content (procedure_key) continues the newest earlier run unless that one completed:
-- it carries that run's baseline, and its backfill resumes under the procedure's ledger key.
CREATE TABLE runbook_runs (
  run_key          text PRIMARY KEY,
  procedure_key    text NOT NULL,
  workflow_id      text NOT NULL,
  workflow_run_id  text NOT NULL,
  baseline         bigint NOT NULL CHECK (baseline >= 0),
  baseline_from    text NOT NULL CHECK (baseline_from IN ('measured', 'option', 'earlier-run')),
  continues        text REFERENCES runbook_runs (run_key),
  outcome          text NOT NULL DEFAULT 'running' CHECK (outcome IN ('running', 'completed', 'stopped', 'cancelled')),
  stopped_at       smallint,
  reason           text,
  started_at       timestamptz NOT NULL DEFAULT now(),
  finished_at      timestamptz
);
CREATE INDEX runbook_runs_procedure_idx ON runbook_runs (procedure_key, started_at);
