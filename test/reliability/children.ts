/** Child processes of the reliability tests: started with tsx, read line by line, killed at will. */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** A running child: the JSON lines it printed so far, its stderr, and how it ended. */
export interface Child {
  readonly process: ChildProcessWithoutNullStreams;
  /** Every line printed on stdout, parsed. */
  readonly lines: Record<string, unknown>[];
  /** stderr so far (last 4 KB). */
  stderr(): string;
  /** Resolves with the first line (printed so far or later) that `test` accepts; rejects if the child ends first. */
  line(test: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  /** Resolves when the child has exited, with its exit code and signal. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `node --import tsx test/reliability/<file> ...args`. */
export function startChild(file: string, args: readonly string[]): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, file), ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  const waiting = new Set<() => void>();
  let stderr = '';
  child.stderr.on('data', (data) => {
    stderr = (stderr + String(data)).slice(-4096);
  });
  createInterface({ input: child.stdout }).on('line', (text) => {
    try {
      lines.push(JSON.parse(text) as Record<string, unknown>);
    } catch {
      lines.push({ text });
    }
    for (const wake of waiting) wake();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      // Let the last lines be parsed first.
      setImmediate(() => {
        resolve({ code, signal });
        for (const wake of waiting) wake();
      });
    }),
  );
  let ended = false;
  void exited.then(() => {
    ended = true;
  });
  return {
    process: child,
    lines,
    stderr: () => stderr,
    exited,
    line(test) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = lines.find(test);
          if (found !== undefined) {
            waiting.delete(check);
            resolve(found);
          } else if (ended) {
            waiting.delete(check);
            reject(new Error(`child ${file} ended before the expected line; stderr: ${stderr}`));
          }
        };
        waiting.add(check);
        check();
      });
    },
  };
}

/** SIGKILLs `child` (if still running) and waits for it to be gone. */
export async function kill(child: Child): Promise<void> {
  child.process.kill('SIGKILL');
  await child.exited;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it gives a value; fails after `timeoutMs`. */
export async function until<T>(
  probe: () => Promise<T | undefined>,
  what: string,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** Prints one summary line of figures, for RELIABILITY.md: `[reliability] <test>: k=v, …`. */
export function report(test: string, figures: Record<string, number | string>): void {
  const text = Object.entries(figures)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
  process.stdout.write(`[reliability] ${test}: ${text}\n`);
}
