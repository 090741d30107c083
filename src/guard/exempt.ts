import { cidrContains, parseCidr, type Cidr, type IpAddress } from './ip.js';

/** `exempt_networks`: addresses and CIDRs the detectors never count on the address and network dimensions. */
export function compileExemptions(texts: readonly string[]): (ip: IpAddress | undefined) => boolean {
  const cidrs: Cidr[] = [];
  for (const text of texts) {
    const cidr = parseCidr(text.includes('/') ? text : `${text}/${text.includes(':') ? 128 : 32}`);
    if (cidr !== undefined) cidrs.push(cidr);
  }
  if (cidrs.length === 0) return () => false;
  return (ip) => ip !== undefined && cidrs.some((cidr) => cidrContains(cidr, ip));
}
