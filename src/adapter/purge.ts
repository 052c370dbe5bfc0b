import type { Logger } from 'pino';

import type { Clock } from '../clock.ts';
import type { Db } from '../db/connect.ts';
import { purgeExpiredBatch } from './oidc-payload.repository.ts';

/** Arbitrary but fixed: identifies Mayfly's purge among advisory locks on a shared database. */
const PURGE_LOCK_KEY = 0x6d66_7001;
const BATCH = 5_000;

export interface PurgeResult {
  payloads: number;
  revokedTokens: number;
  /** False when another instance was purging and this one stepped aside. */
  ran: boolean;
}

export async function purgeExpiredRows(db: Db, clock: Clock): Promise<PurgeResult> {
  const now = clock.now();
  const result: PurgeResult = { payloads: 0, revokedTokens: 0, ran: true };
  for (const [table, key] of [
    ['oidc_payload', 'payloads'],
    ['revoked_token', 'revokedTokens'],
  ] as const) {
    for (;;) {
      const deleted = await purgeExpiredBatch(db, table, now, BATCH, PURGE_LOCK_KEY);
      if (deleted === undefined) return { ...result, ran: false };
      result[key] += deleted;
      if (deleted < BATCH) break;
    }
  }
  return result;
}

export interface PurgeJob {
  stop(): Promise<void>;
}

/** Runs the purge every `intervalSeconds`; a failed run is logged and retried at the next tick. */
export function startPurgeJob(db: Db, clock: Clock, intervalSeconds: number, log: Logger): PurgeJob {
  let running: Promise<void> | undefined;
  const tick = () => {
    if (running) return;
    running = purgeExpiredRows(db, clock)
      .then((result) => {
        if (result.payloads || result.revokedTokens) log.info(result, 'purged expired rows');
      })
      .catch((error: unknown) => {
        log.error({ err: error }, 'purge of expired rows failed');
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
      await running;
    },
  };
}
