import {
  createCipheriv,
  createDecipheriv,
  constants as cryptoConstants,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  randomUUID,
  sign,
  verify,
} from 'node:crypto';
import {
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DisabledException,
  DisableKeyCommand,
  EncryptCommand,
  GetPublicKeyCommand,
  IncorrectKeyException,
  InvalidCiphertextException,
  InvalidKeyUsageException,
  KMSInvalidSignatureException,
  KMSServiceException,
  NotFoundException,
  SignCommand,
  UnsupportedOperationException,
  VerifyCommand,
} from '@aws-sdk/client-kms';

/**
 * A stand-in for AWS KMS that does the real cryptography: asymmetric keys sign
 * with node:crypto (DER for ECDSA, as KMS returns), symmetric keys encrypt with
 * AES-256-GCM binding the encryption context as AAD. It matches on each
 * command's input and answers with the errors the SDK would raise, named as the
 * SDK names them, so a wrong call fails here as it would against KMS.
 */

type SigningKeySpec = 'ECC_NIST_P256' | 'ECC_NIST_P384' | 'RSA_2048' | 'RSA_3072' | 'RSA_4096';
type KeySpec = SigningKeySpec | 'SYMMETRIC_DEFAULT';
type KeyUsage = 'SIGN_VERIFY' | 'ENCRYPT_DECRYPT';

interface StandInKey {
  readonly keyId: string;
  readonly arn: string;
  readonly keySpec: KeySpec;
  readonly keyUsage: KeyUsage;
  readonly privateKey?: KeyObject;
  readonly publicKey?: KeyObject;
  readonly secret?: Buffer;
  enabled: boolean;
}

const METADATA = { httpStatusCode: 400, requestId: 'stand-in', attempts: 1, totalRetryDelay: 0 };

/** KMS's request validation error; the SDK does not model it, so it arrives as a generic service exception. */
class ValidationException extends KMSServiceException {
  constructor(message: string) {
    super({ name: 'ValidationException', $fault: 'client', $metadata: METADATA, message });
  }
}

const SIGNING_ALGORITHMS: Record<SigningKeySpec, readonly string[]> = {
  ECC_NIST_P256: ['ECDSA_SHA_256'],
  ECC_NIST_P384: ['ECDSA_SHA_384'],
  RSA_2048: rsaAlgorithms(),
  RSA_3072: rsaAlgorithms(),
  RSA_4096: rsaAlgorithms(),
};

function rsaAlgorithms(): string[] {
  return ['SHA_256', 'SHA_384', 'SHA_512'].flatMap((hash) => [
    `RSASSA_PSS_${hash}`,
    `RSASSA_PKCS1_V1_5_${hash}`,
  ]);
}

function hashOf(algorithm: string): string {
  const match = /SHA_(256|384|512)$/.exec(algorithm);
  if (!match) throw new Error(`KMS stand-in: no hash in ${algorithm}`);
  return `sha${match[1]}`;
}

function signOptions(key: KeyObject, algorithm: string) {
  if (algorithm.startsWith('ECDSA')) return { key, dsaEncoding: 'der' as const };
  if (algorithm.startsWith('RSASSA_PSS')) {
    return {
      key,
      padding: cryptoConstants.RSA_PKCS1_PSS_PADDING,
      saltLength: cryptoConstants.RSA_PSS_SALTLEN_DIGEST,
    };
  }
  return { key, padding: cryptoConstants.RSA_PKCS1_PADDING };
}

function canonicalContext(context: Record<string, string> | undefined): Buffer {
  const entries = Object.entries(context ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Buffer.from(JSON.stringify(entries), 'utf8');
}

function asBytes(value: unknown, member: string): Buffer {
  if (!(value instanceof Uint8Array)) {
    throw new ValidationException(
      `1 validation error detected: Value at '${member}' failed to satisfy constraint: Member must not be null`,
    );
  }
  return Buffer.from(value);
}

export interface RecordedCall {
  readonly command: string;
  readonly input: Record<string, unknown>;
}

export class KmsStandIn {
  readonly region: string;
  readonly account = '111122223333';
  /** Every command received, in order, for asserting the exact requests sent. */
  readonly calls: RecordedCall[] = [];
  private readonly keys = new Map<string, StandInKey>();
  private readonly aliases = new Map<string, string>();
  private readonly failures: Array<{ command: string; error: Error }> = [];

  constructor(options: { region?: string } = {}) {
    this.region = options.region ?? 'us-east-1';
  }

  /** Like `CreateKey`, synchronously, for test setup. */
  createKey(options: { KeySpec?: KeySpec; KeyUsage?: KeyUsage } = {}): { KeyId: string; Arn: string } {
    const keySpec = options.KeySpec ?? 'SYMMETRIC_DEFAULT';
    const keyUsage =
      options.KeyUsage ?? (keySpec === 'SYMMETRIC_DEFAULT' ? 'ENCRYPT_DECRYPT' : 'SIGN_VERIFY');
    if (keySpec === 'SYMMETRIC_DEFAULT' && keyUsage !== 'ENCRYPT_DECRYPT') {
      throw new ValidationException('SYMMETRIC_DEFAULT keys must have KeyUsage ENCRYPT_DECRYPT');
    }
    const keyId = randomUUID();
    const arn = `arn:aws:kms:${this.region}:${this.account}:key/${keyId}`;
    let pair: { privateKey: KeyObject; publicKey: KeyObject } | undefined;
    if (keySpec.startsWith('ECC_')) {
      pair = generateKeyPairSync('ec', { namedCurve: keySpec === 'ECC_NIST_P256' ? 'P-256' : 'P-384' });
    } else if (keySpec.startsWith('RSA_')) {
      pair = generateKeyPairSync('rsa', { modulusLength: Number(keySpec.slice(4)) });
    }
    const key: StandInKey = {
      keyId,
      arn,
      keySpec,
      keyUsage,
      enabled: true,
      ...(pair ?? { secret: randomBytes(32) }),
    };
    this.keys.set(keyId, key);
    return { KeyId: keyId, Arn: arn };
  }

  createAlias(aliasName: string, targetKeyId: string): void {
    if (!aliasName.startsWith('alias/')) throw new ValidationException('AliasName must start with alias/');
    this.aliases.set(aliasName, this.resolve(targetKeyId).keyId);
  }

  /** The next `command` (e.g. 'Sign') fails with `error` instead of running. */
  failNext(command: string, error: Error): void {
    this.failures.push({ command, error });
  }

  callsOf(command: string): RecordedCall[] {
    return this.calls.filter((call) => call.command === command);
  }

  async send(command: unknown): Promise<unknown> {
    const name = (command as { constructor: { name: string } }).constructor.name.replace(/Command$/, '');
    const input = { ...((command as { input?: Record<string, unknown> }).input ?? {}) };
    this.calls.push({ command: name, input });
    const failure = this.failures.findIndex((entry) => entry.command === name);
    if (failure >= 0) {
      const [entry] = this.failures.splice(failure, 1);
      throw entry!.error;
    }
    if (command instanceof CreateKeyCommand) {
      const created = this.createKey({
        ...(input.KeySpec ? { KeySpec: input.KeySpec as KeySpec } : {}),
        ...(input.KeyUsage ? { KeyUsage: input.KeyUsage as KeyUsage } : {}),
      });
      return { KeyMetadata: { KeyId: created.KeyId, Arn: created.Arn }, $metadata: METADATA };
    }
    if (command instanceof CreateAliasCommand) {
      this.createAlias(String(input.AliasName), String(input.TargetKeyId));
      return { $metadata: METADATA };
    }
    if (command instanceof DisableKeyCommand) {
      this.resolve(input.KeyId).enabled = false;
      return { $metadata: METADATA };
    }
    if (command instanceof GetPublicKeyCommand) return this.getPublicKey(input);
    if (command instanceof SignCommand) return this.sign(input);
    if (command instanceof VerifyCommand) return this.verify(input);
    if (command instanceof EncryptCommand) return this.encrypt(input);
    if (command instanceof DecryptCommand) return this.decrypt(input);
    throw new Error(`KMS stand-in does not implement ${name}`);
  }

  private resolve(keyIdInput: unknown): StandInKey {
    if (typeof keyIdInput !== 'string' || keyIdInput === '') {
      throw new ValidationException(
        "1 validation error detected: Value at 'keyId' failed to satisfy constraint: Member must not be null",
      );
    }
    let id = keyIdInput;
    const arnPrefix = `arn:aws:kms:${this.region}:${this.account}:`;
    if (id.startsWith('arn:')) {
      if (!id.startsWith(arnPrefix))
        throw new NotFoundException({ message: `Key '${keyIdInput}' does not exist`, $metadata: METADATA });
      id = id.slice(arnPrefix.length);
      if (id.startsWith('key/')) id = id.slice(4);
    }
    if (id.startsWith('alias/')) {
      const target = this.aliases.get(id);
      if (!target)
        throw new NotFoundException({
          message: `Alias ${arnPrefix}${id} is not found.`,
          $metadata: METADATA,
        });
      id = target;
    }
    const key = this.keys.get(id);
    if (!key)
      throw new NotFoundException({
        message: `Key '${arnPrefix}key/${id}' does not exist`,
        $metadata: METADATA,
      });
    if (!key.enabled)
      throw new DisabledException({ message: `${key.arn} is disabled.`, $metadata: METADATA });
    return key;
  }

  private invalidUsage(key: StandInKey, operation: string): InvalidKeyUsageException {
    return new InvalidKeyUsageException({
      message: `${key.arn} key usage is ${key.keyUsage} which is not valid for ${operation}.`,
      $metadata: METADATA,
    });
  }

  private getPublicKey(input: Record<string, unknown>) {
    const key = this.resolve(input.KeyId);
    if (!key.publicKey) {
      throw new UnsupportedOperationException({
        message: `${key.arn} key type is SYMMETRIC_DEFAULT which is not valid for GetPublicKey.`,
        $metadata: METADATA,
      });
    }
    const der = key.publicKey.export({ format: 'der', type: 'spki' });
    return {
      KeyId: key.arn,
      PublicKey: new Uint8Array(der),
      KeySpec: key.keySpec,
      CustomerMasterKeySpec: key.keySpec,
      KeyUsage: key.keyUsage,
      SigningAlgorithms: [...SIGNING_ALGORITHMS[key.keySpec as SigningKeySpec]],
      $metadata: { ...METADATA, httpStatusCode: 200 },
    };
  }

  private checkSigning(
    key: StandInKey,
    input: Record<string, unknown>,
    operation: string,
  ): { message: Buffer; algorithm: string } {
    if (key.keyUsage !== 'SIGN_VERIFY' || !key.privateKey) throw this.invalidUsage(key, operation);
    const algorithm = input.SigningAlgorithm;
    if (typeof algorithm !== 'string') {
      throw new ValidationException(
        "1 validation error detected: Value at 'signingAlgorithm' failed to satisfy constraint: Member must not be null",
      );
    }
    if (!SIGNING_ALGORITHMS[key.keySpec as SigningKeySpec].includes(algorithm)) {
      throw new InvalidKeyUsageException({
        message: `Signing algorithm ${algorithm} is not valid for ${key.arn} (KeySpec ${key.keySpec}).`,
        $metadata: METADATA,
      });
    }
    const message = asBytes(input.Message, 'message');
    if (message.length === 0 || message.length > 4096) {
      throw new ValidationException(
        "1 validation error detected: Value at 'message' failed to satisfy constraint: Member must have length less than or equal to 4096",
      );
    }
    const messageType = input.MessageType ?? 'RAW';
    if (messageType !== 'RAW')
      throw new Error(`KMS stand-in implements MessageType RAW only (got ${String(messageType)})`);
    return { message, algorithm };
  }

  private sign(input: Record<string, unknown>) {
    const key = this.resolve(input.KeyId);
    const { message, algorithm } = this.checkSigning(key, input, 'Sign');
    const signature = sign(hashOf(algorithm), message, signOptions(key.privateKey!, algorithm));
    return {
      KeyId: key.arn,
      Signature: new Uint8Array(signature),
      SigningAlgorithm: algorithm,
      $metadata: { ...METADATA, httpStatusCode: 200 },
    };
  }

  private verify(input: Record<string, unknown>) {
    const key = this.resolve(input.KeyId);
    const { message, algorithm } = this.checkSigning(key, input, 'Verify');
    const signature = asBytes(input.Signature, 'signature');
    if (!verify(hashOf(algorithm), message, signOptions(key.publicKey!, algorithm), signature)) {
      throw new KMSInvalidSignatureException({ message: 'Signature is not valid.', $metadata: METADATA });
    }
    return { KeyId: key.arn, SignatureValid: true, SigningAlgorithm: algorithm, $metadata: METADATA };
  }

  private encrypt(input: Record<string, unknown>) {
    const key = this.resolve(input.KeyId);
    if (key.keyUsage !== 'ENCRYPT_DECRYPT' || !key.secret) throw this.invalidUsage(key, 'Encrypt');
    const plaintext = asBytes(input.Plaintext, 'plaintext');
    if (plaintext.length === 0 || plaintext.length > 4096) {
      throw new ValidationException(
        "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096",
      );
    }
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key.secret, iv);
    cipher.setAAD(canonicalContext(input.EncryptionContext as Record<string, string> | undefined));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    const keyIdBytes = Buffer.from(key.keyId, 'utf8');
    // Like KMS, the blob names its key, so Decrypt needs no KeyId for a symmetric key.
    const blob = Buffer.concat([
      Buffer.from([1, keyIdBytes.length]),
      keyIdBytes,
      iv,
      cipher.getAuthTag(),
      body,
    ]);
    return {
      KeyId: key.arn,
      CiphertextBlob: new Uint8Array(blob),
      EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
      $metadata: { ...METADATA, httpStatusCode: 200 },
    };
  }

  private decrypt(input: Record<string, unknown>) {
    const blob = asBytes(input.CiphertextBlob, 'ciphertextBlob');
    const invalid = () => new InvalidCiphertextException({ message: '', $metadata: METADATA });
    if (blob.length < 2 + 12 + 16 || blob[0] !== 1) throw invalid();
    const idLength = blob[1]!;
    const blobKeyId = blob.subarray(2, 2 + idLength).toString('utf8');
    const key = this.keys.get(blobKeyId);
    if (!key) throw invalid();
    if (input.KeyId !== undefined) {
      const named = this.resolve(input.KeyId);
      if (named.keyId !== key.keyId) {
        throw new IncorrectKeyException({
          message: 'The key ID in the request does not identify a KMS key that can perform this operation.',
          $metadata: METADATA,
        });
      }
    }
    if (!key.enabled)
      throw new DisabledException({ message: `${key.arn} is disabled.`, $metadata: METADATA });
    if (key.keyUsage !== 'ENCRYPT_DECRYPT' || !key.secret) throw this.invalidUsage(key, 'Decrypt');
    const offset = 2 + idLength;
    const iv = blob.subarray(offset, offset + 12);
    const tag = blob.subarray(offset + 12, offset + 28);
    if (iv.length !== 12 || tag.length !== 16) throw invalid();
    try {
      const decipher = createDecipheriv('aes-256-gcm', key.secret, iv);
      decipher.setAAD(canonicalContext(input.EncryptionContext as Record<string, string> | undefined));
      decipher.setAuthTag(tag);
      const plaintext = Buffer.concat([decipher.update(blob.subarray(offset + 28)), decipher.final()]);
      return {
        KeyId: key.arn,
        Plaintext: new Uint8Array(plaintext),
        EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
        $metadata: { ...METADATA, httpStatusCode: 200 },
      };
    } catch {
      throw invalid();
    }
  }
}
