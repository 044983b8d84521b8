import { describe, expect, it } from 'vitest';
import { createKmsSealer, type TokenSealer } from '../../../lambdas/adapters/kms-sealer.js';
import { createLocalSealer, generateLocalSealingKey } from '../../../lambdas/adapters/local-sealer.js';
import { KmsStandIn } from '../../support/kms-stand-in.js';

const CONTEXT = {
  sourceId: 'epic-prod',
  executionId: 'arn:aws:states:us-east-1:111122223333:execution:bulk-export:run-1',
};
const TOKEN = 'eyJhbGciOiJSUzM4NCJ9.an-access-token.signature';

interface Case {
  readonly name: string;
  readonly prefix: string;
  readonly make: () => { sealer: TokenSealer; otherKeySealer: TokenSealer; kms?: KmsStandIn; keyId?: string };
}

const cases: Case[] = [
  {
    name: 'KMS sealer',
    prefix: 'kms1.',
    make: () => {
      const kms = new KmsStandIn();
      const { KeyId } = kms.createKey();
      const other = kms.createKey();
      return {
        sealer: createKmsSealer({ kms, keyId: KeyId }),
        otherKeySealer: createKmsSealer({ kms, keyId: other.KeyId }),
        kms,
        keyId: KeyId,
      };
    },
  },
  {
    name: 'local sealer',
    prefix: 'local1.',
    make: () => ({
      sealer: createLocalSealer({ key: generateLocalSealingKey() }),
      otherKeySealer: createLocalSealer({ key: generateLocalSealingKey() }),
    }),
  },
];

/** Flips one character in the middle of the sealed payload, keeping it valid base64url. */
function tamper(sealed: string, prefix: string): string {
  const at = prefix.length + Math.floor((sealed.length - prefix.length) * 0.75);
  const flipped = sealed[at] === 'A' ? 'B' : 'A';
  return `${sealed.slice(0, at)}${flipped}${sealed.slice(at + 1)}`;
}

describe.each(cases)('$name', ({ prefix, make }) => {
  it('round-trips a token, and the sealed form does not contain it', async () => {
    const { sealer } = make();
    const sealed = await sealer.seal(TOKEN, CONTEXT);
    expect(sealed.startsWith(prefix)).toBe(true);
    expect(sealed).not.toContain('an-access-token');
    expect(await sealer.open(sealed, CONTEXT)).toBe(TOKEN);
  });

  it('seals the same token differently each time (random IV)', async () => {
    const { sealer } = make();
    expect(await sealer.seal(TOKEN, CONTEXT)).not.toBe(await sealer.seal(TOKEN, CONTEXT));
  });

  it.each([
    ['another execution', { ...CONTEXT, executionId: 'run-2' }],
    ['another source', { ...CONTEXT, sourceId: 'cerner' }],
    ['an extra context key', { ...CONTEXT, extra: 'x' }],
  ])('refuses to open for %s', async (_, context) => {
    const { sealer } = make();
    const sealed = await sealer.seal(TOKEN, CONTEXT);
    await expect(sealer.open(sealed, context)).rejects.toMatchObject({
      name: 'SealedTokenError',
      code: 'ERR_SEALED_TOKEN',
    });
  });

  it('accepts the same context in another key order', async () => {
    const { sealer } = make();
    const sealed = await sealer.seal(TOKEN, CONTEXT);
    expect(await sealer.open(sealed, { executionId: CONTEXT.executionId, sourceId: CONTEXT.sourceId })).toBe(
      TOKEN,
    );
  });

  it('refuses a tampered ciphertext', async () => {
    const { sealer } = make();
    const sealed = await sealer.seal(TOKEN, CONTEXT);
    await expect(sealer.open(tamper(sealed, prefix), CONTEXT)).rejects.toMatchObject({
      name: 'SealedTokenError',
    });
  });

  it('refuses a ciphertext sealed under another key', async () => {
    const { sealer, otherKeySealer } = make();
    const sealed = await otherKeySealer.seal(TOKEN, CONTEXT);
    await expect(sealer.open(sealed, CONTEXT)).rejects.toMatchObject({ name: 'SealedTokenError' });
  });

  it.each([
    ['a missing prefix', 'abc', `sealed token does not start with ${prefix}; was it sealed by this sealer?`],
    [
      "the other sealer's prefix",
      prefix === 'kms1.' ? 'local1.abc' : 'kms1.abc',
      `sealed token does not start with ${prefix}; was it sealed by this sealer?`,
    ],
  ])('refuses %s', async (_, sealed, message) => {
    const { sealer } = make();
    await expect(sealer.open(sealed, CONTEXT)).rejects.toMatchObject({ name: 'SealedTokenError', message });
  });

  it.each([
    [{}, 'sealing context must be a non-empty object such as { sourceId, executionId }'],
    [{ sourceId: '' }, 'sealing context sourceId must be a non-empty string'],
  ])('refuses to seal with context %j', async (context, message) => {
    const { sealer } = make();
    await expect(sealer.seal(TOKEN, context)).rejects.toMatchObject({ name: 'SealedTokenError', message });
  });
});

describe('KMS sealer requests', () => {
  it('sends the encryption context and names the key on Decrypt', async () => {
    const kms = new KmsStandIn();
    const { KeyId } = kms.createKey();
    const sealer = createKmsSealer({ kms, keyId: KeyId });
    await sealer.open(await sealer.seal(TOKEN, CONTEXT), CONTEXT);
    expect(kms.callsOf('Encrypt')[0]!.input).toStrictEqual({
      KeyId,
      Plaintext: Buffer.from(TOKEN, 'utf8'),
      EncryptionContext: CONTEXT,
    });
    expect(kms.callsOf('Decrypt')[0]!.input).toMatchObject({ KeyId, EncryptionContext: CONTEXT });
  });

  it('reports a missing key as a ConfigurationError, not a tampering', async () => {
    const kms = new KmsStandIn();
    const sealer = createKmsSealer({ kms, keyId: 'alias/missing' });
    await expect(sealer.seal(TOKEN, CONTEXT)).rejects.toMatchObject({
      name: 'ConfigurationError',
      message: expect.stringMatching(/^KMS Encrypt with key alias\/missing failed: NotFoundException/),
    });
  });

  it('refuses a token over the 4096 bytes KMS Encrypt takes', async () => {
    const kms = new KmsStandIn();
    const { KeyId } = kms.createKey();
    await expect(createKmsSealer({ kms, keyId: KeyId }).seal('x'.repeat(4097), CONTEXT)).rejects.toThrow(
      'cannot seal 4097 bytes with KMS Encrypt (at most 4096)',
    );
  });
});

describe('local sealing key', () => {
  it.each([
    [
      'a short key',
      new Uint8Array(16),
      'local sealing key must be 32 bytes (or their base64/base64url encoding); got 16 bytes',
    ],
    [
      'a short base64 string',
      Buffer.alloc(31).toString('base64'),
      'local sealing key must be 32 bytes (or their base64/base64url encoding); got 31 bytes',
    ],
  ])('rejects %s', (_, key, message) => {
    expect(() => createLocalSealer({ key })).toThrow(
      expect.objectContaining({ code: 'ERR_CONFIGURATION', message }),
    );
  });

  it('accepts base64 and base64url encodings of the same key', async () => {
    const raw = Buffer.alloc(32, 0xfb);
    const sealed = await createLocalSealer({ key: raw.toString('base64') }).seal(TOKEN, CONTEXT);
    expect(await createLocalSealer({ key: raw.toString('base64url') }).open(sealed, CONTEXT)).toBe(TOKEN);
    expect(await createLocalSealer({ key: new Uint8Array(raw) }).open(sealed, CONTEXT)).toBe(TOKEN);
  });
});
