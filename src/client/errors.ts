/** A mistake in how the command was called: exit code 2, nothing started. */
export class UsageError extends Error {}

/** The command was fine but the work could not be done or did not finish: exit code 1. */
export class RunError extends Error {}

/** A failure the command has already reported in its own format (the worker's log): exit code 1, nothing more printed. */
export class AlreadyReported extends RunError {
  constructor() {
    super('');
  }
}

/** The operator detached (Ctrl-C) from a run that goes on: exit code 130, as for any interrupted command. */
export class Detached extends Error {}

export interface Output {
  log(line: string): void;
  err(line: string): void;
}

export const consoleOutput: Output = {
  log: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};
