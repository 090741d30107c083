import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adminSocketPath, callAdmin } from '../../../src/admin/client.js';
import { startBroker } from '../../helpers/broker.js';

const DEFAULT_POLICY = resolve(import.meta.dirname, '../../../policies/default.policy.yaml');

describe('policy.reload on the control socket', () => {
  it('answers a refused policy with an error and its problems, and audits the command as a failure', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bw-policy-reload-'));
    const policyFile = join(dir, 'site.policy.yaml');
    writeFileSync(policyFile, readFileSync(DEFAULT_POLICY));
    const broker = await startBroker({ config: { authorization: { policy_files: [policyFile], watch: false } } });
    try {
      const socket = adminSocketPath(broker.server.options.config.data_dir);
      expect(await callAdmin(socket, 'policy.reload', {})).toMatchObject({ kind: 'ok', result: { ok: true } });

      writeFileSync(policyFile, 'version: 1\nrules:\n  - name: broken\n    allow: teleport\n');
      const refused = await callAdmin(socket, 'policy.reload', {});
      expect(refused).toMatchObject({ kind: 'error', code: 'rejected' });
      if (refused.kind !== 'error') throw new Error('unreachable');
      expect(refused.message).toMatch(/^policy refused, the running policy stays: .*site\.policy\.yaml:4:\d+: /);
      expect(refused.errors?.length).toBeGreaterThan(0);
      expect(refused.errors?.[0]).toMatch(/site\.policy\.yaml:4:\d+: /);

      const commands = broker.audit.events.filter(
        (e) => e.event.action === 'admin.command' && e.labels?.command === 'policy.reload',
      );
      expect(commands.map((e) => e.event.outcome)).toEqual(['success', 'failure']);
      expect(commands[1]!.labels).toMatchObject({ error_code: 'rejected' });
      expect(broker.audit.events.filter((e) => e.event.action === 'policy.reload_failed')).toHaveLength(1);
    } finally {
      await broker.stop();
    }
  });

  it('names the operator who asked in policy.reloaded and policy.reload_failed, as admin.command does', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bw-policy-reload-'));
    const policyFile = join(dir, 'site.policy.yaml');
    writeFileSync(policyFile, readFileSync(DEFAULT_POLICY));
    const broker = await startBroker({ config: { authorization: { policy_files: [policyFile], watch: false } } });
    try {
      const socket = adminSocketPath(broker.server.options.config.data_dir);
      writeFileSync(policyFile, `${readFileSync(DEFAULT_POLICY, 'utf8')}\n# reviewed\n`);
      expect(await callAdmin(socket, 'policy.reload', {})).toMatchObject({ kind: 'ok', result: { changed: true } });
      writeFileSync(policyFile, 'version: 1\nrules:\n  - name: broken\n    allow: teleport\n');
      expect(await callAdmin(socket, 'policy.reload', {})).toMatchObject({ kind: 'error', code: 'rejected' });

      const operator = `cli:${process.getuid?.() ?? 'unknown'}@unix-socket`;
      const commands = broker.audit.events.filter((e) => e.labels?.command === 'policy.reload');
      expect(commands.map((e) => e.actor)).toEqual([operator, operator]);
      const reloads = broker.audit.events.filter(
        (e) => e.event.action === 'policy.reloaded' || e.event.action === 'policy.reload_failed',
      );
      expect(reloads.map((e) => [e.event.action, e.actor, e.labels?.trigger])).toEqual([
        ['policy.reloaded', 'broker', 'startup'],
        ['policy.reloaded', operator, 'cli'],
        ['policy.reload_failed', operator, 'cli'],
      ]);
    } finally {
      await broker.stop();
    }
  });
});
