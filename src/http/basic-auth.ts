/**
 * The user part of HTTP Basic credentials, as OAuth encodes it: form-urlencoded, then base64 (RFC 6749 §2.3.1).
 * Undefined when the header is not Basic or does not decode. Only the claimed client id: never the secret.
 */
export function basicUser(header: string): string | undefined {
  if (!/^basic /i.test(header)) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return undefined;
  try {
    return decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}
