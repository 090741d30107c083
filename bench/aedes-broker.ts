import { readFileSync } from 'node:fs';
import net from 'node:net';
import { parseArgs } from 'node:util';
import { Aedes, type AedesOptions, type AuthenticateError } from 'aedes';
import { parseMosquittoPasswords, verifyMosquittoPassword, type PasswordEntry } from './mosquitto-passwords.js';

/**
 * The aedes broker the bench runs beside Bulwark and Mosquitto (issue #9):
 * `node dist/bench/aedes-broker.js PORT [--password-file FILE]`. Bench code only; the broker never imports aedes.
 *
 * Settings follow the Mosquitto and Bulwark bench configurations where aedes has a counterpart: one plain TCP
 * listener on 127.0.0.1, TCP_NODELAY on every socket, aedes's own in-memory persistence (nothing written to disk),
 * anonymous clients unless a password file is given. aedes has no outbound in-flight window and no per-client
 * queue limit to set (it writes to the socket and waits for `drain`); its other limits keep their defaults, which
 * the bench's windows (8 publishers × 200 messages, 32 in flight each) stay well under.
 */

function refused(): AuthenticateError {
  // CONNACK 4 (bad user name or password), what Mosquitto answers a wrong password with.
  return Object.assign(new Error('bad user name or password'), { returnCode: 4 as const });
}

/** An aedes `authenticate` hook that checks a Mosquitto password file the way Mosquitto does. */
function passwordFileAuthenticator(users: Map<string, PasswordEntry>): NonNullable<AedesOptions['authenticate']> {
  return (_client, username, password, done) => {
    const entry = username === undefined ? undefined : users.get(username);
    if (!entry || password === undefined) {
      done(refused(), false);
      return;
    }
    void verifyMosquittoPassword(entry, password).then((ok) => (ok ? done(null, true) : done(refused(), false)));
  };
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    options: { 'password-file': { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  const port = Number(positionals[0]);
  if (positionals.length !== 1 || !Number.isInteger(port) || port < 1 || port > 65535)
    throw new Error('usage: aedes-broker.js PORT [--password-file FILE]');
  const passwordFile = values['password-file'];
  const options: AedesOptions = passwordFile
    ? { authenticate: passwordFileAuthenticator(parseMosquittoPasswords(readFileSync(passwordFile, 'utf8'))) }
    : {};
  const broker = await Aedes.createBroker(options);
  const server = net.createServer({ noDelay: true }, broker.handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  let stopping = false;
  process.on('SIGTERM', () => {
    if (stopping) return;
    stopping = true;
    server.close();
    broker.close(() => process.exit(0));
    // aedes closes its clients one by one; the bench only needs the process gone, so it does not wait long.
    setTimeout(() => process.exit(0), 2000).unref();
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`aedes-broker: ${(error as Error).message}\n`);
  process.exit(1);
});
