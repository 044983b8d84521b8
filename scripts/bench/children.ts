/**
 * Measured runs happen in child processes, so that each one's peak RSS and
 * CPU time are its own. A child prints progress on stderr (passed through)
 * and its result as the last line of its stdout.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ChildResult } from './child.js';

export const progress = (message: string) => process.stderr.write(`[bench] ${message}\n`);

/**
 * A measured child runs as one bundled ES module, as the code runs in
 * Lambda: under tsx the loader thread alone adds ~30 MB of RSS that is not
 * ours. The bundle goes under node_modules/.cache so that bare imports resolve.
 * `child` names a file beside this one (`child.ts`, `validate-child.ts`).
 */
export async function bundleChild(child: string): Promise<string[]> {
  const entry = fileURLToPath(new URL(`./${child}`, import.meta.url));
  const outfile = fileURLToPath(
    new URL(`../../node_modules/.cache/bench/${child.replace(/\.ts$/, '.mjs')}`, import.meta.url),
  );
  try {
    const esbuild = await import('esbuild');
    await esbuild.build({
      entryPoints: [entry],
      outfile,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node22',
      packages: 'external',
      logLevel: 'error',
    });
    return [outfile];
  } catch (error) {
    progress(`could not bundle ${child} (${(error as Error).message}); running it under tsx`);
    return ['--import', 'tsx', entry];
  }
}

export const bundleTransferChild = () => bundleChild('child.ts');

/**
 * The workflow child runs under tsx: the local runner finds the ASL file
 * relative to its own source, which a bundle elsewhere would break. Its RSS
 * is not a headline figure (every concurrent "Lambda" shares that process).
 */
export const WORKFLOW_CHILD_COMMAND = [
  '--max-old-space-size=4096',
  '--import',
  'tsx',
  fileURLToPath(new URL('./workflow-child.ts', import.meta.url)),
];

export function runNodeChild<T>(command: readonly string[], argv: readonly string[]): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...command, ...argv], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) {
        reject(new Error(`bench child ${argv[0] ?? ''} exited with ${code}`));
        return;
      }
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1)!) as T);
      } catch (error) {
        reject(new Error(`bench child ${argv[0] ?? ''} printed no result`, { cause: error }));
      }
    });
  });
}

export interface TransferChildRunner {
  run(mode: 'download' | 'upload' | 'transfer', args: object): Promise<ChildResult>;
}

export function transferChildRunner(command: readonly string[], cpuProfDir?: string): TransferChildRunner {
  return {
    run(mode, args) {
      const profile = mode === 'transfer' && cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : [];
      return runNodeChild<ChildResult>([...profile, ...command], [mode, JSON.stringify(args)]);
    },
  };
}
