/**
 * What the benchmarks read from /proc: CPU time (user + system) and resident memory of the server's process tree
 * and of the PostgreSQL cluster, so that a run reports CPU per request beside throughput. CPU per request is the
 * figure that carries over to other machines; throughput on a shared 2-core machine moves by 2x from run to run.
 */
import { execFileSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';

const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

interface ProcStat {
  pid: number;
  ppid: number;
  /** utime + stime of the process itself, in ticks. */
  own: number;
  /** cutime + cstime: children it has waited for (the postmaster reaps every backend that exits). */
  reaped: number;
}

async function readStat(pid: number): Promise<ProcStat | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (!text) return undefined;
  // The command name (field 2) may hold spaces and parentheses: fields are counted after its closing one.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const at = (field: number) => Number(fields[field - 3] ?? 0);
  return { pid, ppid: at(4), own: at(14) + at(15), reaped: at(16) + at(17) };
}

async function childrenOf(pid: number): Promise<number[]> {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '');
  return text.split(' ').filter(Boolean).map(Number);
}

async function treeOf(pid: number): Promise<number[]> {
  const children = await childrenOf(pid);
  const below = await Promise.all(children.map(treeOf));
  return [pid, ...below.flat()];
}

/** CPU time of a process and its descendants (a server and its workers), in microseconds. */
export async function treeCpuUs(pid: number): Promise<number> {
  const stats = await Promise.all((await treeOf(pid)).map(readStat));
  return ticksToUs(stats.reduce((sum, stat) => sum + (stat?.own ?? 0), 0));
}

/** Resident set size of a process and its descendants, in kB. */
export async function treeRssKb(pid: number): Promise<number> {
  const sizes = await Promise.all(
    (await treeOf(pid)).map(async (member) => {
      const status = await readFile(`/proc/${member}/status`, 'utf8').catch(() => '');
      return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    }),
  );
  return sizes.reduce((sum, size) => sum + size, 0);
}

/**
 * CPU time of the PostgreSQL cluster as a benchmark sees it, in microseconds: its auxiliary processes (WAL
 * writer, checkpointer, …), the backends serving `database`, and what the postmaster has reaped from backends
 * that exited. Backends of other databases are left out, so another client of the same cluster does not count.
 */
export async function postgresCpuUs(database: string): Promise<number> {
  const pids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name)).map(Number);
  let ticks = 0;
  await Promise.all(
    pids.map(async (pid) => {
      const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
      if (comm.trim() !== 'postgres') return;
      const title = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ');
      // A backend's title names its database and client: "postgres: 15/main: user db 127.0.0.1(5432) idle".
      const backend = /\(\d+\)|\[local\]/.test(title);
      if (backend && !title.includes(` ${database} `)) return;
      const stat = await readStat(pid);
      if (!stat) return;
      const postmaster = !title.startsWith('postgres:');
      ticks += stat.own + (postmaster ? stat.reaped : 0);
    }),
  );
  return ticksToUs(ticks);
}

function ticksToUs(ticks: number): number {
  return (ticks * 1_000_000) / TICKS_PER_SECOND;
}

/** CPU time of this process's children that have exited and been waited for (the load generator), in µs. */
async function reapedChildrenCpuUs(): Promise<number> {
  const stat = await readStat(process.pid);
  return ticksToUs(stat?.reaped ?? 0);
}

/** What one measured piece of work cost. */
export interface Cost {
  /** Peak resident set size of the server's tree, sampled every 50 ms, in MB. */
  peakRssMb: number;
  /** CPU time spent by the server's tree, in µs. */
  serverCpuUs: number;
  /** CPU time spent by PostgreSQL (see postgresCpuUs), in µs; undefined without a PostgreSQL database. */
  databaseCpuUs: number | undefined;
  /** CPU time of the load generator(s) that `work` ran and waited for, in µs. */
  loadCpuUs: number;
}

/**
 * Runs `work` and reports what the server (and its PostgreSQL database, when named) spent meanwhile. The window
 * spans the whole of `work`, including the load generator's preparation while the server idles.
 *
 * With `flush` (a CHECKPOINT), the database's window starts on a clean slate and ends once the pages the work
 * dirtied are written: each measurement bears the cost of its own writes, and none of another's.
 */
export async function measure<T>(
  server: { pid: number; database?: string | undefined; flush?: (() => Promise<void>) | undefined },
  work: () => Promise<T>,
): Promise<[T, Cost]> {
  const database = server.database;
  const flush = server.flush ?? (() => Promise.resolve());
  let peak = 0;
  const sample = async () => {
    peak = Math.max(peak, await treeRssKb(server.pid));
  };
  const timer = setInterval(() => void sample(), 50);
  try {
    if (database !== undefined) await flush();
    const [serverBefore, databaseBefore, loadBefore] = await Promise.all([
      treeCpuUs(server.pid),
      database === undefined ? undefined : postgresCpuUs(database),
      reapedChildrenCpuUs(),
    ]);
    const result = await work();
    const [serverAfter, loadAfter] = await Promise.all([
      treeCpuUs(server.pid),
      reapedChildrenCpuUs(),
      sample(),
    ]);
    if (database !== undefined) await flush();
    const databaseAfter = database === undefined ? undefined : await postgresCpuUs(database);
    return [
      result,
      {
        peakRssMb: Math.round(peak / 1024),
        serverCpuUs: serverAfter - serverBefore,
        databaseCpuUs:
          databaseBefore === undefined || databaseAfter === undefined
            ? undefined
            : databaseAfter - databaseBefore,
        loadCpuUs: loadAfter - loadBefore,
      },
    ];
  } finally {
    clearInterval(timer);
  }
}
