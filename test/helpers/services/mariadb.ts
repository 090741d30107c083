import type { SqlServiceInfo, Started } from './types.js';

// Placeholder until the owning subsystem's tests provision this service.
export async function startMariaDb(_workDir: string): Promise<Started<SqlServiceInfo>> {
  return { missing: 'mariadb provisioning not implemented yet' };
}
