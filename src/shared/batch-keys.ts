/**
 * Ledger keys of batches, shared by the activities that record them and the workflows that settle them
 * after a cancellation. Pure data only: part of the workflow bundle.
 */
export const backfillBatchKey = (startOffset: number): string => `offset:${startOffset}`;
export const replayBatchKey = (batchNumber: number): string => `replay:${batchNumber}`;
