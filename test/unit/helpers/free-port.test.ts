import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ephemeralPortRange, freePort } from '../../helpers/free-port.js';

describe('free ports for servers a test restarts', () => {
  it('come from below the ephemeral range, where no outgoing connection can take them, and are free', async () => {
    const range = ephemeralPortRange();
    const port = await freePort();
    if (range) expect(port).toBeLessThan(range.low);
    expect(port).toBeGreaterThanOrEqual(range ? 10_000 : 1);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
    await new Promise((resolve) => server.close(resolve));
  });
});
