/**
 * Links that carry their own authorization: S3-style presigned URLs for the second origin, and
 * expiring file links on the main origin. HMAC over the path and expiry with a per-sandbox secret.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export class LinkSigner {
  readonly #secret = randomBytes(32);

  #sign(text: string): string {
    return createHmac('sha256', this.#secret).update(text).digest('hex');
  }

  #equal(a: string, b: string): boolean {
    const x = Buffer.from(a);
    const y = Buffer.from(b);
    return x.length === y.length && timingSafeEqual(x, y);
  }

  /** An S3 presigned-looking URL (`X-Amz-Signature=...`) valid for `expiresSeconds`. */
  presign(origin: string, path: string, nowMs: number, expiresSeconds: number): string {
    const amzDate = new Date(nowMs)
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d+Z$/, 'Z');
    const query = new URLSearchParams({
      'X-Amz-Algorithm': 'AWS4-HMAC-SHA256',
      'X-Amz-Credential': `SANDBOXACCESSKEY/${amzDate.slice(0, 8)}/us-east-1/s3/aws4_request`,
      'X-Amz-Date': amzDate,
      'X-Amz-Expires': String(expiresSeconds),
      'X-Amz-SignedHeaders': 'host',
    });
    query.set('X-Amz-Signature', this.#sign(`${path}\n${amzDate}\n${expiresSeconds}`));
    return `${origin}${path}?${query}`;
  }

  /** 'valid', or what S3 would say about the presigned query. */
  checkPresigned(
    path: string,
    query: URLSearchParams,
    nowMs: number,
  ): 'valid' | 'missing' | 'bad-signature' | 'expired' {
    const signature = query.get('X-Amz-Signature');
    const amzDate = query.get('X-Amz-Date');
    const expires = query.get('X-Amz-Expires');
    if (!signature || !amzDate || !expires) return 'missing';
    if (!this.#equal(signature, this.#sign(`${path}\n${amzDate}\n${expires}`))) return 'bad-signature';
    const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
    if (!m) return 'bad-signature';
    const signedAt = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
    return nowMs > signedAt + Number(expires) * 1000 ? 'expired' : 'valid';
  }

  /** A main-origin file link that stops working at `expiresAtMs`. */
  expiringLink(origin: string, path: string, expiresAtMs: number): string {
    const query = new URLSearchParams({ expires: String(expiresAtMs) });
    query.set('signature', this.#sign(`${path}\n${expiresAtMs}`));
    return `${origin}${path}?${query}`;
  }

  checkExpiringLink(
    path: string,
    query: URLSearchParams,
    nowMs: number,
  ): 'valid' | 'missing' | 'bad-signature' | 'expired' {
    const expires = query.get('expires');
    const signature = query.get('signature');
    if (!expires || !signature) return 'missing';
    if (!this.#equal(signature, this.#sign(`${path}\n${expires}`))) return 'bad-signature';
    return nowMs >= Number(expires) ? 'expired' : 'valid';
  }
}
