import { mkdtempSync, readdirSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  dataDirUnknownUserSecret,
  UNKNOWN_USER_SECRET_BYTES,
  UNKNOWN_USER_SECRET_FILE,
} from '../../../../authn/scram/unknown-user-secret.js';
import { canMountTmpfs, fillFilesystem, SmallFilesystems } from '../../../helpers/small-filesystem.js';

describe.skipIf(!canMountTmpfs())('the SCRAM unknown-user secret on a full disk', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bw-scram-secret-'));
  const filesystems = new SmallFilesystems();
  afterAll(() => {
    filesystems.unmountAll();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is refused with its file, the error code and what to do, leaves nothing behind, and is made once there is room', () => {
    const dataDir = filesystems.mount(dir, '64k')!;
    const filler = join(dataDir, 'filler');
    fillFilesystem(filler);
    expect(() => dataDirUnknownUserSecret(dataDir)).toThrow(
      expect.objectContaining({
        code: 'BULWARK_ERR_CONFIG_INVALID',
        message: `SCRAM unknown-user secret ${join(dataDir, UNKNOWN_USER_SECRET_FILE)}: cannot create (ENOSPC)`,
        hint: "free space on the data directory's file system, or set unknown_user_secret_file",
      }),
    );
    // No secret, and no part-written temporary file either.
    expect(readdirSync(dataDir)).toEqual(['filler']);
    unlinkSync(filler);
    expect(dataDirUnknownUserSecret(dataDir)).toHaveLength(UNKNOWN_USER_SECRET_BYTES);
    expect(statSync(join(dataDir, UNKNOWN_USER_SECRET_FILE)).mode & 0o777).toBe(0o600);
    expect(readdirSync(dataDir)).toEqual([UNKNOWN_USER_SECRET_FILE]);
  });
});
