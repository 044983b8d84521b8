// Runs s3rver in its own process: it needs --openssl-legacy-provider for
// ListObjectsV2 continuation tokens (DES), which we refuse to impose on the
// pipeline's own process, and a separate process gets its own core.
'use strict';
const fs = require('node:fs/promises');
const path = require('node:path');
const S3rver = require('s3rver');
const authentication = require('s3rver/lib/middleware/authentication');
const S3Error = require('s3rver/lib/models/error');
const { createRequire } = require('node:module');
const { Readable } = require('node:stream');
// s3rver's own XML parser and entity decoder, so that we read a request as it would.
const fromS3rver = createRequire(require.resolve('s3rver'));
const xmlParser = fromS3rver('fast-xml-parser');
const he = fromS3rver('he');

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
//   (the per-source lock of Prepare Export), and reads that never see it half-written;
// - publishing an export (lambdas/services/publish-export.ts): CopyObject reading
//   `x-amz-copy-source` URL-decoded as S3 does (s3rver's decodeURI leaves the `%3D` of
//   every `source=`/`export=` segment), honouring `x-amz-copy-source-if-match` and copying
//   the source's tags (`x-amz-tagging-directive` COPY, S3's default); UploadPartCopy with
//   `x-amz-copy-source-range` (s3rver answers NotImplemented); DeleteObjects refusing more
//   than 1000 keys and reporting a key it could not delete in the answer, as S3 does;
// - tags given with PutObject or CreateMultipartUpload (`x-amz-tagging`, which s3rver
//   drops), and tags that go with their object (s3rver kept them after a delete, and
//   gave them to the next object of that key).
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

const S3_MAX_DELETE_KEYS = 1000;
const tagsPath = (bucket, key) => server.store.getResourcePath(bucket, key, 'tagging.xml');
const escapeXml = (text) => String(text).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

async function requireBucket(bucket) {
  if (!(await server.store.getBucket(bucket))) {
    throw new S3Error('NoSuchBucket', 'The specified bucket does not exist', { BucketName: bucket });
  }
}

/** Replaces an object's tags with those of an `x-amz-tagging` value (`a=1&b=2`); none removes them. */
async function setTags(bucket, key, tagging) {
  const tags = [...new URLSearchParams(tagging ?? '')];
  if (tags.length === 0) {
    await fs.rm(tagsPath(bucket, key), { force: true });
    return;
  }
  const xml = tags
    .map(([name, value]) => `<Tag><Key>${escapeXml(name)}</Key><Value>${escapeXml(value)}</Value></Tag>`)
    .join('');
  await fs.writeFile(tagsPath(bucket, key), `<Tagging><TagSet>${xml}</TagSet></Tagging>`);
}

async function copyTags(source, bucket, key) {
  try {
    await fs.copyFile(tagsPath(source.bucket, source.key), tagsPath(bucket, key));
  } catch (error) {
    if (error.code !== 'ENOENT') throw error;
    await fs.rm(tagsPath(bucket, key), { force: true });
  }
}

/**
 * The object an `x-amz-copy-source` names (`bucket/key`, URL-encoded, a leading `/` allowed),
 * with its metadata; S3's errors when it is missing or `x-amz-copy-source-if-match` differs.
 */
async function copySourceObject(ctx) {
  const raw = ctx.get('x-amz-copy-source').split('?')[0].replace(/^\//, '');
  const [bucket, ...keyParts] = decodeURIComponent(raw).split('/');
  const key = keyParts.join('/');
  await requireBucket(bucket);
  let metadata;
  try {
    metadata = await server.store.getMetadata(bucket, key);
  } catch (error) {
    if (error.code !== 'ENOENT') throw error;
    throw new S3Error('NoSuchKey', 'The specified key does not exist.', { Key: key });
  }
  const ifMatch = ctx.get('x-amz-copy-source-if-match');
  if (ifMatch && ifMatch.replace(/"/g, '') !== metadata.etag.replace(/"/g, '')) {
    throw new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', {
      Condition: 'x-amz-copy-source-If-Match',
    });
  }
  return { bucket, key, metadata, path: server.store.getResourcePath(bucket, key, 'object') };
}

/** CopyObject. The copy goes through the kernel (copy_file_range), never through this process. */
async function copyObject(ctx, bucket, key) {
  await requireBucket(bucket);
  const source = await copySourceObject(ctx);
  const replaceMetadata = ctx.get('x-amz-metadata-directive') === 'REPLACE';
  if (source.bucket === bucket && source.key === key && !replaceMetadata) {
    throw new S3Error(
      'InvalidRequest',
      "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
    );
  }
  const target = server.store.getResourcePath(bucket, key, 'object');
  if (source.path !== target) {
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.copyFile(source.path, target);
  }
  const md5 = JSON.parse(source.metadata.etag);
  await server.store.putMetadata(bucket, key, replaceMetadata ? ctx.headers : source.metadata, md5);
  if (ctx.get('x-amz-tagging-directive') === 'REPLACE') await setTags(bucket, key, ctx.get('x-amz-tagging'));
  else if (source.path !== target) await copyTags(source, bucket, key);
  const stored = await server.store.getMetadata(bucket, key);
  ctx.body = {
    CopyObjectResult: {
      LastModified: new Date(stored['last-modified']).toISOString(),
      ETag: stored.etag,
    },
  };
}

/** UploadPartCopy: a part read from another object, all of it or `x-amz-copy-source-range`. */
async function copyPart(ctx, bucket, uploadId) {
  const partNumber = Number(ctx.query.partNumber);
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > 10000) {
    throw new S3Error('InvalidArgument', 'Part number must be an integer between 1 and 10000, inclusive', {
      ArgumentName: 'partNumber',
      ArgumentValue: String(ctx.query.partNumber),
    });
  }
  const source = await copySourceObject(ctx);
  const size = Number(source.metadata['content-length']);
  const rangeHeader = ctx.get('x-amz-copy-source-range');
  let start = 0;
  let end = size - 1;
  if (rangeHeader) {
    const range = /^bytes=(\d+)-(\d+)$/.exec(rangeHeader);
    if (!range) {
      throw new S3Error(
        'InvalidArgument',
        'The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy',
        { ArgumentName: 'x-amz-copy-source-range', ArgumentValue: rangeHeader },
      );
    }
    start = Number(range[1]);
    end = Number(range[2]);
    if (end < start || end >= size) {
      throw new S3Error(
        'InvalidArgument',
        `Range specified is not valid for source object of size: ${size}`,
        {
          ArgumentName: 'x-amz-copy-source-range',
          ArgumentValue: rangeHeader,
        },
      );
    }
  }
  // An empty source has no byte to start from.
  const content =
    size === 0 ? Readable.from([]) : (await fs.open(source.path, 'r')).createReadStream({ start, end });
  const { md5 } = await server.store.putPart(bucket, uploadId, partNumber, content);
  ctx.body = {
    CopyPartResult: { LastModified: new Date().toISOString(), ETag: JSON.stringify(md5) },
  };
}

/** DeleteObjects (POST ?delete), one key at a time: s3rver's removed them all at once and raced its own folder clean-up. */
async function deleteObjects(ctx, bucket) {
  await requireBucket(bucket);
  const xml = await new Promise((resolve, reject) => {
    let payload = '';
    ctx.req.on('data', (data) => (payload += data.toString('utf8')));
    ctx.req.on('end', () => resolve(payload));
    ctx.req.on('error', reject);
  });
  const malformed = () =>
    new S3Error(
      'MalformedXML',
      'The XML you provided was not well-formed or did not validate against our published schema',
    );
  if (xmlParser.validate(xml) !== true) throw malformed();
  // Keys stay strings: s3rver's parser made `123` a number.
  const body = xmlParser.parse(xml, {
    parseNodeValue: false,
    tagValueProcessor: (value) => he.decode(value),
  });
  if (!body.Delete?.Object) throw malformed();
  const objects = [].concat(body.Delete.Object);
  if (objects.length > S3_MAX_DELETE_KEYS) throw malformed();
  const quiet = String(body.Delete.Quiet) === 'true';
  const deleted = [];
  const errors = [];
  for (const { Key: key } of objects) {
    try {
      if (await server.store.existsObject(bucket, key)) await server.store.deleteObject(bucket, key);
      deleted.push({ Key: key });
    } catch (error) {
      errors.push({ Key: key, Code: 'InternalError', Message: error.message });
    }
  }
  ctx.body = {
    DeleteResult: {
      '@': { xmlns: 'http://s3.amazonaws.com/doc/2006-03-01/' },
      ...(quiet ? {} : { Deleted: deleted }),
      ...(errors.length > 0 ? { Error: errors } : {}),
    },
  };
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

  if (ctx.method === 'POST' && key === '' && 'delete' in query) {
    return respond(() => deleteObjects(ctx, bucket));
  }
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
    if (ctx.method === 'PUT' && ctx.get('x-amz-copy-source')) {
      return respond(() => copyPart(ctx, bucket, uploadId));
    }
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
  // The SDK names the operation in `x-id`; any other parameter is a subresource (`?tagging`).
  const isObjectWrite =
    ctx.method === 'PUT' && key !== '' && Object.keys(query).every((name) => name === 'x-id');
  if (isObjectWrite && ctx.get('x-amz-copy-source')) {
    return respond(() => copyObject(ctx, bucket, key));
  }
  // An object written anew has the tags written with it, or none.
  const putTags = async () => {
    await next();
    if (isObjectWrite && ctx.status < 300) await setTags(bucket, key, ctx.get('x-amz-tagging'));
  };
  if (isObjectWrite && ctx.get('if-none-match').trim() === '*') {
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
      await putTags();
    });
  }
  return putTags();
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
  // S3 gives the object the tags its CreateMultipartUpload named (s3rver dropped them).
  const uploadDirectory = path.join(uploadsRoot(bucket), uploadId);
  const [key, initiated] = await Promise.all([
    fs.readFile(path.join(uploadDirectory, 'key'), 'utf8'),
    fs.readFile(path.join(uploadDirectory, 'metadata'), 'utf8').then(JSON.parse),
  ]);
  const completed = await completeUpload(bucket, uploadId, parts);
  await setTags(bucket, key, initiated['x-amz-tagging']);
  return completed;
};

// s3rver deleted an object's content and metadata but not its tags, and then removed the
// emptied folders with no regard for a delete of a neighbour doing the same at once.
server.store.deleteObject = async (bucket, key) => {
  await Promise.all(
    ['object', 'object.md5', 'metadata.json', 'tagging.xml'].map((resource) =>
      fs.rm(server.store.getResourcePath(bucket, key, resource), { force: true }),
    ),
  );
  const bucketPath = server.store.getBucketPath(bucket);
  const folders = key.split('/').slice(0, -1);
  while (folders.length > 0) {
    try {
      await fs.rmdir(path.join(bucketPath, ...folders));
    } catch (error) {
      if (error.code === 'ENOTEMPTY' || error.code === 'EEXIST') return;
      if (error.code !== 'ENOENT') throw error;
    }
    folders.pop();
  }
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

// One request's stream failing where s3rver left no listener (a client that gave up mid-body)
// must not take the whole server, and every export using it, down: it is reported, and that one
// request fails.
process.on('uncaughtException', (error) => {
  process.stderr.write(`embedded S3: one request failed outside any handler: ${error?.stack ?? error}\n`);
});
