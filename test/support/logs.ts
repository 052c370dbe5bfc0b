import { Writable } from 'node:stream';

/** A pino destination that keeps every line, for assertions on the audit trail. */
export class CapturedLogs extends Writable {
  readonly lines: string[] = [];

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    callback();
  }

  records(): Record<string, unknown>[] {
    return this.lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  }

  audit(event: string): Record<string, unknown>[] {
    return this.records().filter((r) => r.component === 'audit' && r.event === event);
  }

  text(): string {
    return this.lines.join('\n');
  }
}
