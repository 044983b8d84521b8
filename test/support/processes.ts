import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Whether `pid` is a live process (an exited one waiting to be reaped is not). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' && process.platform === 'linux') return false;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Live processes whose command line contains `text` (e.g. a test's own temporary folder). */
export async function processesMentioning(text: string): Promise<{ pid: number; args: string }[]> {
  const { stdout } = await run('ps', ['-ww', '-eo', 'pid=,args=']);
  return stdout
    .split('\n')
    .map((line) => /^\s*(\d+)\s+(.*)$/.exec(line))
    .filter((match): match is RegExpExecArray => match !== null)
    .map((match) => ({ pid: Number(match[1]), args: match[2]! }))
    .filter((entry) => entry.args.includes(text) && entry.pid !== process.pid && isAlive(entry.pid));
}

/**
 * Resolves once `pid` is gone. A process that is not our child cannot be
 * awaited with an event, so this looks every 50 ms; the test's own timeout
 * bounds the wait.
 */
export async function untilGone(pid: number): Promise<void> {
  while (isAlive(pid)) await new Promise((resolve) => setTimeout(resolve, 50));
}
