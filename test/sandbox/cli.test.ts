import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';

describe('sandbox CLI', () => {
  it('prints its FHIR base URL and registration hint, serves, and stops on SIGINT', async () => {
    // Prepare
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'scripts/sandbox/cli.ts',
        '--port',
        '0',
        '--patients',
        '20',
        '--seed',
        '7',
        '--job-seconds',
        '0',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const output: string[] = [];
    const lines = createInterface({ input: child.stdout });
    let baseUrl: string | undefined;
    for await (const line of lines) {
      output.push(line);
      baseUrl ??= /^FHIR base URL:\s+(\S+)$/.exec(line)?.[1];
      if (line.startsWith('Ctrl-C')) break;
    }
    // Act
    const metadata = await fetch(`${baseUrl}/metadata`);
    child.kill('SIGINT');
    const [code] = await once(child, 'exit');
    // Assess
    expect(baseUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/fhir$/);
    expect(metadata.status).toBe(200);
    expect(output.join('\n')).toContain('Patients:       20 (seed 7)');
    expect(output.join('\n')).toMatch(/curl -s -X POST http:\/\/127\.0\.0\.1:\d+\/register/);
    expect(code).toBe(0);
  });

  it('exits 2 on an unknown option', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/sandbox/cli.ts', '--prot', '1'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const [code] = await once(child, 'exit');
    expect(code).toBe(2);
    expect(stderr).toContain("Unknown option '--prot'");
  });
});
