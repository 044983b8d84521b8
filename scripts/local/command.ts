/**
 * What every command shares: its options parsed strictly (`--help` is usage
 * and exit 0, a wrong option one clear line and exit 2, a failure exit 1),
 * paths resolved against the folder the user ran it from, and output errors
 * that end the command with a status instead of a stack trace.
 */
import { dirname, resolve } from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';

/** The command line is wrong: the message says what and what was expected; exit 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** `--help` was given: print the usage on stdout, exit 0. */
export class HelpRequested extends Error {
  override readonly name = 'HelpRequested';
}

type OptionsConfig = NonNullable<ParseArgsConfig['options']>;

/**
 * Strict parsing: an unknown option or a stray argument is a UsageError, never
 * ignored. `--help` (or `-h`) anywhere is HelpRequested.
 */
export function parseCommandLine<const O extends OptionsConfig>(
  argv: readonly string[],
  options: O,
  { allowPositionals = false }: { allowPositionals?: boolean } = {},
) {
  if (argv.includes('--help') || argv.includes('-h')) throw new HelpRequested();
  try {
    return parseArgs({ args: [...argv], options, strict: true, allowPositionals });
  } catch (error) {
    if (!(error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) throw error;
    // Node's text goes on about `--` and positionals; the first sentence is the point.
    throw new UsageError((error as Error).message.split(/\.\s/)[0]!.replace(/\.$/, ''));
  }
}

/** An option that must be a whole number in a range; UsageError otherwise. */
export function integerOption(
  name: string,
  value: string | undefined,
  { min = 1, max = Number.MAX_SAFE_INTEGER }: { min?: number; max?: number } = {},
): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!/^-?\d+$/.test(value.trim()) || number < min || number > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `${min} or more` : `from ${min} to ${max}`;
    throw new UsageError(`--${name} must be a whole number ${range} (got ${JSON.stringify(value)})`);
  }
  return number;
}

/**
 * The folder the user ran the command from. `npm run` starts a script in the
 * project folder and leaves the caller's folder in INIT_CWD; a command started
 * any other way (tsx, node, a test) runs where it was started, even when it
 * inherited INIT_CWD from an npm run further up.
 */
export function callerDirectory(env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): string {
  const startedByNpmRun =
    env.INIT_CWD !== undefined &&
    env.npm_package_json !== undefined &&
    resolve(dirname(env.npm_package_json)) === resolve(cwd);
  return startedByNpmRun ? env.INIT_CWD! : cwd;
}

/** A path given on the command line, as the user meant it: relative to their folder. */
export function resolveFromCaller(path: string): string {
  return resolve(callerDirectory(), path);
}

/** What a usage problem prints: one line saying what was wrong, and where the usage is. */
export function usageMessage(command: string, error: Error): string {
  return `${command}: ${error.message}\nSee \`npm run ${command} -- --help\` for the usage.\n`;
}

/**
 * For commands that parse at the top level, before anything is started:
 * prints and exits on `--help` (0) or a usage problem (2), otherwise returns
 * what `parse` returned.
 */
export function parseOrExit<T>(command: string, usage: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (error instanceof HelpRequested) {
      process.stdout.write(`${usage}\n`);
      process.exit(0);
    }
    if (error instanceof UsageError) {
      process.stderr.write(usageMessage(command, error));
      process.exit(2);
    }
    throw error;
  }
}

/**
 * Runs a command's `main` and sets the exit status: its return value, 0 for
 * `--help`, 2 for a usage problem, 1 for a failure (one line, `<command>
 * failed: …`) or when stdout could not be written (a closed pipe). `main`
 * closes what it started in its own `finally`, so the process then ends.
 */
export function runCommand(command: string, usage: string, main: () => Promise<number>): void {
  let stdoutFailed = false;
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (!stdoutFailed) {
      process.stderr.write(`${command}: cannot write to standard output (${error.code ?? error.message})\n`);
    }
    stdoutFailed = true;
    process.exitCode = 1;
  });
  main().then(
    (code) => {
      process.exitCode = stdoutFailed ? Math.max(code, 1) : code;
    },
    (error: unknown) => {
      if (error instanceof HelpRequested) {
        process.stdout.write(`${usage}\n`);
        process.exitCode = stdoutFailed ? 1 : 0;
        return;
      }
      if (error instanceof UsageError) {
        process.stderr.write(usageMessage(command, error));
        process.exitCode = 2;
        return;
      }
      const { name, message } = error as Error;
      process.stderr.write(`${command} failed: ${name && name !== 'Error' ? `${name}: ` : ''}${message}\n`);
      process.exitCode = 1;
    },
  );
}
