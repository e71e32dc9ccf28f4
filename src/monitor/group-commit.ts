// Group commit: writes submitted within a few milliseconds (and while the previous group is being written) go
// to the database as one transaction, and each submitter's promise settles when that transaction has
// committed or failed. The request path pays one short wait instead of one transaction per request, and
// nothing is acknowledged before it is durable.
export class GroupCommit<T> {
  private pending: Array<{ item: T; resolve: () => void; reject: (err: unknown) => void }> = [];
  private timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  private writing: Promise<void> | undefined;

  constructor(
    /** How long the first write of a group waits for company (0: until the current turn of the event loop ends). */
    private readonly delayMs: number,
    private readonly write: (items: T[]) => Promise<void>,
  ) {}

  submit(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      this.schedule();
    });
  }

  /** Writes everything submitted so far; resolves when nothing is pending or being written. */
  async drain(): Promise<void> {
    this.cancelTimer();
    while (this.writing || this.pending.length > 0) {
      if (this.writing) await this.writing;
      else await this.flush();
    }
  }

  private schedule(): void {
    if (this.timer || this.writing) return; // the running write schedules the next group when it ends
    const go = (): void => {
      this.timer = undefined;
      void this.flush();
    };
    this.timer = this.delayMs > 0 ? setTimeout(go, this.delayMs) : setImmediate(go);
  }

  private cancelTimer(): void {
    if (this.timer) {
      clearTimeout(this.timer as NodeJS.Timeout);
      clearImmediate(this.timer as NodeJS.Immediate);
      this.timer = undefined;
    }
  }

  private async flush(): Promise<void> {
    const group = this.pending;
    this.pending = [];
    if (group.length === 0) return;
    this.writing = this.write(group.map((g) => g.item)).then(
      () => group.forEach((g) => g.resolve()),
      (err: unknown) => group.forEach((g) => g.reject(err)),
    );
    await this.writing;
    this.writing = undefined;
    if (this.pending.length > 0) this.schedule();
  }
}
