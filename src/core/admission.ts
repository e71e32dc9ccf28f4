// Admission control: a try-acquire counter on in-flight requests. A full server answers at once
// (RESOURCE_EXHAUSTED / 429) instead of queueing without bound; callers retry with backoff.
import { MechRewardError } from '../errors.js';

export class Admission {
  private inflight = 0;

  constructor(private readonly maxInflight: number) {}

  get current(): number {
    return this.inflight;
  }

  /** Returns a release function, or throws MR_ERR_OVERLOADED when `maxInflight` requests are running. */
  tryAcquire(): () => void {
    if (this.inflight >= this.maxInflight) {
      throw new MechRewardError('MR_ERR_OVERLOADED', `server is at its limit of ${this.maxInflight} in-flight requests; retry with backoff`);
    }
    this.inflight++;
    let released = false;
    return () => {
      if (!released) {
        released = true;
        this.inflight--;
      }
    };
  }
}
