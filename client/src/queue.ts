/**
 * One FIFO queue for the operations that must not interleave (setting up the
 * session, joining and leaving rooms, adding and removing tracks, creating the
 * data producer): each task starts when the previous one has settled, and a
 * failed task does not stop the ones after it.
 */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();
  #pending = 0;

  /** Runs `task` after every task pushed before it; resolves with its result. */
  push<T>(task: () => Promise<T> | T): Promise<T> {
    this.#pending += 1;
    const run = this.#tail.then(task).finally(() => {
      this.#pending -= 1;
    });
    // The chain itself never rejects; the caller sees the task's own result.
    this.#tail = run.catch(() => undefined);
    return run;
  }

  /** Tasks queued or running. */
  get pending(): number {
    return this.#pending;
  }
}
