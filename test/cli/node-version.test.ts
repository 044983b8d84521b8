import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeVersionProblem } from '../../scripts/local/node-version.js';
import { PROJECT, plainEnv, runCommand } from './support/command.js';

const execFileAsync = promisify(execFile);

const FIX =
  'Fix: run `. scripts/dev-env.sh` in this shell (it puts Node.js 24 first on PATH), then run the command again.';

describe('nodeVersionProblem', () => {
  it.each([
    ['20.20.2', '>=22', 'This project needs Node.js 22 or newer; found Node.js 20.20.2 (/usr/bin/node). '],
    ['18.0.0', '>= 22.1', 'This project needs Node.js 22 or newer; found Node.js 18.0.0 (/usr/bin/node). '],
    ['21.7.3', '>=22', 'This project needs Node.js 22 or newer; found Node.js 21.7.3 (/usr/bin/node). '],
  ])(
    'Node %s against engines %s: one line with what was found, what is needed and the fix',
    (found, engines, start) => {
      expect(nodeVersionProblem(found, engines, '/usr/bin/node')).toBe(`${start}${FIX}`);
    },
  );

  it.each([
    ['22.0.0', '>=22'],
    ['24.22.3', '>=22'],
  ])('Node %s satisfies %s', (found, engines) => {
    expect(nodeVersionProblem(found, engines, '/usr/bin/node')).toBeUndefined();
  });

  it('reads the same requirement as package.json states, which is the one npm enforces', async () => {
    const packageJson = JSON.parse(await readFile(join(PROJECT, 'package.json'), 'utf8'));
    expect(packageJson.engines.node).toBe('>=22');
    expect(nodeVersionProblem('21.99.0', packageJson.engines.node, 'node')).toContain('needs Node.js 22');
    expect(await readFile(join(PROJECT, '.npmrc'), 'utf8')).toMatch(/^engine-strict=true$/m);
  });

  it('refuses an engines field it cannot read rather than letting any Node through', () => {
    expect(() => nodeVersionProblem('20.0.0', '^22 || ^24', 'node')).toThrow(
      'package.json engines.node must look like ">=22" (got "^22 || ^24")',
    );
  });
});

interface OlderNode {
  readonly label: string;
  readonly node: string;
  /** Loaded after tsx (which picks its hooks by Node version) and before the command. */
  readonly nodeArgs: readonly string[];
  readonly version: string;
  readonly execPath: string;
}

/** The machine's own Node older than 22, if it has one (these machines ship Node 20). */
function machineOlderNode(): OlderNode | undefined {
  const candidates = [
    ...(process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'node')),
    '/usr/bin/node',
    '/usr/local/bin/node',
    '/bin/node',
  ];
  for (const candidate of new Set(candidates)) {
    if (!existsSync(candidate)) continue;
    try {
      const [version, execPath] = execFileSync(
        candidate,
        ['-p', 'process.versions.node + "\\n" + process.execPath'],
        { encoding: 'utf8' },
      )
        .trim()
        .split('\n');
      if (Number(version!.split('.')[0]) < 22) {
        return {
          label: `the machine's Node ${version}`,
          node: candidate,
          nodeArgs: [],
          version: version!,
          execPath: execPath!,
        };
      }
    } catch {
      // Not a runnable Node: try the next one.
    }
  }
  return undefined;
}

/** This Node, told it is 20.0.0 before the command loads: the check runs here whatever the machine has. */
const FAKE_OLDER_NODE: OlderNode = {
  label: 'this Node posing as 20.0.0',
  node: process.execPath,
  nodeArgs: [
    '--import',
    "data:text/javascript,Object.defineProperty(process.versions,'node',{value:'20.0.0'})",
  ],
  version: '20.0.0',
  execPath: process.execPath,
};

const machineOld = machineOlderNode();
const OLDER_NODES = [...(machineOld ? [machineOld] : []), FAKE_OLDER_NODE];
const ENTRY_POINTS = [
  ['demo', 'demo.ts'],
  ['export', 'export.ts'],
  ['backfill', 'backfill.ts'],
  ['keys', 'keys.ts'],
  ['sandbox', 'sandbox/cli.ts'],
  ['bench', 'bench/index.ts'],
  ['validate', 'validate.ts'],
  ['query', 'query.ts'],
] as const;

describe('every entry point on a Node older than 22', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cli-old-node-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.each(OLDER_NODES.flatMap((older) => ENTRY_POINTS.map(([name, script]) => ({ name, script, older }))))(
    '$name on $older.label stops with exit 1 and one line: found, needed, the fix',
    async ({ script, older }) => {
      // --help too: the check comes before anything else, undici's import included.
      const result = await runCommand(script, ['--help'], {
        cwd: dir,
        env: plainEnv(),
        node: older.node,
        nodeArgs: older.nodeArgs,
      });

      expect(result).toStrictEqual({
        code: 1,
        signal: null,
        stdout: '',
        stderr: `This project needs Node.js 22 or newer; found Node.js ${older.version} (${older.execPath}). ${FIX}\n`,
      });
    },
  );

  it('npm ci refuses to install, naming the Node found and the one required', async () => {
    // A copy of what npm ci reads; with no older Node here, the copy asks for one newer than this.
    const copy = await mkdtemp(join(tmpdir(), 'cli-npm-ci-'));
    try {
      for (const file of ['package.json', 'package-lock.json', '.npmrc']) {
        await copyFile(join(PROJECT, file), join(copy, file));
      }
      let required = '>=22';
      if (!machineOld) {
        required = `>=${Number(process.versions.node.split('.')[0]) + 1}`;
        const packageJson = JSON.parse(await readFile(join(copy, 'package.json'), 'utf8'));
        await writeFile(
          join(copy, 'package.json'),
          JSON.stringify({ ...packageJson, engines: { node: required } }),
        );
      }
      const node = machineOld?.node ?? process.execPath;
      const env = plainEnv({ PATH: `${dirname(node)}${delimiter}${process.env.PATH}` });

      const failure = await execFileAsync(
        'npm',
        ['ci', '--dry-run', '--ignore-scripts', '--no-audit', '--no-fund'],
        {
          cwd: copy,
          env,
        },
      ).then(
        () => undefined,
        (error: { code: number; stderr: string }) => error,
      );

      expect(failure?.code).toBe(1);
      expect(failure?.stderr).toContain('EBADENGINE');
      expect(failure?.stderr).toContain(`Required: {"node":"${required}"}`);
      expect(failure?.stderr).toMatch(/Actual: +\{"node":"v\d+\.\d+\.\d+"/);
    } finally {
      await rm(copy, { recursive: true, force: true });
    }
  }, 60_000);
});
