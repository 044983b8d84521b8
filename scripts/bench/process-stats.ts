/**
 * CPU time of the processes a benchmark run shares the machine with: this
 * process (the sandbox FHIR server lives here) and the embedded S3 server
 * (a child process of this one). Linux only; elsewhere the S3 share is unknown.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';

/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat; 100 on every Linux this runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

/** User + system CPU seconds of a process, from /proc; undefined when it cannot be read. */
export function processCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return (utime + stime) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

export interface CpuMeter {
  /** CPU seconds since the meter started: of this process (sandbox) and of the S3 server. */
  stop(): { sandbox: number; s3: number | undefined };
}

export function startCpuMeter(s3Pid: number | undefined): CpuMeter {
  const own = process.cpuUsage();
  const s3Before = s3Pid === undefined ? undefined : processCpuSeconds(s3Pid);
  return {
    stop() {
      const used = process.cpuUsage(own);
      const s3After = s3Pid === undefined ? undefined : processCpuSeconds(s3Pid);
      return {
        sandbox: (used.user + used.system) / 1e6,
        s3: s3Before === undefined || s3After === undefined ? undefined : s3After - s3Before,
      };
    },
  };
}

/** The machine's facts, for the record next to the figures. */
export function machineFacts() {
  const [one, five, fifteen] = loadavg();
  return {
    nproc: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    loadAverage: [one, five, fifteen].map((value) => Number((value ?? 0).toFixed(2))),
    node: process.version,
  };
}
