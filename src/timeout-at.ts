/**
 * Node runs a timeout longer than 2^31 - 1 ms (24.8 days) after 1 ms instead: deadlines further off (a 30-day
 * session expiry, will delay or credential `exp`) are waited for in steps of at most this long.
 */
export const LONGEST_TIMER_MS = 2_147_000_000;

/**
 * Calls `fire` at `dueAt` (epoch ms), however far off, on an unref'd timer. `hold` is given the timer of each step,
 * so that its owner can clear whichever one is pending.
 */
export function setTimeoutAt(dueAt: number, fire: () => void, hold: (timer: NodeJS.Timeout) => void): void {
  const wait = Math.max(0, dueAt - Date.now());
  const timer = setTimeout(
    () => (wait > LONGEST_TIMER_MS ? setTimeoutAt(dueAt, fire, hold) : fire()),
    Math.min(wait, LONGEST_TIMER_MS),
  );
  timer.unref();
  hold(timer);
}
