/**
 * Settles with `promise`, or rejects with the signal's reason as soon as it aborts, whichever comes first. The
 * work behind `promise` is not cancelled: a shared lookup still serves its other waiters, and a caller that gave up
 * stops waiting for it. Whatever the abandoned promise settles with later is handled here, so a backend failing
 * after its caller gave up can never become an unhandled rejection (which ends a Node process).
 */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => undefined);
    return Promise.reject(abortReason(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortReason(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

export function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('aborted');
}
