import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { callerDirectory, integerOption, parseCommandLine } from '../../scripts/local/command.js';
import { PROJECT, plainEnv, runCommand } from './support/command.js';

const execFileAsync = promisify(execFile);

/** Every command, and the arguments that put an unknown option where that command parses options. */
const COMMANDS = [
  ['demo', 'demo.ts', []],
  ['export', 'export.ts', []],
  ['backfill', 'backfill.ts', []],
  ['keys', 'keys.ts', ['generate']],
  ['sandbox', 'sandbox/cli.ts', []],
  ['bench', 'bench/index.ts', []],
  ['sources', 'sources.ts', []],
  ['status', 'status.ts', []],
  ['validate', 'validate.ts', []],
  ['query', 'query.ts', []],
] as const;

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cli-usage-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('every command, as a process', () => {
  it.each(COMMANDS)(
    '%s --help prints its usage on stdout, exits 0 and starts nothing',
    async (name, script, prefix) => {
      const result = await runCommand(script, [...prefix, '--help'], { cwd: dir, env: plainEnv() });

      expect({ code: result.code, stderr: result.stderr }).toStrictEqual({ code: 0, stderr: '' });
      expect(result.stdout).toMatch(new RegExp(`^usage:\\s+npm run (-s )?${name}\\b`, 'i'));
      // The demo used to run on --help: it would have made .local/ here.
      expect(await readdir(dir)).toStrictEqual([]);
    },
  );

  it.each(COMMANDS)(
    '%s rejects an unknown option with one clear line and exit 2',
    async (name, script, prefix) => {
      const result = await runCommand(script, [...prefix, '--no-such-option'], { cwd: dir, env: plainEnv() });

      expect(result.code).toBe(2);
      expect(result.stderr.split('\n')[0]).toBe(`${name}: Unknown option '--no-such-option'`);
      expect(result.stdout).toBe('');
      expect(await readdir(dir)).toStrictEqual([]);
    },
  );

  it.each([
    [['--patients', '0'], 'demo: --patients must be a whole number from 1 to 100000 (got "0")'],
    [['--patients', 'many'], 'demo: --patients must be a whole number from 1 to 100000 (got "many")'],
    [['--patients', '1e3'], 'demo: --patients must be a whole number from 1 to 100000 (got "1e3")'],
    [['--patients', '200000'], 'demo: --patients must be a whole number from 1 to 100000 (got "200000")'],
    [['--patients'], "demo: Option '--patients <value>' argument missing"],
    [['20'], "demo: Unexpected argument '20'"],
  ])('demo %j exits 2: %s', async (args, line) => {
    const result = await runCommand('demo.ts', args, { cwd: dir, env: plainEnv() });

    expect(result.code).toBe(2);
    expect(result.stderr.split('\n')[0]).toBe(line);
    expect(await readdir(dir)).toStrictEqual([]);
  });

  it.each([
    [['--source', 'unread.json', '--aws-s3'], 'export: --aws-s3 needs --bucket NAME (an existing bucket)'],
    [
      ['--source', 'unread.json', '--aws-s3', '--s3-endpoint', 'http://127.0.0.1:9', '--bucket', 'b'],
      'export: --s3-endpoint and --aws-s3 name two different stores; give one of them',
    ],
    [['--since', 'auto'], 'export: --source <file.json> is required (or --resume NAME)'],
    [
      ['--resume', 'hapi-local-1234abcd', '--source', 'unread.json'],
      'export: --resume continues an export as it was started; --source cannot be changed (start a new export for that)',
    ],
    [
      ['--resume', 'hapi-local-1234abcd'],
      `export: no local execution hapi-local-1234abcd in .local/executions: --resume takes the name a failed \`npm run export\` printed in this folder`,
    ],
    [
      ['--resume', '../etc/passwd'],
      'export: --resume takes the execution name an export printed (letters, digits, - and _), got "../etc/passwd"',
    ],
    [
      ['--state-machine-arn', 'arn:aws:states:us-east-1:123456789012:stateMachine:bulk'],
      'export: --state-machine-arn is for --resume NAME (a new AWS export is started by the schedule or `npm run backfill`)',
    ],
    [
      ['--source', 'unread.json', '--since', 'yesterday'],
      'export: --since must be an ISO 8601 instant with a timezone, e.g. 2026-01-31T00:00:00Z',
    ],
    [
      ['--source', 'unread.json', '--since', '2026-02-01T00:00:00Z', '--until', '2026-01-01T00:00:00Z'],
      'export: --since must be earlier than --until',
    ],
    [
      ['--source', 'unread.json', '--types', 'Patient,observation'],
      'export: --types[1] must be a FHIR resource type such as Patient',
    ],
    [
      ['--source', 'unread.json', '--chunk', 'patients'],
      'export: --chunk must be patients:<size>, time:<window such as 30d> or none (got "patients")',
    ],
    [
      ['--source', 'unread.json', '--chunk', 'time:30'],
      'export: --chunk.window must be a whole number of days or hours such as 30d or 12h',
    ],
    [
      ['--source', 'unread.json', '--chunk', 'patients:20000'],
      'export: --chunk.size must be an integer from 1 to 10000 (got 20000)',
    ],
  ])('export %j exits 2 before reading or starting anything: %s', async (args, line) => {
    const result = await runCommand('export.ts', args, { cwd: dir, env: plainEnv() });

    expect(result.code).toBe(2);
    expect(result.stderr.split('\n')[0]).toBe(line);
    expect(await readdir(dir)).toStrictEqual([]);
  });

  it('backfill checks --types before reading or starting anything: exit 2 and one line', async () => {
    const args = [
      '--source',
      'unread.json',
      '--from',
      '2026-01-01T00:00:00Z',
      '--to',
      '2026-02-01T00:00:00Z',
    ];
    const result = await runCommand('backfill.ts', [...args, '--types', 'Patient,observation'], {
      cwd: dir,
      env: plainEnv(),
    });

    expect(result.code).toBe(2);
    expect(result.stderr.split('\n')[0]).toBe(
      'backfill: --types[1] must be a FHIR resource type such as Patient',
    );
    expect(await readdir(dir)).toStrictEqual([]);
  });

  it('export reads --source from the folder npm run was started in, not the project folder', async () => {
    // What `npm run` sets up: the script runs in the project folder, the caller's folder is in INIT_CWD.
    const project = join(dir, 'project');
    const caller = join(dir, 'caller');
    await mkdir(project);
    await mkdir(caller);
    const env = plainEnv({ INIT_CWD: caller, npm_package_json: join(project, 'package.json') });

    const result = await runCommand('export.ts', ['--source', 'rel/source.json'], { cwd: project, env });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`cannot read source file ${join(caller, 'rel', 'source.json')}: ENOENT`);
  });

  it('keys generate --out writes into the folder npm run was started in', async () => {
    const project = join(dir, 'project');
    const caller = join(dir, 'caller');
    await mkdir(project);
    await mkdir(caller);
    const env = plainEnv({ INIT_CWD: caller, npm_package_json: join(project, 'package.json') });

    const result = await runCommand('keys.ts', ['generate', '--alg', 'ES384', '--out', 'my-keys'], {
      cwd: project,
      env,
    });

    expect(result.code).toBe(0);
    expect(await readdir(join(caller, 'my-keys'))).toStrictEqual([
      expect.stringMatching(/^[A-Za-z0-9_-]{43}\.private\.jwk\.json$/),
    ]);
    expect(await readdir(project)).toStrictEqual([]);
  });

  it('through npm itself: `npm run demo -- --help` prints usage, `npm run export` reads a relative --source from the caller', async () => {
    const caller = join(dir, 'caller');
    await mkdir(caller);
    const npm = (args: string[]) =>
      execFileAsync('npm', ['--prefix', PROJECT, 'run', '-s', ...args], {
        cwd: caller,
        env: plainEnv(),
      }).then(
        ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
        (error: { code: number; stdout: string; stderr: string }) => error,
      );

    const help = await npm(['demo', '--', '--help']);
    const missing = await npm(['export', '--', '--source', 'rel/source.json']);

    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^usage: npm run demo/);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`cannot read source file ${join(caller, 'rel', 'source.json')}: ENOENT`);
  }, 60_000);
});

describe('command line parsing', () => {
  it.each([
    ['npm run from a subfolder', { INIT_CWD: '/p/sub', npm_package_json: '/p/package.json' }, '/p', '/p/sub'],
    ['started directly', {}, '/somewhere', '/somewhere'],
    [
      'started by a process that an npm run started elsewhere',
      { INIT_CWD: '/p', npm_package_json: '/p/package.json' },
      '/tmp/work',
      '/tmp/work',
    ],
  ])('the caller directory, %s', (_, env, cwd, expected) => {
    expect(callerDirectory(env, cwd)).toBe(expected);
  });

  it.each([
    [['--nope'], "Unknown option '--nope'"],
    [['stray'], "Unexpected argument 'stray'"],
    [['--count'], "Option '--count <value>' argument missing"],
  ])('%j is a UsageError: %s', (argv, message) => {
    expect(() => parseCommandLine(argv, { count: { type: 'string' } })).toThrow(
      expect.objectContaining({ name: 'UsageError', message }),
    );
  });

  it('--help anywhere asks for the usage, even next to a wrong option', () => {
    expect(() => parseCommandLine(['--nope', '--help'], {})).toThrow(
      expect.objectContaining({ name: 'HelpRequested' }),
    );
  });

  it.each([
    ['7', { min: 1 }, 7],
    ['0', { min: 0, max: 3 }, 0],
    [undefined, {}, undefined],
  ])('integerOption(%j, %j) is %j', (value, range, expected) => {
    expect(integerOption('n', value, range)).toBe(expected);
  });

  it.each([
    ['-1', {}, '--n must be a whole number 1 or more (got "-1")'],
    ['2.5', {}, '--n must be a whole number 1 or more (got "2.5")'],
    ['', {}, '--n must be a whole number 1 or more (got "")'],
    ['70000', { min: 0, max: 65535 }, '--n must be a whole number from 0 to 65535 (got "70000")'],
  ])('integerOption(%j, %j) is a UsageError: %s', (value, range, message) => {
    expect(() => integerOption('n', value, range)).toThrow(
      expect.objectContaining({ name: 'UsageError', message }),
    );
  });
});
