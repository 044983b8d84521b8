// Runs s3rver in its own process: it needs --openssl-legacy-provider for
// ListObjectsV2 continuation tokens (DES), which we refuse to impose on the
// pipeline's own process, and a separate process gets its own core.
'use strict';
const fs = require('node:fs/promises');
const path = require('node:path');
const S3rver = require('s3rver');
const authentication = require('s3rver/lib/middleware/authentication');
const S3Error = require('s3rver/lib/models/error');

const [directory, address, port] = process.argv.slice(2);
const server = new S3rver({
  address,
  port: Number(port),
  directory,
  silent: true,
  allowMismatchedSignatures: false,
});

// s3rver lacks three things the pipeline relies on in S3, so that a local run
// would otherwise pass where AWS behaves differently (or fail where AWS works):
// - ListMultipartUploads and AbortMultipartUpload (clean-up aborts open uploads;
//   tests prove none is left open);
// - UploadPart / CompleteMultipartUpload answering NoSuchUpload once aborted
//   (s3rver would quietly recreate the upload folder);
// - a conditional PUT with `If-None-Match: *` answering 412 when the key exists
//   (the per-source lock of Prepare Export), and reads that never see it half-written.
// They are served here, in front of s3rver's router, after its request logger
// and XML encoder, with s3rver's own signature check.
const verifySignature = authentication();
const uploadsRoot = (bucket) => server.store.getResourcePath(bucket, undefined, 'uploads');

async function uploadKey(bucket, uploadId) {
  if (!/^[0-9a-f]+$/i.test(uploadId)) return undefined;
  try {
    return (await fs.readFile(path.join(uploadsRoot(bucket), uploadId, 'key'))).toString();
  } catch (error) {
    if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined;
    throw error;
  }
}

async function listUploads(bucket, prefix) {
  let ids;
  try {
    ids = await fs.readdir(uploadsRoot(bucket));
  } catch (error) {
    if (error.code === 'ENOENT') return [];
    throw error;
  }
  const uploads = [];
  for (const uploadId of ids) {
    const key = await uploadKey(bucket, uploadId);
    if (key === undefined || !key.startsWith(prefix)) continue;
    const stat = await fs.stat(path.join(uploadsRoot(bucket), uploadId, 'key'));
    uploads.push({ Key: key, UploadId: uploadId, Initiated: stat.mtime.toISOString() });
  }
  return uploads.sort((a, b) => a.Key.localeCompare(b.Key) || a.UploadId.localeCompare(b.UploadId));
}

/** Conditional PUTs of one key, one at a time: check-then-write must not interleave. */
const keyLocks = new Map();
async function exclusively(id, action) {
  const previous = keyLocks.get(id) ?? Promise.resolve();
  let release;
  const mine = previous.then(() => new Promise((resolve) => (release = resolve)));
  keyLocks.set(id, mine);
  await previous;
  try {
    return await action();
  } finally {
    release();
    if (keyLocks.get(id) === mine) keyLocks.delete(id);
  }
}

async function multipartExtensions(ctx, next) {
  const [, bucket, ...rest] = ctx.path.split('/');
  if (!bucket || ctx.state.website) return next();
  const key = rest.map((segment) => decodeURIComponent(segment)).join('/');
  const query = ctx.query;
  const respond = (handler) => {
    ctx.params = { bucket, ...(key ? { key } : {}) };
    return verifySignature(ctx, handler);
  };

  if (ctx.method === 'GET' && key === '' && 'uploads' in query) {
    return respond(async () => {
      const prefix = typeof query.prefix === 'string' ? query.prefix : '';
      const uploads = await listUploads(bucket, prefix);
      ctx.body = {
        ListMultipartUploadsResult: {
          '@': { xmlns: 'http://s3.amazonaws.com/doc/2006-03-01/' },
          Bucket: bucket,
          KeyMarker: '',
          UploadIdMarker: '',
          Prefix: prefix,
          MaxUploads: 10000,
          IsTruncated: false,
          Upload: uploads,
        },
      };
    });
  }
  if (key !== '' && typeof query.uploadId === 'string') {
    const uploadId = query.uploadId;
    const checkOwner = async () => {
      const owner = await uploadKey(bucket, uploadId);
      if (owner !== key && (ctx.method === 'DELETE' || ctx.method === 'PUT' || ctx.method === 'POST')) {
        throw new S3Error(
          'NoSuchUpload',
          'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.',
          { UploadId: uploadId },
        );
      }
    };
    if (ctx.method === 'DELETE' || ctx.method === 'POST') {
      // Completing and aborting one upload, one at a time: a Complete retried by the SDK (or
      // racing an abort) otherwise read part files the other had just removed, and s3rver
      // crashed on the unhandled stream error. S3 answers the second with NoSuchUpload.
      return exclusively(`upload:${bucket}/${uploadId}`, async () => {
        await checkOwner();
        if (ctx.method === 'POST') return next();
        return respond(async () => {
          await fs.rm(path.join(uploadsRoot(bucket), uploadId), { recursive: true, force: true });
          ctx.status = 204;
        });
      });
    }
    await checkOwner();
    return next();
  }
  if ((ctx.method === 'GET' || ctx.method === 'HEAD') && key !== '') {
    // s3rver writes an object in place, so a read during a write can see half of it (and
    // fail to parse); S3 shows a new object whole or not at all. Reads of a key wait for the
    // conditional write in progress on it (the lock of Prepare Export, which two executions
    // read while the other writes).
    const writing = keyLocks.get(`${bucket}/${key}`);
    if (writing) await writing;
  }
  if (ctx.method === 'PUT' && key !== '' && ctx.get('if-none-match').trim() === '*') {
    return exclusively(`${bucket}/${key}`, async () => {
      if (await server.store.existsObject(bucket, key)) {
        throw new S3Error(
          'PreconditionFailed',
          'At least one of the pre-conditions you specified did not hold',
          {
            Condition: 'If-None-Match',
          },
        );
      }
      await next();
    });
  }
  return next();
}

// A Complete that names a part never uploaded (or removed meanwhile) made s3rver open a
// missing file with no error listener: the whole server crashed. S3 answers InvalidPart.
const completeUpload = server.store.putObjectMultipart.bind(server.store);
server.store.putObjectMultipart = async (bucket, uploadId, parts) => {
  for (const part of parts) {
    try {
      await fs.stat(path.join(uploadsRoot(bucket), uploadId, String(part.number)));
    } catch (error) {
      if (error.code !== 'ENOENT') throw error;
      throw new S3Error(
        'InvalidPart',
        "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.",
        { UploadId: uploadId, PartNumber: part.number },
      );
    }
  }
  return completeUpload(bucket, uploadId, parts);
};

// Koa composes `middleware` when the server starts: insert just before the router.
server.middleware.splice(server.middleware.length - 1, 0, multipartExtensions);

server.run().then(
  ({ port: boundPort }) => {
    process.stdout.write(`${JSON.stringify({ port: boundPort })}\n`);
  },
  (error) => {
    process.stderr.write(`s3rver failed to start: ${error.message}\n`);
    process.exit(1);
  },
);

// The parent keeps our stdin open and never writes to it: its end means the parent is done
// with us or gone (killed, crashed). Either way nobody will use this server again, so it stops
// rather than outliving the command that started it.
let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  const closing = server.close();
  // Connections still open belong to a parent that has finished: close them, do not wait.
  server.httpServer?.closeAllConnections();
  const exit = () => process.exit(0);
  closing.then(exit, exit);
}
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
// The command that started us decides when we stop (its stdin pipe closing): a Ctrl-C meant for it
// must not take S3 away while it cleans up.
process.on('SIGINT', () => {});
