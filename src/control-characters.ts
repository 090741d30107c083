/**
 * True when `text` holds a C0 control character (U+0000–U+001F) or DEL: in a name compared or stored elsewhere
 * (a directory DN, a certificate CN a proxy reports), `ali\0ce` could be read as `ali` by the next reader, and
 * padding or line breaks make two names look alike.
 */
export function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}
