/**
 * A seeded generator of integers in [0, n): the same seed gives the same sequence, so a randomised test that fails
 * names inputs that fail again on a rerun.
 */
export function seededInts(seed: number): (n: number) => number {
  let state = seed >>> 0;
  return (n) => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return (state >>> 8) % n;
  };
}
