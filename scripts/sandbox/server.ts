/** Routing for the two origins. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Routed, SandboxState } from './context.js';
import { FaultPlanError, mergeFaultPlans, parseFaultSpec } from './faults.js';
import { handleRegister, handleToken } from './handlers/auth.js';
import { capabilityStatement, groupRead, smartConfiguration } from './handlers/discovery.js';
import { handleKickoff, handleManifestPage, handleStatus } from './handlers/export.js';
import { handleMainFile, handleSecondOriginFile } from './handlers/files.js';
import { patientRead } from './handlers/patient-read.js';
import { sendOutcome } from './http.js';
import type { RequestInfo } from './request-log.js';

export const FAULT_HEADER = 'x-sandbox-fault';

type Route = (state: SandboxState, routed: Routed) => void | Promise<void>;

/**
 * Main origin:
 *   POST /register                              client registration
 *   [/fault/<spec>]/auth/token                  token endpoint
 *   [/fault/<spec>]/fhir/.well-known/smart-configuration, /fhir/metadata
 *   [/fault/<spec>]/fhir/$export, /fhir/Patient/$export, /fhir/Group/<id>/$export
 *   [/fault/<spec>]/fhir/Group[/<id>], /fhir/Patient/<id>, /fhir/Patient?identifier=…
 *   /export-status/<job>                        status (GET) and cancel (DELETE)
 *   /export-status/<job>/page/<n>               a later page of a partial manifest (allowPartialManifests)
 *   /files/<job>/<name>                         output, error and deleted files
 */
function mainRoute(segments: readonly string[]): Route | undefined {
  const [first, second, third, fourth] = segments;
  const n = segments.length;
  if (first === 'register' && n === 1) return handleRegister;
  if (first === 'auth' && second === 'token' && n === 2) return handleToken;
  if (first === 'export-status' && n === 2) return (s, r) => handleStatus(s, r, second!);
  if (first === 'export-status' && third === 'page' && n === 4)
    return getOnly((s, r) => handleManifestPage(s, r, second!, fourth!));
  if (first === 'files' && n === 3) return (s, r) => handleMainFile(s, r, second!, third!);
  if (first !== 'fhir') return undefined;
  if (second === '.well-known' && third === 'smart-configuration' && n === 3)
    return getOnly(smartConfiguration);
  if (second === 'metadata' && n === 2) return getOnly(capabilityStatement);
  if (second === '$export' && n === 2) return (s, r) => handleKickoff(s, r, 'system');
  if (second === 'Patient' && third === '$export' && n === 3) return (s, r) => handleKickoff(s, r, 'patient');
  if (second === 'Group' && n === 4 && fourth === '$export')
    return (s, r) => handleKickoff(s, r, 'group', third!);
  if (second === 'Group' && n === 2) return getOnly((s, r) => groupRead(s, r));
  if (second === 'Patient' && n === 2) return getOnly((s, r) => patientRead(s, r));
  if (second === 'Patient' && n === 3) return getOnly((s, r) => patientRead(s, r, third!));
  if (second === 'Group' && n === 3) return getOnly((s, r) => groupRead(s, r, third!));
  return undefined;
}

function getOnly(route: Route): Route {
  return (state, routed) => {
    if (routed.req.method !== 'GET' && routed.req.method !== 'HEAD') {
      sendOutcome(routed.res, 405, 'not-supported', `${routed.req.method} is not supported here`, {
        allow: 'GET',
      });
      return;
    }
    return route(state, routed);
  };
}

function split(req: IncomingMessage): { rawSegments: string[]; query: string } {
  const target = req.url ?? '/';
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  return { rawSegments: path.split('/').slice(1), query: q === -1 ? '' : target.slice(q + 1) };
}

async function dispatch(
  state: SandboxState,
  req: IncomingMessage,
  res: ServerResponse,
  info: RequestInfo,
  routeFor: (segments: readonly string[]) => Route | undefined,
  allowFaults: boolean,
): Promise<void> {
  let { rawSegments } = split(req);
  const { query } = split(req);
  let prefix = '';
  let faultKey = '';
  let faults = {};
  try {
    if (allowFaults && rawSegments[0] === 'fault' && rawSegments.length > 2) {
      prefix = `/fault/${rawSegments[1]}`;
      faultKey = decodeURIComponent(rawSegments[1]!);
      faults = parseFaultSpec(faultKey);
      rawSegments = rawSegments.slice(2);
    }
    const header = req.headers[FAULT_HEADER];
    if (allowFaults && typeof header === 'string') {
      faults = mergeFaultPlans(faults, parseFaultSpec(header));
      faultKey += `\n${header}`;
    }
  } catch (error) {
    if (error instanceof FaultPlanError || error instanceof URIError) {
      sendOutcome(res, 400, 'invalid', `bad fault spec: ${error.message}`);
      return;
    }
    throw error;
  }
  let segments: string[];
  try {
    segments = rawSegments.map((s) => decodeURIComponent(s));
  } catch {
    sendOutcome(res, 400, 'invalid', 'malformed percent-encoding in the path');
    return;
  }
  const route = routeFor(segments);
  if (!route) {
    sendOutcome(res, 404, 'not-found', `nothing at ${req.method} ${split(req).rawSegments.join('/')}`);
    return;
  }
  await route(state, { req, res, info, segments, query, prefix, faults, faultKey });
}

function onError(res: ServerResponse, error: unknown): void {
  // Never log request content: it may hold tokens or PHI.
  process.stderr.write(`sandbox: internal error: ${(error as Error)?.stack ?? String(error)}\n`);
  if (!res.headersSent) sendOutcome(res, 500, 'exception', 'internal sandbox error');
  else res.destroy();
}

export function handleMainRequest(
  state: SandboxState,
  req: IncomingMessage,
  res: ServerResponse,
  info: RequestInfo,
): void {
  dispatch(state, req, res, info, mainRoute, true).catch((error) => onError(res, error));
}

/** Second origin: only `/files/<job>/<name>` with a presigned query, like an S3 bucket. */
export function handleSecondRequest(
  state: SandboxState,
  req: IncomingMessage,
  res: ServerResponse,
  info: RequestInfo,
): void {
  const route = (segments: readonly string[]): Route | undefined =>
    segments[0] === 'files' && segments.length === 3
      ? (s, r) => handleSecondOriginFile(s, r, segments[1]!, segments[2]!)
      : undefined;
  dispatch(state, req, res, info, route, false).catch((error) => onError(res, error));
}
