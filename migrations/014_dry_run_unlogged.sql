-- A dry run remembers the ids it would have created (backfill_dry_run_seen) so later batches of the same file count
-- them as duplicates. That is scratch state, rebuilt from the file when lost, so it need not cost WAL: both tables
-- are UNLOGGED. PostgreSQL empties every unlogged table after a crash (and a promoted standby or a restored backup
-- has them empty), always all of them at once: a run's coverage row and its ids are lost together, never one
-- without the other. A dry-run batch reads its run's coverage first; if it is missing or short of the batch's
-- start, the batch first re-reads the file up to its start and records the ids again (src/backfill/batch.ts).
-- Ids compare byte by byte (COLLATE "C"): equality is all the table is used for, and it skips the locale's rules.
ALTER TABLE backfill_dry_run_seen SET UNLOGGED;
ALTER TABLE backfill_dry_run_seen
  ALTER COLUMN run_key TYPE text COLLATE "C",
  ALTER COLUMN event_id TYPE text COLLATE "C";

-- How far into the file a dry run's ids are recorded: the end offset of the last batch (or rebuilt chunk) whose ids
-- committed. Updated in the same transaction as those ids.
CREATE UNLOGGED TABLE backfill_dry_run_coverage (
  run_key     text COLLATE "C" PRIMARY KEY,
  covered_to  bigint NOT NULL CHECK (covered_to >= 0)
);
