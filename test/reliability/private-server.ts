/**
 * A PostgreSQL server of the test's own (initdb in a temp dir, a free port on 127.0.0.1), so the
 * restart test can restart it without cutting off every other test using the shared server. As
 * root, the server runs as the `postgres` user (PostgreSQL refuses to run as root).
 */
import { execFile, execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PrivateServer {
  readonly url: string;
  /** `pg_ctl restart -m fast`: ends every session, then accepts connections again (resolves then). */
  restart(): Promise<void>;
  stop(): void;
}

/** Where initdb and pg_ctl are, or why the test cannot run here. */
export function postgresBinaries(): { bin: string } | { reason: string } {
  const candidates: string[] = [];
  try {
    candidates.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim());
  } catch {
    // no pg_config on PATH
  }
  for (const version of ['17', '16', '15', '14']) candidates.push(`/usr/lib/postgresql/${version}/bin`);
  const bin = candidates.find((dir) => existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl')));
  return bin === undefined ? { reason: 'no initdb and pg_ctl (PostgreSQL server binaries) here' } : { bin };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Creates and starts a throwaway server (trust auth, fsync off); `stop()` removes it. */
export async function startPrivateServer(bin: string): Promise<PrivateServer> {
  const dir = mkdtempSync(join(tmpdir(), 'featurefn-pg-'));
  const data = join(dir, 'data');
  const root = process.getuid?.() === 0;
  if (root) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }));
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }));
    chownSync(dir, uid, gid);
  }
  const run = (tool: string, args: string[]) =>
    root
      ? execFileSync('runuser', ['-u', 'postgres', '--', join(bin, tool), ...args], { stdio: 'pipe' })
      : execFileSync(join(bin, tool), args, { stdio: 'pipe' });
  run('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  const port = await freePort();
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40`;
  run('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'log'), '-w', 'start']);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    restart: () =>
      new Promise<void>((resolve, reject) => {
        const args = ['-D', data, '-l', join(dir, 'log'), '-m', 'fast', '-w', 'restart'];
        const [file, all] = root
          ? ['runuser', ['-u', 'postgres', '--', join(bin, 'pg_ctl'), ...args]]
          : [join(bin, 'pg_ctl'), args];
        execFile(file as string, all as string[], (error) => (error ? reject(error) : resolve()));
      }),
    stop: () => {
      try {
        run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
