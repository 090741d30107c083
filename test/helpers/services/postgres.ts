import type { SqlServiceInfo, Started } from './types.js';

// Placeholder until the owning subsystem's tests provision this service.
export async function startPostgres(_workDir: string): Promise<Started<SqlServiceInfo>> {
  return { missing: 'postgres provisioning not implemented yet' };
}
