import type { ExportSettings } from '../config.js';
import { AccessTokenRejectedError, ConfigurationError, ExportRequestRejectedError } from '../errors.js';
import { oneLine, summarizeOperationOutcome } from './operation-outcome.js';
import { parseRetryAfter } from './retry-after.js';
import { checkFetchableUrl } from './urls.js';

/** What one execution asks the server for: the source's defaults, overridden by the execution input. */
export interface ExportRequest {
  readonly since?: string;
  readonly until?: string;
  readonly types: readonly string[];
  readonly typeFilters: readonly string[];
  readonly elements: readonly string[];
  readonly level: 'system' | 'patient' | 'group';
  readonly groupId?: string;
  /** `patient` references (POST only, per the IG); absent = the source's `export.patient`. */
  readonly patients?: readonly string[];
  /** `includeAssociatedData` values; absent = the source's `export.includeAssociatedData`. */
  readonly includeAssociatedData?: readonly string[];
  /** `organizeOutputBy`: files hold a patient's resources of several types (IG 2.0, "Bulk Data Output File Organization"). */
  readonly organizeOutputBy?: 'Patient';
  /** `allowPartialManifests`: a 202 may carry the files ready so far (IG 2.0, "Response - In-Progress Status"). */
  readonly allowPartialManifests?: boolean;
}

export interface HttpRequestSpec {
  readonly method: 'GET' | 'POST' | 'DELETE';
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly body?: string;
}

/**
 * Builds the kick-off request (IG "Bulk Data Kick-off Request"). The bearer
 * token is added by the HTTP adapter, so this value is safe to log.
 */
export function buildKickOffRequest(
  fhirBaseUrl: string,
  settings: Pick<ExportSettings, 'method' | 'outputFormat' | 'typeParameterStyle'> & {
    readonly includeAssociatedData?: readonly string[];
    readonly patient?: readonly string[];
  },
  request: ExportRequest,
): HttpRequestSpec {
  // An execution's own list (a backfill, a chunk) replaces the source's; an empty one clears it.
  const patients = request.patients ?? settings.patient ?? [];
  const associatedData = request.includeAssociatedData ?? settings.includeAssociatedData ?? [];
  const base = fhirBaseUrl.replace(/\/+$/, '');
  const path =
    request.level === 'group'
      ? `/Group/${encodeURIComponent(requireGroupId(request))}/$export`
      : request.level === 'patient'
        ? '/Patient/$export'
        : '/$export';
  const headers = { Accept: 'application/fhir+json', Prefer: 'respond-async' };
  if (patients.length > 0 && settings.method !== 'POST') {
    throw new ConfigurationError(
      'the patient parameter needs export.method POST (the IG defines it for POST only)',
    );
  }
  if (patients.length > 0 && request.level === 'system') {
    throw new ConfigurationError(
      'the patient parameter applies to Patient or Group level exports, not system level',
    );
  }

  if (settings.method === 'POST') {
    const parameter: { name: string; [value: string]: unknown }[] = [
      { name: '_outputFormat', valueString: settings.outputFormat },
    ];
    if (request.since) parameter.push({ name: '_since', valueInstant: request.since });
    if (request.until) parameter.push({ name: '_until', valueInstant: request.until });
    for (const type of request.types) parameter.push({ name: '_type', valueString: type });
    for (const element of request.elements) parameter.push({ name: '_elements', valueString: element });
    for (const filter of request.typeFilters) parameter.push({ name: '_typeFilter', valueString: filter });
    for (const patient of patients) {
      parameter.push({ name: 'patient', valueReference: { reference: patient } });
    }
    // The IG's OperationDefinition types includeAssociatedData as code: one parameter per value.
    for (const value of associatedData) parameter.push({ name: 'includeAssociatedData', valueCode: value });
    if (request.organizeOutputBy)
      parameter.push({ name: 'organizeOutputBy', valueString: request.organizeOutputBy });
    if (request.allowPartialManifests) parameter.push({ name: 'allowPartialManifests', valueBoolean: true });
    return {
      method: 'POST',
      url: `${base}${path}`,
      headers: { ...headers, 'Content-Type': 'application/fhir+json' },
      body: JSON.stringify({ resourceType: 'Parameters', parameter }),
    };
  }

  const query = new URLSearchParams();
  query.append('_outputFormat', settings.outputFormat);
  if (request.since) query.append('_since', request.since);
  if (request.until) query.append('_until', request.until);
  if (request.types.length > 0) {
    // Oracle Health rejects a repeated _type; a comma list is what every server accepts.
    if (settings.typeParameterStyle === 'comma') query.append('_type', request.types.join(','));
    else for (const type of request.types) query.append('_type', type);
  }
  if (request.elements.length > 0) query.append('_elements', request.elements.join(','));
  // Repeated _typeFilter means OR (IG v2); each value keeps its own commas.
  for (const filter of request.typeFilters) query.append('_typeFilter', filter);
  if (associatedData.length > 0) query.append('includeAssociatedData', associatedData.join(','));
  if (request.organizeOutputBy) query.append('organizeOutputBy', request.organizeOutputBy);
  if (request.allowPartialManifests) query.append('allowPartialManifests', 'true');
  return { method: 'GET', url: `${base}${path}?${query.toString()}`, headers };
}

function requireGroupId(request: ExportRequest): string {
  if (!request.groupId) throw new ConfigurationError('a group level export needs a groupId');
  return request.groupId;
}

export interface HttpResponseView {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | undefined>>;
  /** The body as text, already capped by the adapter (error bodies only; never a data file). */
  readonly body?: string;
}

export type KickOffOutcome =
  | { readonly outcome: 'accepted'; readonly statusUrl: string }
  | { readonly outcome: 'retry'; readonly retryAfterSeconds?: number; readonly reason: string };

/**
 * Interprets the kick-off response. 429 means an export is already running or
 * we went too fast (Oracle Health allows one per client and tenant); 503 is
 * overload; both are waited out. Other errors fail with the server's own words.
 */
export function interpretKickOffResponse(
  response: HttpResponseView,
  kickOffUrl: string,
  allowInsecureHttp: boolean,
  now: Date,
): KickOffOutcome {
  const { status } = response;
  if (status === 202) {
    const location = response.headers['content-location'];
    if (!location) {
      throw new ExportRequestRejectedError(
        'kick-off answered 202 without a Content-Location header (the status URL)',
      );
    }
    // The IG requires an absolute URL; resolve a relative one rather than fail a healthy export.
    let statusUrl: string;
    try {
      statusUrl = new URL(location, kickOffUrl).toString();
    } catch {
      throw new ExportRequestRejectedError('kick-off Content-Location is not a URL');
    }
    const check = checkFetchableUrl(statusUrl, allowInsecureHttp);
    if (!check.ok) throw new ExportRequestRejectedError(`kick-off Content-Location ${check.reason}`);
    return { outcome: 'accepted', statusUrl };
  }
  const retryAfterSeconds = parseRetryAfter(response.headers['retry-after'], now);
  const outcome = summarizeOperationOutcome(response.body);
  const detail = outcome ? `: ${outcome.text}` : '';
  if (status === 429 || status === 503) {
    return {
      outcome: 'retry',
      ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
      reason: oneLine(`kick-off answered ${status}${detail}`),
    };
  }
  if (status === 401) throw new AccessTokenRejectedError(`kick-off answered 401${detail}`);
  // Oracle Health answers 500 for transient trouble too; without an OperationOutcome saying otherwise, wait and retry.
  if (
    (status === 500 || status === 502 || status === 504) &&
    (!outcome || outcome.codes.includes('transient'))
  ) {
    return {
      outcome: 'retry',
      ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
      reason: oneLine(`kick-off answered ${status}${detail}`),
    };
  }
  throw new ExportRequestRejectedError(
    oneLine(`kick-off was rejected with HTTP ${status}${detail || ' and no OperationOutcome'}`),
  );
}
