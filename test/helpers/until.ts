/**
 * Polls `probe` every 10 ms until it returns something other than `undefined` or `false`, and resolves with that;
 * rejects naming `what` once `timeoutMs` has passed. For waiting on what a real broker or socket does next without
 * a fixed sleep.
 */
export async function until<T>(probe: () => T | undefined | false, what: string, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = probe();
    if (found !== undefined && found !== false) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
