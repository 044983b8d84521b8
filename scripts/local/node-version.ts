/**
 * Every command's first import. On an older Node, undici and
 * aws-local-stepfunctions fail while they load, with a stack trace that names
 * neither Node nor the fix; ESM evaluates imports in order, so this module
 * runs before theirs and stops with one line instead. It uses nothing newer
 * than Node 18 can load.
 */
import { readFileSync } from 'node:fs';

/**
 * The one line to print when `found` (e.g. `20.20.2`, the Node at `execPath`)
 * does not satisfy `engines` (package.json `engines.node`, e.g. `>=22`).
 */
export function nodeVersionProblem(found: string, engines: string, execPath: string): string | undefined {
  const required = /^>=\s*(\d+)(?:\.\d+){0,2}$/.exec(engines.trim());
  if (!required)
    throw new Error(`package.json engines.node must look like ">=22" (got ${JSON.stringify(engines)})`);
  const needed = Number(required[1]);
  if (Number(found.split('.')[0]) >= needed) return undefined;
  return `This project needs Node.js ${needed} or newer; found Node.js ${found} (${execPath}). Fix: run \`. scripts/dev-env.sh\` in this shell (it puts Node.js 24 first on PATH), then run the command again.`;
}

const packageJson = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  engines: { node: string };
};
const problem = nodeVersionProblem(process.versions.node, packageJson.engines.node, process.execPath);
if (problem) {
  process.stderr.write(`${problem}\n`);
  process.exit(1);
}
