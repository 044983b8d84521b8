/** Bulk Data kick-off, status and delete requests. */
import { randomBytes } from 'node:crypto';
import { scopesAllowExport } from '../auth/scopes.js';
import type { Routed, SandboxState } from '../context.js';
import type { ExportableType } from '../data/types.js';
import { type ExportFile, ExportJob } from '../export/jobs.js';
import {
  type ExportLevel,
  type KickoffParameter,
  parametersFromQuery,
  parametersFromResource,
  parseKickoff,
  typesAtLevel,
} from '../export/kickoff-params.js';
import { NonConformanceCountError } from '../export/non-conformance.js';
import { publishedPages } from '../export/partial-manifests.js';
import { mergeFaultPlans } from '../faults.js';
import {
  acceptedMediaTypes,
  BodyTooLargeError,
  httpDate,
  operationOutcome,
  preferences,
  readBody,
  sendJson,
  sendOutcome,
  sendText,
} from '../http.js';

const ACCEPTABLE_KICKOFF_TYPES = ['application/fhir+json', 'application/*', '*/*'];
/** CMS BCDA's two Groups, served from the sandbox's own: every patient, and a smaller run-out cohort. */
const BCDA_GROUPS: Readonly<Record<string, string>> = { all: 'cohort', runout: 'small' };
/** A FHIR instant with a timezone: what BCDA takes as `_since`. */
const FULL_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

export async function handleKickoff(
  state: SandboxState,
  routed: Routed,
  level: ExportLevel,
  requestedGroupId?: string,
): Promise<void> {
  const { req, res, info } = routed;
  let groupId = requestedGroupId;
  if (req.method !== 'GET' && req.method !== 'POST') {
    sendOutcome(res, 405, 'not-supported', `${req.method} is not supported for $export; use GET or POST`, {
      allow: 'GET, POST',
    });
    return;
  }
  const grant = state.authenticate(routed);
  if (!grant) return;
  const client = state.clients.get(grant.clientId);
  const faults = mergeFaultPlans(client?.faults, routed.faults);
  const retryAfter = String(state.options.retryAfterSeconds);
  if (faults.getKickOffOnly && req.method !== 'GET') {
    info.fault = 'getKickOffOnly';
    sendOutcome(res, 405, 'not-supported', 'this server routes GET kick-offs only', { allow: 'GET' });
    return;
  }
  if (faults.bcdaGroups && level === 'group') {
    const known = BCDA_GROUPS[groupId ?? ''];
    if (known === undefined) {
      info.fault = 'bcdaGroups';
      sendOutcome(res, 400, 'invalid', 'Invalid group ID: expected all or runout');
      return;
    }
    groupId = known;
  }

  if (faults.kickoffErrorStatus !== undefined) {
    info.fault = 'kickoffErrorStatus';
    const status = faults.kickoffErrorStatus;
    sendOutcome(
      res,
      status,
      status >= 500 ? 'exception' : 'processing',
      'Injected fault (kickoffErrorStatus)',
    );
    return;
  }
  const counter = state.counterFor(grant.clientId, routed.faultKey);
  if (counter.take('kickoff503', faults.kickoff503)) {
    info.fault = 'kickoff503';
    sendOutcome(res, 503, 'transient', 'Injected fault (kickoff503): the server is busy', {
      'retry-after': retryAfter,
    });
    return;
  }
  if (counter.take('kickoff429', faults.kickoff429)) {
    info.fault = 'kickoff429';
    sendOutcome(res, 429, 'throttled', 'Injected fault (kickoff429): too many requests', {
      'retry-after': retryAfter,
    });
    return;
  }

  const accept = acceptedMediaTypes(req.headers.accept);
  if (req.headers.accept !== undefined && !accept.some((t) => ACCEPTABLE_KICKOFF_TYPES.includes(t))) {
    sendOutcome(res, 400, 'not-supported', `Accept must be application/fhir+json, got ${req.headers.accept}`);
    return;
  }
  const prefer = preferences(req);
  if (!prefer.has('respond-async')) {
    sendOutcome(res, 400, 'invalid', 'a Bulk Data kick-off requires the header Prefer: respond-async');
    return;
  }
  if (faults.groupExportOnly && level !== 'group') {
    info.fault = 'groupExportOnly';
    sendOutcome(res, 400, 'not-supported', 'this server only supports Group/[id]/$export');
    return;
  }
  const group = groupId === undefined ? undefined : state.dataset.groups.find((g) => g.id === groupId);
  if (groupId !== undefined && !group) {
    sendOutcome(res, 404, 'not-found', `Group/${groupId} does not exist`);
    return;
  }

  let parameters: KickoffParameter[];
  if (req.method === 'POST') {
    if (routed.query !== '') {
      sendOutcome(
        res,
        400,
        'not-supported',
        'a POST kick-off takes its parameters in the Parameters body, not the query',
      );
      return;
    }
    const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (contentType !== 'application/fhir+json' && contentType !== 'application/json') {
      sendOutcome(
        res,
        415,
        'not-supported',
        'a POST kick-off body must be a Parameters resource in application/fhir+json',
      );
      return;
    }
    try {
      parameters = parametersFromResource(JSON.parse((await readBody(req)).toString('utf8')));
    } catch (error) {
      const message = error instanceof SyntaxError ? 'the body is not valid JSON' : (error as Error).message;
      sendOutcome(res, error instanceof BodyTooLargeError ? 413 : 400, 'structure', message);
      return;
    }
  } else {
    parameters = parametersFromQuery(new URLSearchParams(routed.query));
  }

  let members: Set<number> | undefined;
  const parsed = parseKickoff({
    method: req.method,
    level,
    parameters,
    lenient: prefer.has('handling=lenient'),
    faults,
    dataset: state.dataset,
    patientKnown: (id) => {
      const index = state.patientIndex(id);
      if (index === undefined) return 'unknown';
      members ??= new Set(group?.patientIndexes ?? []);
      return group && !members.has(index) ? 'not-member' : 'ok';
    },
  });
  if (!parsed.ok) {
    sendJson(res, 400, operationOutcome(...parsed.issues), {}, 'application/fhir+json');
    return;
  }
  const { spec } = parsed;
  if (faults.sinceNeedsTimestamp && spec.since !== undefined) {
    const raw = parameters.find((parameter) => parameter.name === '_since')?.value;
    if (typeof raw !== 'string' || !FULL_INSTANT.test(raw) || Date.parse(raw) > state.nowMs()) {
      info.fault = 'sinceNeedsTimestamp';
      sendOutcome(res, 400, 'invalid', '_since must be a FHIR instant with a timezone, not in the future');
      return;
    }
  }

  let types: ExportableType[];
  if (spec.requestedTypes) {
    const denied = spec.requestedTypes.filter((t) => !scopesAllowExport(grant.scopes, t));
    if (denied.length > 0) {
      sendOutcome(
        res,
        403,
        'forbidden',
        `the access token's scopes do not allow exporting ${denied.join(', ')}`,
      );
      return;
    }
    types = [...spec.requestedTypes];
  } else {
    // IG: without _type, all supported resources "within the scope of the client authorization".
    types = typesAtLevel(level).filter((t) => scopesAllowExport(grant.scopes, t));
    if (types.length === 0) {
      sendOutcome(
        res,
        403,
        'forbidden',
        "the access token's scopes do not allow exporting any resource type",
      );
      return;
    }
  }
  if (faults.requireGroupScope && level === 'group' && !scopesAllowExport(grant.scopes, 'Group')) {
    info.fault = 'requireGroupScope';
    sendOutcome(res, 403, 'forbidden', 'a Group export needs the scope system/Group.read');
    return;
  }

  const now = state.nowMs();
  const blocking = [...state.jobs.values()].filter((job) => {
    // A stuck export blocks the next kick-off like any running one, until it is DELETEd.
    if (job.clientId !== grant.clientId) return false;
    const jobState = job.state(now);
    return (
      jobState === 'in-progress' || (jobState === 'complete' && job.init.faults.oneExportUntilDelete === true)
    );
  });
  if (blocking.length >= (faults.concurrentExports ?? 1)) {
    const remainingMs = Math.max(
      ...blocking.map((j) =>
        j.init.neverCompletes ? Number.POSITIVE_INFINITY : j.init.createdAtMs + j.init.durationMs - now,
      ),
    );
    const seconds = Number.isFinite(remainingMs)
      ? Math.max(state.options.retryAfterSeconds, Math.ceil(remainingMs / 1000))
      : state.options.retryAfterSeconds;
    sendOutcome(
      res,
      429,
      'throttled',
      `an export by this client is already ${remainingMs > 0 ? 'in progress' : 'waiting to be deleted'}: ${blocking[0]!.init.statusUrl}`,
      { 'retry-after': String(seconds) },
    );
    return;
  }

  let patientIndexes: readonly number[] | undefined = group?.patientIndexes;
  if (spec.patientIds) patientIndexes = spec.patientIds.map((id) => state.patientIndex(id)!);
  const neverCompletes =
    level === 'group' &&
    faults.neverCompleteAboveMembers !== undefined &&
    (patientIndexes?.length ?? 0) > faults.neverCompleteAboveMembers;
  if (neverCompletes) info.fault = 'neverCompleteAboveMembers';
  const fails =
    faults.jobFailure === true ||
    state.counterFor(grant.clientId, 'jobFailures').take('jobFailures', faults.jobFailures);
  if (fails) info.fault = 'jobFailure';

  const id = randomBytes(12).toString('hex');
  const statusOrigin =
    faults.otherOriginFor === 'status' ? otherOriginOf(state.mainOrigin) : state.mainOrigin;
  if (faults.otherOriginFor === 'status') info.fault = 'otherOriginFor';
  const statusUrl = `${statusOrigin}/export-status/${id}`;
  const target = req.url ?? '/';
  const job = new ExportJob(
    {
      id,
      clientId: grant.clientId,
      level,
      statusUrl,
      requestUrl: `${state.mainOrigin}${req.method === 'POST' ? target.split('?')[0] : target}`,
      createdAtMs: now,
      durationMs: faults.jobDurationMs ?? state.options.jobDurationMs,
      faults,
      types,
      ...(spec.since !== undefined ? { since: spec.since } : {}),
      ...(spec.until !== undefined ? { until: spec.until } : {}),
      ...(patientIndexes !== undefined ? { patientIndexes } : {}),
      ...(spec.patientIds !== undefined ? { patientIds: spec.patientIds } : {}),
      elements: spec.elements,
      typeFilters: spec.typeFilters,
      ignored: parsed.ignored,
      requiresAccessToken: faults.filesFromSecondOrigin ? false : state.options.requiresAccessToken,
      resourcesPerFile: faults.resourcesPerFile ?? state.options.resourcesPerFile,
      ...(groupId !== undefined ? { groupId } : {}),
      includeAssociatedData: spec.includeAssociatedData,
      ...(spec.organizeOutputBy ? { organizeOutputBy: spec.organizeOutputBy } : {}),
      ...(spec.allowPartialManifests ? { allowPartialManifests: true } : {}),
      ...(neverCompletes ? { neverCompletes } : {}),
      ...(fails ? { fails } : {}),
    },
    state.dataset,
  );
  try {
    job.nonConformantResources();
  } catch (error) {
    if (!(error instanceof NonConformanceCountError)) throw error;
    info.fault = 'nonConformant';
    sendOutcome(res, 400, 'invalid', error.message);
    return;
  }
  state.jobs.set(id, job);
  if (!faults.jobExpiry && !fails && !neverCompletes) state.prepare(job);
  const issues = parsed.ignored.length > 0 ? parsed.ignored : [];
  sendJson(
    res,
    202,
    operationOutcome(
      { severity: 'information', code: 'informational', diagnostics: `export accepted; poll ${statusUrl}` },
      ...issues,
    ),
    { 'content-location': statusUrl },
    'application/fhir+json',
  );
}

export function handleStatus(state: SandboxState, routed: Routed, jobId: string): void {
  const { req, res, info } = routed;
  if (req.method !== 'GET' && req.method !== 'DELETE') {
    sendOutcome(res, 405, 'not-supported', `${req.method} is not supported on a status URL`, {
      allow: 'GET, DELETE',
    });
    return;
  }
  const grant = state.authenticate(routed);
  if (!grant) return;
  const job = state.jobs.get(jobId);
  if (!job) {
    sendOutcome(res, 404, 'not-found', 'no such export');
    return;
  }
  if (job.clientId !== grant.clientId) {
    sendOutcome(res, 403, 'forbidden', 'this export belongs to another client');
    return;
  }
  const now = state.nowMs();
  const jobState = job.state(now);
  if (jobState === 'deleted' || jobState === 'expired') {
    if (jobState === 'expired') info.fault = 'jobExpiry';
    sendOutcome(
      res,
      404,
      'not-found',
      jobState === 'deleted' ? 'the export was deleted' : 'the export expired',
    );
    return;
  }
  if (req.method === 'DELETE') {
    job.markDeleted();
    void state.discard(job);
    sendOutcome(res, 202, 'informational', 'the export was cancelled and its files deleted');
    return;
  }
  if (!state.coversJob(grant, job)) {
    sendOutcome(res, 403, 'forbidden', "the access token's scopes do not cover every exported type");
    return;
  }

  const faults = job.init.faults;
  const retryAfter =
    faults.statusRetryAfterRaw ?? String(faults.statusRetryAfterSeconds ?? state.options.retryAfterSeconds);
  if (faults.statusErrorStatus !== undefined) {
    info.fault = 'statusErrorStatus';
    sendOutcome(res, faults.statusErrorStatus, 'processing', 'Injected fault (statusErrorStatus)');
    return;
  }
  if (job.faults.take('status429', faults.status429)) {
    info.fault = 'status429';
    sendOutcome(res, 429, 'throttled', 'Injected fault (status429): polling too frequently', {
      'retry-after': retryAfter,
    });
    return;
  }
  if (job.faults.take('status5xx', faults.status5xx)) {
    // An infrastructure layer that knows nothing of FHIR (IG allows a non-FHIR body here).
    info.fault = 'status5xx';
    sendText(res, 503, 'Service Unavailable', { 'retry-after': String(state.options.retryAfterSeconds) });
    return;
  }
  if (job.faults.take('statusTransient', faults.statusTransient)) {
    info.fault = 'statusTransient';
    sendOutcome(res, 500, 'transient', 'Injected fault (statusTransient): try again later');
    return;
  }

  if (jobState === 'in-progress') {
    if (faults.statusRetryAfterRaw !== undefined) info.fault = 'statusRetryAfterRaw';
    else if (faults.statusRetryAfterSeconds !== undefined) info.fault = 'statusRetryAfterSeconds';
    const firstPage = job.init.allowPartialManifests ? manifestPage(state, job, 0, now) : undefined;
    if (firstPage) {
      // IG: a 202 MAY carry a manifest of the files ready so far (export/partial-manifests.ts).
      sendJson(res, 202, firstPage.body, {
        ...firstPage.headers,
        'x-progress': `${job.progress(now)}% complete`,
        'retry-after': retryAfter,
        'cache-control': 'no-store',
      });
      return;
    }
    res.writeHead(202, {
      'x-progress': `${job.progress(now)}% complete`,
      ...(faults.noStatusRetryAfter ? {} : { 'retry-after': retryAfter }),
      'cache-control': 'no-store',
      'content-length': 0,
    });
    res.end();
    return;
  }
  if (jobState === 'failed') {
    info.fault = 'jobFailure';
    sendOutcome(res, 500, 'exception', 'Injected fault (jobFailure): the export failed');
    return;
  }

  if (job.init.allowPartialManifests) {
    const page = manifestPage(state, job, 0, now)!;
    sendJson(res, 200, page.body, page.headers);
    return;
  }
  const { expiresAt, entry } = manifestEntries(state, job, now);
  const files = job.files();
  if (faults.countMismatch) info.fault = 'countMismatch';
  if (faults.someFilesFailed) info.fault = 'someFilesFailed';
  const output = files.filter((f) => f.kind === 'output').map(entry);
  const repeated =
    faults.duplicateManifestEntry === undefined ? undefined : output[faults.duplicateManifestEntry];
  if (repeated) {
    info.fault = 'duplicateManifestEntry';
    output.push(repeated);
  }
  if (faults.fixedTransactionTime !== undefined) info.fault = 'fixedTransactionTime';
  const manifest = {
    transactionTime: faults.fixedTransactionTime ?? job.transactionTime,
    request: job.init.requestUrl,
    requiresAccessToken: job.init.requiresAccessToken,
    ...(job.init.organizeOutputBy ? { outputOrganizedBy: job.init.organizeOutputBy } : {}),
    output,
    ...(job.init.since !== undefined
      ? { deleted: files.filter((f) => f.kind === 'deleted').map(entry) }
      : {}),
    error: files.filter((f) => f.kind === 'error').map(entry),
  };
  sendJson(
    res,
    200,
    faults.otherOriginFor === 'page' ? splitAcrossOrigins(manifest, routed, info) : manifest,
    {
      expires: httpDate(expiresAt),
    },
  );
}

/**
 * otherOriginFor page: the manifest in two pages, the first with half the output files and a
 * `next` link to the status URL on the other origin (`?page=2`), the second with the rest.
 */
function splitAcrossOrigins<M extends { readonly output: readonly unknown[] }>(
  manifest: M,
  routed: Routed,
  info: Routed['info'],
): Record<string, unknown> {
  info.fault = 'otherOriginFor';
  const target = new URL(routed.req.url ?? '/', 'http://sandbox.invalid');
  const half = Math.ceil(manifest.output.length / 2);
  if (target.searchParams.get('page') === '2') {
    return { ...manifest, output: manifest.output.slice(half), error: [], deleted: undefined };
  }
  const origin = `http://${routed.req.headers.host ?? ''}`;
  return {
    ...manifest,
    output: manifest.output.slice(0, half),
    link: [{ relation: 'next', url: `${otherOriginOf(origin)}${target.pathname}?page=2` }],
  };
}

/** The same listener under its other loopback name: another origin to a client, the same server. */
export function otherOriginOf(origin: string): string {
  const url = new URL(origin);
  if (url.hostname === '127.0.0.1') url.hostname = 'localhost';
  else if (url.hostname === 'localhost') url.hostname = '127.0.0.1';
  else throw new Error(`otherOriginFor needs the sandbox on 127.0.0.1 or localhost, not ${url.hostname}`);
  return url.origin;
}

/** How a manifest lists a file, and until when its links hold. */
function manifestEntries(state: SandboxState, job: ExportJob, now: number) {
  const faults = job.init.faults;
  const linkLifetimeMs = faults.fileLinkLifetimeMs ?? state.options.fileLinkLifetimeMs;
  const expiresAt =
    now + Math.min(state.options.manifestExpiresMs, linkLifetimeMs ?? Number.POSITIVE_INFINITY);
  const entry = (f: ExportFile) => ({
    // IG 2.1: with outputOrganizedBy, an output item's type "SHALL NOT be populated".
    ...(f.organizedBy ? {} : { type: f.type }),
    url: fileUrl(state, job, f.name, now, linkLifetimeMs),
    count: f.manifestCount,
  });
  return { expiresAt, entry };
}

/** Page `number` of a job kicked off with allowPartialManifests, when it is published by now. */
function manifestPage(
  state: SandboxState,
  job: ExportJob,
  number: number,
  now: number,
): { body: unknown; headers: Record<string, string> } | undefined {
  const page = publishedPages(job, now, state.options.partialManifestPageSize)[number];
  if (!page) return undefined;
  const { expiresAt, entry } = manifestEntries(state, job, now);
  return {
    body: {
      transactionTime: job.init.faults.fixedTransactionTime ?? job.transactionTime,
      request: job.init.requestUrl,
      requiresAccessToken: job.init.requiresAccessToken,
      ...(job.init.organizeOutputBy ? { outputOrganizedBy: job.init.organizeOutputBy } : {}),
      output: page.output.map(entry),
      ...(page.deleted.length > 0 ? { deleted: page.deleted.map(entry) } : {}),
      error: page.error.map(entry),
      ...(page.next === undefined
        ? {}
        : { link: [{ relation: 'next', url: `${job.init.statusUrl}/page/${page.next}` }] }),
    },
    headers: { expires: httpDate(expiresAt) },
  };
}

/** GET a later page of a partial manifest (`<status URL>/page/<n>`): 404 until it is published. */
export function handleManifestPage(state: SandboxState, routed: Routed, jobId: string, page: string): void {
  const { res } = routed;
  const grant = state.authenticate(routed);
  if (!grant) return;
  const job = state.jobs.get(jobId);
  if (!job || job.clientId !== grant.clientId || !job.init.allowPartialManifests) {
    sendOutcome(res, 404, 'not-found', 'no such manifest page');
    return;
  }
  const now = state.nowMs();
  const jobState = job.state(now);
  const number = /^\d{1,6}$/.test(page) ? Number(page) : -1;
  const found =
    jobState === 'in-progress' || jobState === 'complete' ? manifestPage(state, job, number, now) : undefined;
  if (!found) {
    sendOutcome(res, 404, 'not-found', `manifest page ${page} of this export is not published`);
    return;
  }
  sendJson(res, 200, found.body, found.headers);
}

function fileUrl(
  state: SandboxState,
  job: ExportJob,
  name: string,
  nowMs: number,
  linkLifetimeMs: number | undefined,
): string {
  const path = `/files/${job.id}/${encodeURIComponent(name)}`;
  if (job.init.faults.filesFromSecondOrigin) {
    const seconds =
      linkLifetimeMs !== undefined ? Math.ceil(linkLifetimeMs / 1000) : state.options.presignedLinkSeconds;
    return state.signer.presign(state.secondOrigin, path, nowMs, seconds);
  }
  const origin =
    job.init.faults.otherOriginFor === 'files' ? otherOriginOf(state.mainOrigin) : state.mainOrigin;
  if (linkLifetimeMs !== undefined) return state.signer.expiringLink(origin, path, nowMs + linkLifetimeMs);
  return `${origin}${path}`;
}
