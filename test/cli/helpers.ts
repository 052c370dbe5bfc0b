import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';

import { expect } from 'vitest';

import { runCli } from '../../src/cli/cli.ts';
import type { CliDefaults } from '../../src/cli/settings.ts';
import { startTestServer, type TestServer, type TestServerOptions } from '../support/server.ts';

export const CLI = fileURLToPath(new URL('../../src/cli/mayfly.ts', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** Written to the command's standard input (a pipe, not a terminal); by default it has none. */
  input?: string;
}

/**
 * The real CLI in a child process (the Node running the tests, which strips types), standard input closed unless
 * `input` is given, and an environment with nothing from the test run but PATH: MAYFLY_URL, MAYFLY_CREDENTIALS, PORT and DATABASE_URL are only what a
 * test passes.
 */
export async function runMayfly(args: readonly string[], options: RunOptions = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: options.cwd,
    env: { PATH: process.env.PATH ?? '', ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  // No input: standard input is closed at once, as when nothing is piped in.
  child.stdin.end(options.input ?? '');
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

/**
 * The CLI's own entry function in this process: the same parsing, HTTP client and output as the binary, without
 * the process start-up, so that the many edge cases stay fast. By default nothing listens at its URL.
 */
export async function runInProcess(
  args: readonly string[],
  defaults: CliDefaults = { url: 'http://127.0.0.1:9', credentialsPath: '/nonexistent/admin.json' },
): Promise<CliResult> {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await runCli(args, { stdout, stderr, defaults });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

class Capture extends Writable {
  text = '';

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString('utf8');
    callback();
  }
}

/** A compact JWS (an access token or an assertion): never to appear in anything the CLI prints. */
const JWT = /eyJ[\w-]*\.eyJ[\w-]*\.[\w-]+/;

export interface CliServer {
  server: TestServer;
  credentialsPath: string;
  /** The real binary against this server (MAYFLY_URL and MAYFLY_CREDENTIALS set). */
  spawn(args: readonly string[], options?: RunOptions): Promise<CliResult>;
  /** The CLI in this process against this server (same defaults). */
  run(args: readonly string[]): Promise<CliResult>;
  /** With --json, expecting exit 0 and nothing but JSON on stdout; in this process unless `spawn`. */
  json<T = Record<string, unknown>>(args: readonly string[], options?: { spawn?: boolean }): Promise<T>;
  close(): Promise<void>;
}

export async function startCliServer(options: TestServerOptions = {}): Promise<CliServer> {
  const server = await startTestServer(options);
  const credentialsPath = join(server.keysDir, 'admin.json');
  const privateKey = (JSON.parse(await readFile(credentialsPath, 'utf8')) as { private_jwk: { d: string } })
    .private_jwk.d;
  const checked = (result: CliResult) => {
    const printed = result.stdout + result.stderr;
    expect(printed, 'the admin private key is never printed').not.toContain(privateKey);
    expect(printed, 'no token is ever printed').not.toMatch(JWT);
    return result;
  };
  const run = async (args: readonly string[]) =>
    checked(await runInProcess(args, { url: server.url, credentialsPath }));
  const spawnCli = async (args: readonly string[], runOptions: RunOptions = {}) =>
    checked(
      await runMayfly(args, {
        ...runOptions,
        env: { MAYFLY_URL: server.url, MAYFLY_CREDENTIALS: credentialsPath, ...runOptions.env },
      }),
    );
  return {
    server,
    credentialsPath,
    run,
    spawn: spawnCli,
    async json<T>(args: readonly string[], options: { spawn?: boolean } = {}) {
      const result = options.spawn ? await spawnCli([...args, '--json']) : await run([...args, '--json']);
      expect(result.stderr, `stderr of mayfly ${args.join(' ')}`).not.toMatch(/^mayfly:/m);
      expect(result.code).toBe(0);
      return JSON.parse(result.stdout) as T;
    },
    close: () => server.close(),
  };
}

/** One message on stderr, naming the problem; nothing on stdout. */
export function expectFailure(result: CliResult, code: 1 | 2, message: RegExp | string): void {
  expect(result.code, result.stderr).toBe(code);
  expect(result.stdout).toBe('');
  expect(result.stderr).toMatch(/^mayfly: /);
  if (typeof message === 'string') expect(result.stderr).toContain(message);
  else expect(result.stderr).toMatch(message);
  if (code === 2) expect(result.stderr).toMatch(/Run 'mayfly[^']*--help' for usage\.\n$/);
  else expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
}

/** A port nothing listens on now: bound once to learn a free one, then released. */
export async function findFreePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
