/**
 * Registered SMART Backend Services clients: their public keys (a JWKS or a JWKS URL),
 * pre-authorized scopes and fault plan.
 */
import { randomBytes } from 'node:crypto';
import type { JSONWebKeySet, JWK } from 'jose';
import { EHR_MODE_NAMES, EHR_MODES, type EhrMode, isEhrMode } from '../ehr-modes.js';
import { type FaultPlan, mergeFaultPlans, validateFaultPlan } from '../faults.js';
import { parseScope, type SmartScope, splitScopes } from './scopes.js';

export interface ClientRegistration {
  /** The client's public keys (SMART: "strongly discouraged", but supported). */
  readonly jwks?: JSONWebKeySet;
  /** Where the client's public JWKS is served; fetched when a key is needed (SMART: preferred). */
  readonly jwksUrl?: string;
  /** Space-separated scopes the client is pre-authorized for. @default 'system/*.rs' (which also covers `system/*.read`) */
  readonly scope?: string;
  /** Faults every request of this client meets. */
  readonly faults?: FaultPlan;
  /** Choose the client_id (re-registering an id replaces that client). @default a random id */
  readonly clientId?: string;
  /** The EHR this client meets (ehr-modes.ts); `faults` add to or override the mode's. */
  readonly ehr?: EhrMode;
}

export interface RegisteredClient {
  readonly clientId: string;
  readonly jwks?: JSONWebKeySet;
  readonly jwksUrl?: string;
  readonly scope: string;
  readonly scopes: readonly SmartScope[];
  readonly faults: FaultPlan;
}

export class RegistrationError extends Error {
  override readonly name = 'RegistrationError';
}

export const DEFAULT_CLIENT_SCOPE = 'system/*.rs';

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth'];

function validateJwks(jwks: unknown): JSONWebKeySet {
  if (typeof jwks !== 'object' || jwks === null || !Array.isArray((jwks as JSONWebKeySet).keys)) {
    throw new RegistrationError('jwks: expected a JWK Set ({"keys": [...]})');
  }
  const keys = (jwks as JSONWebKeySet).keys;
  if (keys.length === 0) throw new RegistrationError('jwks: the key set is empty');
  keys.forEach((key: JWK, i) => {
    if (typeof key !== 'object' || key === null)
      throw new RegistrationError(`jwks.keys[${i}]: expected a JWK`);
    if (typeof key.kid !== 'string' || key.kid === '') {
      throw new RegistrationError(`jwks.keys[${i}]: a kid is required (SMART Backend Services)`);
    }
    if (key.kty === 'RSA') {
      if (typeof key.n !== 'string' || typeof key.e !== 'string') {
        throw new RegistrationError(`jwks.keys[${i}]: an RSA key needs n and e`);
      }
    } else if (key.kty === 'EC') {
      if (typeof key.crv !== 'string' || typeof key.x !== 'string' || typeof key.y !== 'string') {
        throw new RegistrationError(`jwks.keys[${i}]: an EC key needs crv, x and y`);
      }
    } else {
      throw new RegistrationError(`jwks.keys[${i}]: kty must be RSA or EC, got ${JSON.stringify(key.kty)}`);
    }
    const leaked = PRIVATE_MEMBERS.filter((m) => m in key);
    if (leaked.length > 0) {
      throw new RegistrationError(
        `jwks.keys[${i}]: private key material (${leaked.join(', ')}) must not be registered`,
      );
    }
  });
  return { keys: keys.map((k) => ({ ...k })) };
}

function validateJwksUrl(url: unknown): string {
  if (typeof url !== 'string') throw new RegistrationError('jwks_url: expected a URL string');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new RegistrationError(`jwks_url: not a URL: ${url}`);
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new RegistrationError(`jwks_url: expected an http(s) URL, got ${url}`);
  }
  return parsed.href;
}

function ehrModeFaults(ehr: unknown): FaultPlan | undefined {
  if (ehr === undefined) return undefined;
  if (!isEhrMode(ehr)) throw new RegistrationError(`ehr: expected one of ${EHR_MODE_NAMES.join(', ')}`);
  return EHR_MODES[ehr].faults;
}

export class ClientRegistry {
  readonly #clients = new Map<string, RegisteredClient>();

  register(registration: ClientRegistration): RegisteredClient {
    const { jwks, jwksUrl, scope, faults, clientId, ehr } = registration;
    const allowed = new Set(['jwks', 'jwksUrl', 'scope', 'faults', 'clientId', 'ehr']);
    for (const key of Object.keys(registration)) {
      if (!allowed.has(key)) throw new RegistrationError(`unknown registration field "${key}"`);
    }
    const modeFaults = ehrModeFaults(ehr);
    if ((jwks === undefined) === (jwksUrl === undefined)) {
      throw new RegistrationError('exactly one of jwks and jwks_url is required');
    }
    const scopeText = scope ?? DEFAULT_CLIENT_SCOPE;
    if (typeof scopeText !== 'string')
      throw new RegistrationError('scope: expected a space-separated string');
    const scopeList = splitScopes(scopeText);
    if (scopeList.length === 0) throw new RegistrationError('scope: at least one scope is required');
    const scopes: SmartScope[] = [];
    for (const s of scopeList) {
      const parsed = parseScope(s);
      if (!parsed) throw new RegistrationError(`scope: "${s}" is not a SMART resource scope`);
      scopes.push(parsed);
    }
    if (clientId !== undefined && (typeof clientId !== 'string' || !/^[\w.~-]{1,128}$/.test(clientId))) {
      throw new RegistrationError('client_id: expected 1-128 URL-safe characters');
    }
    const client: RegisteredClient = {
      clientId: clientId ?? `client-${randomBytes(8).toString('hex')}`,
      ...(jwks !== undefined ? { jwks: validateJwks(jwks) } : {}),
      ...(jwksUrl !== undefined ? { jwksUrl: validateJwksUrl(jwksUrl) } : {}),
      scope: scopeList.join(' '),
      scopes,
      faults: mergeFaultPlans(modeFaults, validateFaultPlan(faults)),
    };
    this.#clients.set(client.clientId, client);
    return client;
  }

  get(clientId: string): RegisteredClient | undefined {
    return this.#clients.get(clientId);
  }
}

/** Turns an RFC 7591-style registration body (`jwks`, `jwks_url`/`jwks_uri`, `scope`, `faults`, `client_id`). */
export function registrationFromBody(body: unknown): ClientRegistration {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new RegistrationError('expected a JSON object');
  }
  const allowed = new Set(['jwks', 'jwks_url', 'jwks_uri', 'scope', 'faults', 'client_id', 'ehr']);
  const record = body as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!allowed.has(key)) throw new RegistrationError(`unknown registration field "${key}"`);
  }
  if (record.jwks_url !== undefined && record.jwks_uri !== undefined) {
    throw new RegistrationError('give jwks_url or jwks_uri, not both');
  }
  const jwksUrl = record.jwks_url ?? record.jwks_uri;
  return {
    ...(record.jwks !== undefined ? { jwks: record.jwks as JSONWebKeySet } : {}),
    ...(jwksUrl !== undefined ? { jwksUrl: jwksUrl as string } : {}),
    ...(record.scope !== undefined ? { scope: record.scope as string } : {}),
    ...(record.faults !== undefined ? { faults: record.faults as FaultPlan } : {}),
    ...(record.client_id !== undefined ? { clientId: record.client_id as string } : {}),
    ...(record.ehr !== undefined ? { ehr: record.ehr as EhrMode } : {}),
  };
}
