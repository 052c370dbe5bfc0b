/**
 * Files Mayfly creates are its user's alone, whatever the umask it was started with: the embedded database and
 * the keys folder (folders 0700, files 0600), a folder found open to others is tightened at start with a
 * warning, and a CLI answer holding a secret goes to a new 0600 file with --out. Processes are started under
 * `umask 000`, the most permissive a user could have.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CLI, findFreePort, startCliServer, type CliResult, type CliServer } from './helpers.ts';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mayfly-perms-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Every folder and file under `root`, with its permission bits. */
async function modes(root: string): Promise<{ path: string; folder: boolean; mode: number }[]> {
  const found: { path: string; folder: boolean; mode: number }[] = [];
  const walk = async (path: string) => {
    const entry = await lstat(path);
    if (entry.isSymbolicLink()) return;
    found.push({ path, folder: entry.isDirectory(), mode: entry.mode & 0o777 });
    if (entry.isDirectory()) for (const name of await readdir(path)) await walk(join(path, name));
  };
  await walk(root);
  return found;
}

function expectPrivate(entries: { path: string; folder: boolean; mode: number }[]): void {
  const open = entries.filter((entry) => entry.mode !== (entry.folder ? 0o700 : 0o600));
  expect(open.map((entry) => `${entry.path} ${entry.mode.toString(8)}`)).toEqual([]);
}

/** `mayfly serve` under umask 000 until it answers /healthz; then SIGTERM. Its log is returned. */
async function serveOnce(env: Record<string, string>): Promise<string> {
  const port = await findFreePort();
  const child = spawn('sh', ['-c', `umask 000; exec "${process.execPath}" "${CLI}" serve`], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '', PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (log += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (log += chunk));
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then(
      (res) => res.ok,
      () => false,
    );
    if (ok) break;
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`server did not start:\n${log}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill('SIGTERM');
  await once(child, 'close');
  return log;
}

describe('the embedded default under umask 000', { timeout: 120_000 }, () => {
  it('creates its database and keys folders 0700 and every file in them 0600', async () => {
    const data = join(dir, 'fresh', 'data');
    const keys = join(dir, 'fresh', 'keys');
    await serveOnce({ MAYFLY_DATA_DIR: data, MAYFLY_KEYS_DIR: keys });
    const entries = [...(await modes(data)), ...(await modes(keys))];
    // The database folder is a whole PostgreSQL cluster: hundreds of files.
    expect(entries.length).toBeGreaterThan(100);
    expect(entries.some((entry) => entry.path.endsWith('admin.json'))).toBe(true);
    expectPrivate(entries);
  });

  it('tightens folders found open to others at start, and says so', async () => {
    const data = join(dir, 'loose', 'data');
    const keys = join(dir, 'loose', 'keys');
    await serveOnce({ MAYFLY_DATA_DIR: data, MAYFLY_KEYS_DIR: keys });
    // As an earlier release, or another umask, left them.
    await chmod(data, 0o755);
    await chmod(keys, 0o777);
    await chmod(join(keys, 'admin.json'), 0o644);
    const base = join(data, 'base');
    await chmod(base, 0o755);
    const [someFile] = (await readdir(join(data, 'global'))).filter((name) => /^\d+$/.test(name));
    await chmod(join(data, 'global', someFile ?? ''), 0o666);
    const log = await serveOnce({ MAYFLY_DATA_DIR: data, MAYFLY_KEYS_DIR: keys });
    expectPrivate([...(await modes(data)), ...(await modes(keys))]);
    const warnings = log
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { level?: string; folder?: string; entries?: number })
      .filter((record) => record.level === 'warn' && record.folder !== undefined);
    expect(warnings).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ folder: data, entries: 3 }),
        expect.objectContaining({ folder: keys, entries: 2 }),
      ]),
    );
  });
});

/** The real `mayfly` binary under umask 000, against `cli`'s server. */
async function runUnderUmask(cli: CliServer, args: readonly string[]): Promise<CliResult> {
  const quoted = args.map((arg) => `'${arg.replaceAll("'", "'\\''")}'`).join(' ');
  const child = spawn('sh', ['-c', `umask 000; exec "${process.execPath}" "${CLI}" ${quoted}`], {
    cwd: dir,
    env: {
      PATH: process.env.PATH ?? '',
      MAYFLY_URL: cli.server.url,
      MAYFLY_CREDENTIALS: cli.credentialsPath,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

describe('CLI answers holding a secret', () => {
  let cli: CliServer;

  beforeAll(async () => {
    cli = await startCliServer();
  });
  afterAll(() => cli.close());

  it('go to a new file readable by its owner only with --out, even under umask 000', async () => {
    const out = join(dir, 'billing.json');
    const result = await runUnderUmask(cli, [
      'client',
      'create',
      '--name',
      'billing',
      '--json',
      '--out',
      out,
    ]);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(`Written to ${out}`);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    const written = JSON.parse(await readFile(out, 'utf8')) as { client_id?: string; client_secret?: string };
    expect(written.client_secret).toMatch(/^mfy_/);
  });

  it('never overwrite a file, and leave nothing behind when the command fails', async () => {
    const existing = join(dir, 'existing.json');
    await writeFile(existing, 'keep me');
    const refused = await runUnderUmask(cli, ['client', 'create', '--name', 'x', '--out', existing]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('exists');
    expect(await readFile(existing, 'utf8')).toBe('keep me');

    const folder = join(dir, 'failed');
    await mkdir(folder);
    const failed = await runUnderUmask(cli, [
      'client',
      'create',
      '--name',
      'y',
      '--grant',
      'https://unknown.example=read',
      '--out',
      join(folder, 'y.json'),
    ]);
    expect(failed.code).toBe(1);
    expect(await readdir(folder)).toEqual([]);
  });
});
