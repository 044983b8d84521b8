import { type ChildProcess, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ensureLocalKeyPair } from '../../../scripts/local/local-keys.js';
import type { FaultPlan, Sandbox } from '../../../scripts/sandbox/index.js';

/** The project folder (where package.json and node_modules are). */
export const PROJECT = fileURLToPath(new URL('../../../', import.meta.url));
const TSX_LOADER = pathToFileURL(join(PROJECT, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;

export interface CommandResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CommandOptions {
  /** The folder the command runs in: its `.local/` state lands here. */
  readonly cwd: string;
  readonly env?: NodeJS.ProcessEnv;
  /** @default this Node */
  readonly node?: string;
  /** Node options after tsx's loader, before the script (e.g. another `--import`). */
  readonly nodeArgs?: readonly string[];
  /** Close our end of the command's stdout at once, as `| head -0` would: its writes fail with EPIPE. */
  readonly closeStdout?: boolean;
}

export interface RunningCommand {
  readonly child: ChildProcess;
  /** The command's own process (no tsx wrapper in between: signals reach it, its pid is its own). */
  readonly pid: number;
  /** Resolves with the first stderr text matching `pattern` (everything written so far). */
  stderrMatching(pattern: RegExp): Promise<string>;
  readonly result: Promise<CommandResult>;
}

/**
 * Starts `scripts/<script>` as `npm run` would, but as one process: Node with
 * tsx's loader. A command that does not end within 55 s is killed, so a
 * hang fails the test (signal SIGKILL) instead of stalling the suite.
 */
export function startCommand(
  script: string,
  args: readonly string[],
  options: CommandOptions,
): RunningCommand {
  const child = spawn(
    options.node ?? process.execPath,
    ['--import', TSX_LOADER, ...(options.nodeArgs ?? []), join(PROJECT, 'scripts', script), ...args],
    {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 55_000,
      killSignal: 'SIGKILL',
    },
  );
  let stdout = '';
  let stderr = '';
  const watchers: { pattern: RegExp; resolve: (text: string) => void }[] = [];
  if (options.closeStdout) child.stdout!.destroy();
  else child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    for (const watcher of [...watchers]) {
      if (watcher.pattern.test(stderr)) {
        watchers.splice(watchers.indexOf(watcher), 1);
        watcher.resolve(stderr);
      }
    }
  });
  const result = new Promise<CommandResult>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return {
    child,
    pid: child.pid!,
    result,
    stderrMatching: (pattern) =>
      pattern.test(stderr)
        ? Promise.resolve(stderr)
        : Promise.race([
            new Promise<string>((resolve) => watchers.push({ pattern, resolve })),
            result.then(({ stderr: all }) => {
              throw new Error(`the command ended before stderr matched ${pattern}:\n${all}`);
            }),
          ]),
  };
}

export function runCommand(script: string, args: readonly string[], options: CommandOptions) {
  return startCommand(script, args, options).result;
}

/** An environment without what an outer `npm run` (e.g. `npm test`) left behind. */
export function plainEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const { INIT_CWD: _init, npm_package_json: _json, ...env } = process.env;
  return { ...env, ...extra };
}

/**
 * Registers a client with the sandbox (a key under `dir/keys`) and writes `dir/<file>` for `--source`.
 * `exportSettings` replaces the default group export (e.g. a chunked one), as a source file's
 * `export` would; without it every caller gets the same plain group export as before.
 */
export async function writeSourceFile(
  sandbox: Sandbox,
  dir: string,
  file: string,
  id: string,
  faults?: FaultPlan,
  exportSettings: Record<string, unknown> = { level: 'group', groupId: 'cohort' },
): Promise<string> {
  const key = await ensureLocalKeyPair(join(dir, 'keys'));
  const { clientId } = await sandbox.registerClient({
    jwks: { keys: [key.publicJwk] },
    ...(faults ? { faults } : {}),
  });
  const path = join(dir, file);
  await writeFile(
    path,
    JSON.stringify({
      id,
      fhirBaseUrl: sandbox.baseUrl,
      clientId,
      privateKeyFile: key.privateKeyFile,
      allowInsecureHttp: true,
      export: exportSettings,
    }),
  );
  return path;
}
