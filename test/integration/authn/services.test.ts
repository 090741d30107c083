import mysql from 'mysql2/promise';
import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';

describe('provisioned SQL services', () => {
  it('postgres accepts the test user with its password and refuses a wrong one', async (ctx) => {
    const info = inject('postgres');
    if ('missing' in info) return ctx.skip(info.missing);
    const c = new pg.Client({ ...info });
    await c.connect();
    const r = await c.query<{ u: string }>('SELECT current_user AS u');
    expect(r.rows[0]?.u).toBe('bulwark');
    await c.end();
    const bad = new pg.Client({ ...info, password: `${info.password}x` });
    await expect(bad.connect()).rejects.toThrow(/password authentication failed/);
  });

  it('mariadb accepts the test user with its password and refuses a wrong one', async (ctx) => {
    const info = inject('mariadb');
    if ('missing' in info) return ctx.skip(info.missing);
    const { pid: _pid, ...conn } = info;
    const c = await mysql.createConnection(conn);
    const [rows] = await c.query('SELECT CURRENT_USER() AS u');
    expect((rows as { u: string }[])[0]?.u).toBe('bulwark@127.0.0.1');
    await c.end();
    await expect(mysql.createConnection({ ...conn, password: `${info.password}x` })).rejects.toThrow(/Access denied/);
  });
});
