/**
 * Runs a drain in a later pass of the event loop, once however often it is asked for before it
 * runs (the start gate's and the read scheduler's queues). `hops` is how many setImmediates away:
 * from the poll phase a single one still runs in this pass (its check phase), so two reach the
 * next pass; from the check phase (a drain asking for the next), one does.
 */
export class NextPass {
  #pending = false;
  readonly #run = () => {
    this.#pending = false;
    this.drain();
  };
  readonly #hop = () => setImmediate(this.#run);

  constructor(private readonly drain: () => void) {}

  schedule(hops: 1 | 2): void {
    if (this.#pending) return;
    this.#pending = true;
    setImmediate(hops === 2 ? this.#hop : this.#run);
  }
}
