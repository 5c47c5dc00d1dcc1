import { Presets, SingleBar } from 'cli-progress';
import type { Output } from './errors';

/** How far a run is, in the unit its total is known in: a backfill's file bytes, a replay's rows. */
export interface BarPosition {
  value: number;
  total: number;
  unit: 'bytes' | 'rows';
  /** Items processed so far, for the rate ("lines/s", "rows/s"). */
  processed: number;
  /** The counters as the plain lines print them. */
  counters: string;
}

/** A progress bar only where a person watches: stdout is a terminal, not a dumb one, and --plain was not given. */
export function wantsBar(plain: boolean): boolean {
  return !plain && process.stdout.isTTY === true && process.env.TERM !== 'dumb';
}

const MIB = 1024 * 1024;

function amount(n: number, unit: BarPosition['unit']): string {
  return unit === 'bytes' ? `${(n / MIB).toFixed(n < 10 * MIB ? 2 : 1)} MiB` : n.toLocaleString('en-US');
}

function clock(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/**
 * The terminal view of an attached run: bar, position against the total, counters, rate and ETA, drawn by
 * cli-progress on stdout. Rate and ETA are measured from when this client began watching, so a late
 * attach does not count work done before it as instantaneous.
 */
export class RunBar {
  private readonly bar: SingleBar;
  private started = false;
  private stopped = false;
  private complete = false;
  private first: { at: number; value: number; processed: number } | null = null;

  constructor(
    label: string,
    private readonly itemName: 'lines' | 'rows',
    private readonly stream: NodeJS.WriteStream = process.stdout,
  ) {
    this.bar = new SingleBar(
      {
        stream,
        // Drawn on every tick, not only when its text changes: a line said while it runs (see `around`) takes the
        // bar's place on the screen, and the bar comes back below it within a tick.
        forceRedraw: true,
        // Rate and ETA before the counters: on a narrow terminal the line is cut at its width, not wrapped.
        format: `[${label}] {bar} {percentage}% {position} | {rate} | ETA {eta_text} | {counters}`,
        barsize: 30,
        hideCursor: true,
        fps: 5,
        linewrap: false,
      },
      Presets.shades_classic,
    );
  }

  update(p: BarPosition): void {
    const now = Date.now();
    this.first ??= { at: now, value: p.value, processed: p.processed };
    const seconds = (now - this.first.at) / 1000;
    const rate = seconds > 0 ? (p.processed - this.first.processed) / seconds : 0;
    const valueRate = seconds > 0 ? (p.value - this.first.value) / seconds : 0;
    const payload = {
      position: `${amount(p.value, p.unit)}/${amount(p.total, p.unit)}`,
      counters: p.counters,
      rate: `${Math.round(rate).toLocaleString('en-US')} ${this.itemName}/s`,
      eta_text: valueRate > 0 ? clock((p.total - p.value) / valueRate) : '--',
    };
    // cli-progress needs a positive total; an empty run is complete once it is done.
    const total = Math.max(p.total, p.value);
    const [value, barTotal] = total === 0 ? [this.complete ? 1 : 0, 1] : [p.value, total];
    if (!this.started) {
      this.started = true;
      this.bar.start(barTotal, value, payload);
    } else {
      this.bar.setTotal(barTotal);
      this.bar.update(value, payload);
    }
  }

  /** Draws the run's final position and leaves the bar on its line; the done line follows below it. */
  finish(p: BarPosition): void {
    this.complete = true;
    this.update(p);
    this.bar.stop();
    this.stopped = true;
  }

  /** Stops drawing where it stands (detach, failure). */
  stop(): void {
    if (this.started) this.bar.stop();
    this.stopped = true;
  }

  /**
   * `out`, for lines said while the bar is drawn (a stall, an outage): the bar's line is cleared first, so the line
   * stands alone on the terminal rather than after the bar's text, and the bar is drawn again below it.
   */
  around(out: Output): Output {
    const clearBar = () => {
      if (this.started && !this.stopped) this.stream.write('\r\x1b[2K');
    };
    return {
      log: (line) => {
        clearBar();
        out.log(line);
      },
      err: (line) => {
        clearBar();
        out.err(line);
      },
    };
  }
}
