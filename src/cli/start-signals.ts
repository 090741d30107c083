/**
 * SIGHUP's default action ends the process, and loading the broker's modules, the warm-up and the store replay
 * take seconds on a loaded machine: a reload asked for then (a configuration tool that signals after writing the
 * file) would kill a broker that is starting. Until the broker is ready a SIGHUP is counted here, and the broker
 * reloads once when it is: the start may have read the file before the change the signal announces.
 *
 * Process-wide, as signals are: `main.ts` installs it before it loads the `start` command's modules.
 */
let pending = 0;

function noteHangup(): void {
  pending += 1;
  if (pending === 1) console.error('bulwark: SIGHUP during start-up; reloading once the broker is ready');
}

/** Starts counting SIGHUPs instead of dying of them. Idempotent. */
export function deferHangups(): void {
  if (!process.listeners('SIGHUP').includes(noteHangup)) process.on('SIGHUP', noteHangup);
}

/**
 * Stops counting and returns how many SIGHUPs arrived. Install the real handler first: with no listener left, the
 * default action (exit) would be back.
 */
export function takeDeferredHangups(): number {
  process.off('SIGHUP', noteHangup);
  const count = pending;
  pending = 0;
  return count;
}
