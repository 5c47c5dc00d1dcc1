import assert from 'node:assert/strict';
import { runAsOne, type GroupMember } from '../src/worker';

/** A worker stand-in: runs until shut down, or until the test makes it fail. */
class StandIn implements GroupMember {
  readonly options: { taskQueue: string };
  private state = 'INITIALIZED';
  private stop!: () => void;
  private fail!: (err: Error) => void;
  shutdowns = 0;

  constructor(taskQueue: string) {
    this.options = { taskQueue };
  }

  run(): Promise<void> {
    this.state = 'RUNNING';
    return new Promise<void>((resolve, reject) => {
      this.stop = () => {
        this.state = 'STOPPED';
        resolve();
      };
      this.fail = (err) => {
        this.state = 'FAILED';
        reject(err);
      };
    });
  }

  getState(): string {
    return this.state;
  }

  shutdown(): void {
    if (this.state !== 'RUNNING') throw new Error('Not running');
    this.shutdowns += 1;
    this.stop();
  }

  failWith(err: Error): void {
    this.fail(err);
  }
}

describe("runAsOne: a process's workers stop together", () => {
  it('when one worker fails, the others are shut down and the failure names the failed queue', async () => {
    const workflows = new StandIn('webhooks');
    const delivery = new StandIn('webhooks-delivery');
    const running = runAsOne([workflows, delivery], (w) => w.run());
    delivery.failWith(new Error('Unexpected error while polling'));
    await assert.rejects(running, (err: Error) => {
      assert.match(err.message, /the worker on task queue 'webhooks-delivery' stopped: Unexpected error while polling; stopping this process's other workers/);
      assert.equal((err.cause as Error).message, 'Unexpected error while polling');
      return true;
    });
    assert.equal(workflows.shutdowns, 1);
    assert.equal(workflows.getState(), 'STOPPED');
  });

  it('a second failure while the first is handled does not shut anything down twice', async () => {
    const a = new StandIn('a');
    const b = new StandIn('b');
    const c = new StandIn('c');
    const running = runAsOne([a, b, c], (w) => w.run());
    a.failWith(new Error('first'));
    b.failWith(new Error('second'));
    await assert.rejects(running, /task queue 'a' stopped: first/);
    assert.equal(c.shutdowns, 1);
    assert.equal(b.shutdowns, 0);
  });

  it("the caller's own error, which runUntil rethrows from every worker, passes through unwrapped and shuts nothing down", async () => {
    const a = new StandIn('a');
    const b = new StandIn('b');
    const own = new Error('assertion in the test body');
    const running = runAsOne([a, b], (w) => w.run(), (err) => err === own);
    a.failWith(own);
    b.shutdown();
    await assert.rejects(running, (err) => err === own);
    assert.equal(b.shutdowns, 1);
  });

  it('workers shut down normally resolve the group with each result', async () => {
    const a = new StandIn('a');
    const b = new StandIn('b');
    const running = runAsOne([a, b], (w) => w.run().then(() => w.options.taskQueue));
    a.shutdown();
    b.shutdown();
    assert.deepEqual(await running, ['a', 'b']);
  });
});
