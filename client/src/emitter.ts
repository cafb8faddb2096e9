/**
 * A typed event emitter with any number of listeners per event. A listener
 * that throws (or returns a rejected promise) is caught and reported through
 * `onListenerError`, so user code can never break the library's own flow.
 */
export type Listener<T> = (payload: T) => unknown;

export class TypedEmitter<Events extends object> {
  readonly #listeners = new Map<keyof Events, Set<Listener<never>>>();
  readonly #onListenerError: (event: keyof Events, error: unknown) => void;

  constructor(onListenerError: (event: keyof Events, error: unknown) => void) {
    this.#onListenerError = onListenerError;
  }

  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    this.#listeners.get(event)?.delete(listener as Listener<never>);
  }

  listenerCount(event: keyof Events): number {
    return this.#listeners.get(event)?.size ?? 0;
  }

  /** Calls every listener of `event`; returns how many there were. */
  emit<K extends keyof Events>(event: K, payload: Events[K]): number {
    const set = this.#listeners.get(event);
    if (!set || set.size === 0) return 0;
    // A copy: listeners may add or remove listeners while we iterate.
    for (const listener of [...set]) {
      try {
        const result = (listener as Listener<Events[K]>)(payload);
        if (result && typeof (result as Promise<unknown>).then === 'function') {
          (result as Promise<unknown>).then(undefined, (error) => this.#onListenerError(event, error));
        }
      } catch (error) {
        this.#onListenerError(event, error);
      }
    }
    return set.size;
  }

  removeAll(): void {
    this.#listeners.clear();
  }
}
