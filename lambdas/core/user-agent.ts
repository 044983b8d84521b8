/**
 * The User-Agent of every request the pipeline makes: token endpoint, discovery, kick-off,
 * status, DELETE, manifest pages and files. EHR gateways and WAFs throttle or refuse requests
 * that carry none, and a server's operators can tell our traffic apart by it. Product and
 * version are package.json's (a unit test keeps them in step).
 */
export const USER_AGENT = 'fhir-bulk-export-pipeline/0.1.0 (FHIR Bulk Data client)';
