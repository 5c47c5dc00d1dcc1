/**
 * The project's Prometheus metric names (pure data: the dispatcher workflow counts auto-pauses itself).
 * Names follow Prometheus conventions: counters end in `_total`, durations are `_seconds`. Each is
 * described in README.md ("Metrics").
 */
export const METRICS = {
  backfillLines: 'gotong_backfill_lines_total',
  deliveries: 'gotong_deliveries_total',
  deliveryDuration: 'gotong_delivery_duration_seconds',
  deadLetters: 'gotong_dead_letters_total',
  replayResets: 'gotong_replay_resets_total',
  autoPauses: 'gotong_delivery_auto_pauses_total',
  outboxEvents: 'gotong_outbox_events',
  outboxDue: 'gotong_outbox_due_events',
  outboxOldestDueAge: 'gotong_outbox_oldest_due_age_seconds',
} as const;
