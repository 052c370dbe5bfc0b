/**
 * Group commit for one statement. Requests that need the same statement at about the same time share one round
 * trip: while a batch is in flight the next items queue, and the queue goes as one statement when it returns. An
 * item arriving while nothing is in flight goes at the end of the current event-loop turn (with whatever else
 * arrived in that turn), so a lone request waits for nothing.
 *
 * An item never joins a batch already sent: what a statement reads was committed no earlier than the request
 * that asked for it arrived, so a change made through any instance applies to the very next request.
 *
 * `run` receives the items in arrival order and answers one result per item, in the same order. When it fails,
 * every item of that batch (and only of that batch) fails with its error.
 */
export class Batcher<Item, Result> {
  readonly #run: (items: readonly Item[]) => Promise<readonly Result[]>;
  readonly #maxBatch: number;
  #queue: Pending<Item, Result>[] = [];
  #inFlight = false;
  #scheduled = false;

  constructor(
    run: (items: readonly Item[]) => Promise<readonly Result[]>,
    options: { maxBatch?: number } = {},
  ) {
    this.#run = run;
    this.#maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
  }

  load(item: Item): Promise<Result> {
    return new Promise<Result>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (!this.#inFlight && !this.#scheduled) {
        this.#scheduled = true;
        setImmediate(this.#flush);
      }
    });
  }

  readonly #flush = (): void => {
    this.#scheduled = false;
    if (this.#inFlight || this.#queue.length === 0) return;
    const batch = this.#queue.length <= this.#maxBatch ? this.#queue : this.#queue.slice(0, this.#maxBatch);
    this.#queue = batch === this.#queue ? [] : this.#queue.slice(this.#maxBatch);
    this.#inFlight = true;
    const items = batch.map((pending) => pending.item);
    Promise.resolve()
      .then(() => this.#run(items))
      .then(
        (results) => {
          if (results.length !== batch.length) {
            const error = new Error(`a batch of ${batch.length} items answered ${results.length} results`);
            for (const pending of batch) pending.reject(error);
            return;
          }
          batch.forEach((pending, i) => {
            pending.resolve(results[i] as Result);
          });
        },
        (error: unknown) => {
          for (const pending of batch) pending.reject(error);
        },
      )
      .finally(() => {
        this.#inFlight = false;
        // Those who queued meanwhile have waited a round trip already: they go at once.
        this.#flush();
      });
  };
}

/** Items per statement at most: bounds a statement's parameters and a batch's latency. */
const DEFAULT_MAX_BATCH = 500;

interface Pending<Item, Result> {
  item: Item;
  resolve(result: Result): void;
  reject(error: unknown): void;
}
