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
