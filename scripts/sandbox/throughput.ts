/**
 * Measures how fast the sandbox serves one export's files on loopback (identity and gzip):
 *   npx tsx scripts/sandbox/throughput.ts [--patients N] [--type Observation] [--resources-per-file N]
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { request } from 'undici';
import { startSandbox } from './index.js';

const { values } = parseArgs({
  options: {
    patients: { type: 'string', default: '20000' },
    type: { type: 'string', default: 'Observation' },
    'resources-per-file': { type: 'string', default: '1000000' },
  },
});

const sandbox = await startSandbox({
  patientCount: Number(values.patients),
  jobDurationMs: 0,
  resourcesPerFile: Number(values['resources-per-file']),
});
try {
  const { privateKey, publicKey } = await generateKeyPair('ES384');
  const { clientId } = await sandbox.registerClient({
    jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'k1' }] },
  });
  const assertion = await new SignJWT({
    iss: clientId,
    sub: clientId,
    aud: sandbox.tokenUrl,
    jti: randomUUID(),
  })
    .setProtectedHeader({ alg: 'ES384', kid: 'k1', typ: 'JWT' })
    .setExpirationTime('4m')
    .sign(privateKey);
  const tokenResponse = await fetch(sandbox.tokenUrl, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion,
      scope: 'system/*.rs',
    }),
  });
  const { access_token: token } = (await tokenResponse.json()) as { access_token: string };
  const auth = { authorization: `Bearer ${token}` };
  const kickoff = await fetch(`${sandbox.baseUrl}/$export?_type=${values.type}`, {
    headers: { ...auth, accept: 'application/fhir+json', prefer: 'respond-async' },
  });
  const statusUrl = kickoff.headers.get('content-location')!;
  const manifest = (await (await fetch(statusUrl, { headers: auth })).json()) as {
    output: { url: string }[];
  };

  let peakRss = 0;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }, 100);
  for (const encoding of ['identity', 'gzip']) {
    const passes = encoding === 'gzip' ? ['(spooled)'] : ['first (generates)', 'again (spooled)'];
    for (const pass of passes) {
      let wire = 0;
      const started = performance.now();
      for (const { url } of manifest.output) {
        const response = await request(url, { headers: { ...auth, 'accept-encoding': encoding } });
        for await (const chunk of response.body) wire += (chunk as Buffer).length;
      }
      const seconds = (performance.now() - started) / 1000;
      console.log(
        `${encoding.padEnd(8)} ${pass.padEnd(18)} ${(wire / 1e6).toFixed(0)} MB on the wire in ${seconds.toFixed(2)} s: ${(wire / 1e6 / seconds).toFixed(0)} MB/s`,
      );
    }
  }
  clearInterval(sampler);
  console.log(`peak RSS (server and client in one process): ${(peakRss / 1e6).toFixed(0)} MB`);
} finally {
  await sandbox.close();
}
