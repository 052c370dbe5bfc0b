import { open, unlink } from 'node:fs/promises';

import type { CommandContext, OptionSpecs } from './command.ts';
import { CliError } from './errors.ts';

/** Where a command writes: results on stdout (what scripts read), warnings and notes on stderr. */
export interface Output {
  result(text: string): void;
  note(text: string): void;
}

export function createOutput(stdout: NodeJS.WritableStream, stderr: NodeJS.WritableStream): Output {
  return {
    result: (text) => stdout.write(text),
    note: (text) => stderr.write(text),
  };
}

export function formatJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** The admin API's JSON as is with --json, else the text for people (built only then). */
export function printResult(
  context: { json: boolean; out: Output },
  body: unknown,
  text: () => string,
): void {
  context.out.result(context.json ? formatJson(body) : text());
}

/** Columns aligned on the widest cell; the last column is not padded so lines carry no trailing spaces. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((header, i) =>
    Math.max(header.length, ...rows.map((row) => (row[i] ?? '').length)),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return `${[line(headers), ...rows.map(line)].join('\n')}\n`;
}

/** `label: value` lines with the values aligned; a multi-line value continues under its first line. */
export function formatRecord(fields: readonly (readonly [string, string])[]): string {
  const width = Math.max(...fields.map(([label]) => label.length)) + 1;
  const indent = ' '.repeat(width + 1);
  return fields
    .map(([label, value]) =>
      `${`${label}:`.padEnd(width)} ${value.split('\n').join(`\n${indent}`)}`.trimEnd(),
    )
    .join('\n')
    .concat('\n');
}

/** ISO instants without milliseconds: what a person compares at a glance. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '-';
  const time = Date.parse(iso);
  return Number.isNaN(time) ? iso : new Date(time).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** For commands whose answer holds a secret shown once: a file only its owner can read, instead of stdout. */
export const SECRET_OUT_OPTION = {
  out: {
    type: 'string',
    value: '<file>',
    description:
      'write the answer to this new file (mode 0600, never overwritten) instead of standard output',
  },
} as const satisfies OptionSpecs;

/**
 * Runs `print` with its results going to `path` when given: a file created before anything else happens (so an
 * existing file or an unwritable folder stops the command before a secret is made), readable by its owner only,
 * and removed again if the command fails. Without `path`, results go to stdout as usual.
 */
export async function deliverResult(
  context: CommandContext,
  path: string | undefined,
  print: (context: CommandContext) => Promise<void>,
): Promise<void> {
  if (path === undefined) {
    await print(context);
    return;
  }
  const file = await open(path, 'wx', 0o600).catch((error: unknown) => {
    const code = (error as NodeJS.ErrnoException).code;
    throw new CliError(
      code === 'EEXIST'
        ? `--out ${path} exists, and a secret is never written over a file: move it away or name another`
        : `cannot create --out ${path}: ${code ?? String(error)}`,
    );
  });
  let text = '';
  try {
    const out: Output = {
      result: (chunk) => (text += chunk),
      note: (chunk) => {
        context.out.note(chunk);
      },
    };
    await print({ ...context, out });
    await file.writeFile(text);
  } catch (error) {
    await file.close();
    await unlink(path).catch(() => undefined);
    throw error;
  }
  await file.close();
  context.out.note(`Written to ${path} (readable by you only).\n`);
}
