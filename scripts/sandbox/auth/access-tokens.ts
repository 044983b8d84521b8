/** Opaque bearer tokens: random strings the sandbox remembers, never JWTs a client could read. */
import { randomBytes } from 'node:crypto';
import { parseScope, type SmartScope } from './scopes.js';

export interface AccessGrant {
  readonly clientId: string;
  readonly scopes: readonly SmartScope[];
  readonly expiresAtMs: number;
}

export type TokenLookup =
  | { readonly ok: true; readonly grant: AccessGrant }
  | { readonly ok: false; readonly reason: 'unknown' | 'expired' };

export class AccessTokenStore {
  readonly #tokens = new Map<string, AccessGrant>();
  /** Every credential a client ever presented or received, so leak tests know what to search for. */
  readonly #secretsByClient = new Map<string, string[]>();

  remember(clientId: string, secret: string): void {
    const list = this.#secretsByClient.get(clientId) ?? [];
    list.push(secret);
    this.#secretsByClient.set(clientId, list);
  }

  secretsOf(clientId: string): readonly string[] {
    return [...(this.#secretsByClient.get(clientId) ?? [])];
  }

  issue(clientId: string, scopes: readonly string[], lifetimeSeconds: number, nowMs: number): string {
    if (this.#tokens.size > 10_000) {
      for (const [token, grant] of this.#tokens) if (grant.expiresAtMs <= nowMs) this.#tokens.delete(token);
    }
    const token = randomBytes(32).toString('base64url');
    this.remember(clientId, token);
    this.#tokens.set(token, {
      clientId,
      scopes: scopes.map(parseScope).filter((s): s is SmartScope => s !== undefined),
      expiresAtMs: nowMs + lifetimeSeconds * 1000,
    });
    return token;
  }

  lookup(token: string, nowMs: number): TokenLookup {
    const grant = this.#tokens.get(token);
    if (!grant) return { ok: false, reason: 'unknown' };
    if (grant.expiresAtMs <= nowMs) return { ok: false, reason: 'expired' };
    return { ok: true, grant };
  }
}
