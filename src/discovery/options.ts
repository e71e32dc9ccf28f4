// What `mechreward pack build` is asked to do: the methods and the options, shared by build.ts and
// sae-methods.ts (kept apart so neither imports the other's module).
export const METHODS = ['direction', 'probe', 'effect-size', 'reasonscore'] as const;
export type Method = (typeof METHODS)[number];

export interface BuildOptions {
  readonly method: Method;
  /** Discovery data file (held-out format). */
  readonly data: string;
  /** Held-out data file for gate g1 (undefined: no gate). */
  readonly heldout?: string;
  readonly out: string;
  readonly name: string;
  readonly model: string;
  readonly layer?: number;
  /** SAE folder, for effect-size and reasonscore. */
  readonly sae?: string;
  readonly l2: number;
  /** Features per sign (effect-size) or in total (reasonscore). */
  readonly top: number;
  readonly force: boolean;
}
