import type { LdapServiceInfo, Started } from './types.js';

// Placeholder until the owning subsystem's tests provision this service.
export async function startSlapd(_workDir: string): Promise<Started<LdapServiceInfo>> {
  return { missing: 'slapd provisioning not implemented yet' };
}
