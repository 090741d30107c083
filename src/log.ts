import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Structured JSON logs on stderr. Redaction is a second line of defence: secrets travel as `Secret`, which
 * serialises as `[redacted]`, but any field named like a credential is censored too.
 */
export function createLogger(
  level: string = process.env.BULWARK_LOG_LEVEL ?? 'info',
  destination?: pino.DestinationStream,
): Logger {
  return pino(
    {
      level,
      base: { service: 'bulwark' },
      redact: {
        paths: [
          'password',
          '*.password',
          'token',
          '*.token',
          'secret',
          '*.secret',
          'authData',
          '*.authData',
          'key',
          '*.key',
        ],
        censor: '[redacted]',
      },
    },
    destination ?? pino.destination({ fd: 2, sync: false }),
  );
}

export const silentLogger: Logger = pino({ level: 'silent' });

/**
 * A logger like the broker's, at the given level, whose lines go nowhere: for work that must cost what logging costs.
 * Each line is built and handed to a sink that drops it; nothing is opened, so nothing is left to close.
 */
export function discardingLogger(level: string): Logger {
  return createLogger(level, { write: () => {} });
}
