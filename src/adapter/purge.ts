import type { Logger } from 'pino';

import type { Clock } from '../clock.ts';
import { isDatabaseUnavailable } from '../db/availability.ts';
import type { Db } from '../db/connect.ts';
import { purgeExpiredBatch, purgeRateLimitBatch } from './purge.repository.ts';

/** Arbitrary but fixed: identifies Mayfly's purge among advisory locks on a shared database. */
const PURGE_LOCK_KEY = 0x6d66_7001;
const BATCH = 5_000;

export interface PurgeResult {
  payloads: number;
  /** One-time values (proof and assertion `jti`s) past the time they could be accepted. */
  replayMarkers: number;
  revokedTokens: number;
  /** Rate-limit counters whose window had ended. */
  rateLimitCounters: number;
  /** Stopped early: another instance held the purge lock, or the job was asked to stop. */
  stoppedEarly: boolean;
}

export async function purgeExpiredRows(db: Db, clock: Clock, signal?: AbortSignal): Promise<PurgeResult> {
  const now = clock.now();
  const result: PurgeResult = {
    payloads: 0,
    replayMarkers: 0,
    revokedTokens: 0,
    rateLimitCounters: 0,
    stoppedEarly: false,
  };
  for (const [table, key] of [
    ['oidc_payload', 'payloads'],
    ['replay_marker', 'replayMarkers'],
    ['revoked_token', 'revokedTokens'],
  ] as const) {
    for (;;) {
      if (signal?.aborted) return { ...result, stoppedEarly: true };
      const deleted = await purgeExpiredBatch(db, table, now, BATCH, PURGE_LOCK_KEY);
      if (deleted === undefined) return { ...result, stoppedEarly: true };
      result[key] += deleted;
      if (deleted < BATCH) break;
    }
  }
  // The rate limiter dates its counters by real time, whatever clock the rest follows.
  const nowMs = Date.now();
  for (;;) {
    if (signal?.aborted) return { ...result, stoppedEarly: true };
    const deleted = await purgeRateLimitBatch(db, nowMs, BATCH, PURGE_LOCK_KEY);
    if (deleted === undefined) return { ...result, stoppedEarly: true };
    result.rateLimitCounters += deleted;
    if (deleted < BATCH) break;
  }
  return result;
}

export interface PurgeJob {
  /** Stops scheduling and waits for the batch in progress, never for a whole backlog. */
  stop(): Promise<void>;
}

export type PurgeReport = (outcome: 'success' | 'failure', rows: Omit<PurgeResult, 'stoppedEarly'>) => void;

/** Runs the purge every `intervalSeconds`; a failed run is logged and retried at the next tick. */
export function startPurgeJob(
  db: Db,
  clock: Clock,
  intervalSeconds: number,
  log: Logger,
  report: PurgeReport = () => undefined,
): PurgeJob {
  const stopping = new AbortController();
  let running: Promise<void> | undefined;
  const tick = () => {
    if (running) return;
    running = purgeExpiredRows(db, clock, stopping.signal)
      .then((result) => {
        report('success', result);
        if (result.payloads || result.replayMarkers || result.revokedTokens || result.rateLimitCounters)
          log.info(result, 'purged expired rows');
      })
      .catch((error: unknown) => {
        report('failure', { payloads: 0, replayMarkers: 0, revokedTokens: 0, rateLimitCounters: 0 });
        if (isDatabaseUnavailable(error)) log.warn({ err: error }, 'purge skipped: database unavailable');
        else log.error({ err: error }, 'purge of expired rows failed');
      })
      .finally(() => {
        running = undefined;
      });
  };
  const timer = setInterval(tick, intervalSeconds * 1000);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      stopping.abort();
      await running;
    },
  };
}
