import { isUtf8 } from 'node:buffer';

/** What makes a UTF-8 Encoded String field a malformed packet ([MQTT-1.5.4-1], [MQTT-1.5.4-2]). */
export type Utf8Problem = 'illFormed' | 'nullCharacter';

/**
 * Checks the bytes of a string field where they arrived. mqtt-packet and `Buffer#toString` decode ill-formed
 * UTF-8 leniently (as U+FFFD), so once decoded it can no longer be told from a U+FFFD the client really sent.
 * ASCII, most fields, is checked in place: `isUtf8` needs a Buffer view of the range.
 */
export function utf8Problem(data: Buffer, start: number, end: number): Utf8Problem | undefined {
  let ascii = true;
  for (let k = start; k < end; k++) {
    const byte = data[k]!;
    // In UTF-8 a zero byte is only ever U+0000 itself.
    if (byte === 0) return 'nullCharacter';
    if (byte >= 0x80) ascii = false;
  }
  return ascii || isUtf8(data.subarray(start, end)) ? undefined : 'illFormed';
}
