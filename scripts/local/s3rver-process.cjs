// Runs s3rver in its own process: it needs --openssl-legacy-provider for
// ListObjectsV2 continuation tokens (DES), which we refuse to impose on the
// pipeline's own process, and a separate process gets its own core.
'use strict';
const S3rver = require('s3rver');

const [directory, address, port] = process.argv.slice(2);
const server = new S3rver({
  address,
  port: Number(port),
  directory,
  silent: true,
  allowMismatchedSignatures: false,
});
server.run().then(
  ({ port: boundPort }) => {
    process.stdout.write(`${JSON.stringify({ port: boundPort })}\n`);
  },
  (error) => {
    process.stderr.write(`s3rver failed to start: ${error.message}\n`);
    process.exit(1);
  },
);
process.on('SIGTERM', () => server.close().finally(() => process.exit(0)));
