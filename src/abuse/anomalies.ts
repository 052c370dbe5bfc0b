import { z } from 'zod';

import { insertAuditEvent } from '../audit/audit-event.repository.ts';
import type { Clock } from '../clock.ts';
import type { ClientAccessCache } from '../clients/client-access-cache.ts';
import type { Db } from '../db/connect.ts';
import type { AuditEventRow } from '../db/tables/audit-event.table.ts';
import type { Audit } from '../observability/audit.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import {
  ANOMALY_KINDS,
  AnomalyDetector,
  type AccessObservation,
  type Anomaly,
  type AnomalyKind,
  type AnomalySettings,
} from './anomaly-detector.ts';

/** The audit trail's actor for anomalies: Mayfly itself. */
export const ANOMALY_ACTOR = 'system:anomaly-detection';
/** Anomalies are stored in the audit trail as `anomaly.<kind>`. */
export const anomalyAction = (kind: AnomalyKind) => `anomaly.${kind}`;
export const ANOMALY_ACTIONS = ANOMALY_KINDS.map(anomalyAction);

export const AnomalyEvent = z
  .object({
    id: z.string(),
    detected_at: z.iso.datetime(),
    client_id: z.string(),
    kind: z.enum(ANOMALY_KINDS),
    window_seconds: z.number(),
    observed: z.number().meta({ description: 'The ratio, count or attempts seen in the window.' }),
    threshold: z.number().meta({ description: 'What the observed value was held against.' }),
    baseline: z
      .number()
      .nullable()
      .meta({ description: "issuance_spike: the client's usual tokens per window." }),
    description: z.string(),
  })
  .meta({ id: 'AnomalyEvent', description: 'Unusual behaviour of one client, seen at the token endpoint.' });
export type AnomalyEvent = z.output<typeof AnomalyEvent>;

interface StoredAnomaly {
  kind: AnomalyKind;
  window_seconds: number;
  observed: number;
  threshold: number;
  baseline: number | null;
  description: string;
}

export function toAnomalyEvent(row: AuditEventRow): AnomalyEvent {
  const stored = row.after as StoredAnomaly;
  return {
    id: String(row.id),
    detected_at: row.occurred_at.toISOString(),
    client_id: row.target_id,
    kind: stored.kind,
    window_seconds: stored.window_seconds,
    observed: stored.observed,
    threshold: stored.threshold,
    baseline: stored.baseline,
    description: stored.description,
  };
}

export interface AnomalyWatchDependencies {
  db: Db;
  clock: Clock;
  audit: Audit;
  metrics: Metrics;
  log: Logger;
  clients: ClientAccessCache;
  settings: AnomalySettings;
}

/**
 * Feeds each answered token request to this instance's detector and reports what it raises three ways: an audit
 * log line, a metric, and a row in the audit trail (for `mayfly anomalies` and the admin API). Windows are per
 * instance: behind a balancer spreading a client over N instances, each sees about 1/N of its traffic.
 */
export class AnomalyWatch {
  readonly #detector: AnomalyDetector;
  readonly #deps: AnomalyWatchDependencies;

  constructor(deps: AnomalyWatchDependencies) {
    this.#deps = deps;
    this.#detector = new AnomalyDetector(deps.settings);
  }

  /**
   * An answered token request. One that authenticated counts for its client in every statistic. One that did not
   * says nothing about the client it named (anyone can name any client) except, when that client is disabled or
   * deleted, that something still asks for it: it counts only as such an attempt, without its address or key.
   */
  tokenRequest(request: {
    authenticated: string | undefined;
    claimed: string | undefined;
    issued: boolean;
    address: string;
    dpopJkt: string | undefined;
  }): void {
    const at = this.#deps.clock.now();
    let observation: AccessObservation | undefined;
    if (request.authenticated !== undefined) {
      observation = {
        at,
        clientId: request.authenticated,
        outcome: request.issued ? 'issued' : 'denied',
        address: request.address,
        dpopJkt: request.dpopJkt,
        clientState: this.#deps.clients.stateOf(request.authenticated),
      };
    } else if (request.claimed !== undefined) {
      const clientState = this.#deps.clients.stateOf(request.claimed);
      if (clientState === 'disabled' || clientState === 'deleted') {
        observation = {
          at,
          clientId: request.claimed,
          outcome: 'denied',
          address: undefined,
          dpopJkt: undefined,
          clientState,
        };
      }
    }
    if (!observation) return;
    for (const anomaly of this.#detector.observe(observation)) this.#report(anomaly);
  }

  #report(anomaly: Anomaly): void {
    const { audit, metrics, db, log } = this.#deps;
    const stored: StoredAnomaly = {
      kind: anomaly.kind,
      window_seconds: anomaly.windowSeconds,
      observed: anomaly.observed,
      threshold: anomaly.threshold,
      baseline: anomaly.baseline ?? null,
      description: anomaly.description,
    };
    audit.anomaly({ client_id: anomaly.clientId, ...stored });
    metrics.anomaly(anomaly.kind);
    // Off the request path: the answer does not wait for the trail, and a failed write is only logged.
    insertAuditEvent(db, {
      occurred_at: anomaly.detectedAt,
      actor: ANOMALY_ACTOR,
      action: anomalyAction(anomaly.kind),
      target_type: 'client',
      target_id: anomaly.clientId,
      before: null,
      after: JSON.stringify(stored),
    }).catch((error: unknown) => {
      log.warn({ err: error, kind: anomaly.kind, client_id: anomaly.clientId }, 'could not store an anomaly');
    });
  }
}
