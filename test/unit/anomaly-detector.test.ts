/**
 * The anomaly detector (src/abuse/anomaly-detector.ts), on synthetic traffic with a fake clock (observations carry
 * their own time): each kind at its threshold and just below it, cooldowns, rolling windows, baseline learning,
 * memory bounds, clock skew, then hours of seeded normal traffic for dozens of clients that must raise nothing,
 * and the same traffic with attacks injected that must each be reported within one window.
 */
import { describe, expect, it } from 'vitest';

import {
  AnomalyDetector,
  AnomalySettingsError,
  DEFAULT_ANOMALY_SETTINGS,
  validateAnomalySettings,
  type AccessObservation,
  type Anomaly,
  type AnomalyKind,
  type AnomalySettings,
} from '../../src/abuse/anomaly-detector.ts';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/** Aligned to the minute, so window w of the default settings is [w min, w + 1 min). */
const START = Date.UTC(2026, 0, 5);
const S = DEFAULT_ANOMALY_SETTINGS;
const W = S.windowSeconds * SECOND;
const at = (offset: number) => new Date(START + offset);

function detector(overrides: Partial<AnomalySettings> = {}): AnomalyDetector {
  return new AnomalyDetector({ ...S, ...overrides }, { hashSeed: 7 });
}

function observation(
  clientId: string,
  offset: number,
  extra: Partial<AccessObservation> = {},
): AccessObservation {
  return { at: at(offset), clientId, outcome: 'issued', clientState: 'active', ...extra };
}

/** `count` identical observations at `offset`; every anomaly they raised. */
function send(
  d: AnomalyDetector,
  clientId: string,
  offset: number,
  count: number,
  extra: Partial<AccessObservation> = {},
): Anomaly[] {
  const raised: Anomaly[] = [];
  for (let i = 0; i < count; i++) raised.push(...d.observe(observation(clientId, offset, extra)));
  return raised;
}

const deny = { outcome: 'denied' } as const;

/** `perWindow` tokens at the start of each window in [from, to): the rolling window then holds one window's. */
function steady(
  d: AnomalyDetector,
  clientId: string,
  perWindow: number,
  from: number,
  to: number,
): Anomaly[] {
  const raised: Anomaly[] = [];
  for (let w = from; w < to; w++) raised.push(...send(d, clientId, w * W, perWindow));
  return raised;
}

/** `perWindow` tokens spread evenly over window `w`. */
function spread(d: AnomalyDetector, clientId: string, perWindow: number, w: number): Anomaly[] {
  const raised: Anomaly[] = [];
  for (let i = 0; i < perWindow; i++) {
    raised.push(...d.observe(observation(clientId, w * W + Math.floor((i * W) / perWindow))));
  }
  return raised;
}

describe('settings', () => {
  it('accepts the defaults as documented', () => {
    expect(validateAnomalySettings(S)).toBe(S);
    expect(S).toEqual({
      windowSeconds: 60,
      denialRatio: 0.5,
      minRequestsForRatio: 20,
      issuanceSpikeFactor: 10,
      minIssuedForSpike: 100,
      baselineWindows: 30,
      maxAddresses: 20,
      maxDpopKeys: 50,
      inactiveAttempts: 3,
      cooldownSeconds: 300,
      maxClients: 10_000,
    });
    expect(new AnomalyDetector({ ...S, denialRatio: 1, windowSeconds: 0.5 }).trackedClients()).toBe(0);
  });

  const invalid: [keyof AnomalySettings, unknown, string][] = [
    ['windowSeconds', 0, 'a positive number'],
    ['windowSeconds', -60, 'a positive number'],
    ['windowSeconds', Number.POSITIVE_INFINITY, 'a positive number'],
    ['windowSeconds', '60', 'a positive number'],
    ['denialRatio', 0, 'a ratio in (0, 1]'],
    ['denialRatio', 1.01, 'a ratio in (0, 1]'],
    ['denialRatio', Number.NaN, 'a ratio in (0, 1]'],
    ['minRequestsForRatio', 0, 'a positive integer'],
    ['minRequestsForRatio', 2.5, 'a positive integer'],
    ['issuanceSpikeFactor', 1, 'a number greater than 1'],
    ['minIssuedForSpike', -1, 'a positive integer'],
    ['baselineWindows', 0, 'a positive integer'],
    ['maxAddresses', 0, 'a positive integer'],
    ['maxDpopKeys', 1.5, 'a positive integer'],
    ['inactiveAttempts', 0, 'a positive integer'],
    ['cooldownSeconds', 0, 'a positive number'],
    ['maxClients', undefined, 'a positive integer'],
  ];

  it.each(invalid)('refuses %s = %s, naming the field', (field, value, expected) => {
    const settings: AnomalySettings = { ...S, [field]: value };
    expect(() => validateAnomalySettings(settings)).toThrow(
      `Invalid anomaly settings: ${field} must be ${expected} (got ${String(value)})`,
    );
    let error: unknown;
    try {
      new AnomalyDetector(settings);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(AnomalySettingsError);
    expect((error as AnomalySettingsError).field).toBe(field);
  });
});

describe('denial ratio', () => {
  it('is raised when half of the requests in the window are denied, not one denial earlier', () => {
    const d = detector();
    expect(send(d, 'c1', 0, 11)).toEqual([]);
    // 10 of 21 denied: 0.48.
    expect(send(d, 'c1', 1_000, 10, deny)).toEqual([]);
    expect(send(d, 'c1', 2_000, 1, deny)).toEqual([
      {
        kind: 'denial_ratio',
        clientId: 'c1',
        detectedAt: at(2_000),
        windowSeconds: 60,
        observed: 0.5,
        threshold: 0.5,
        description: 'Client c1: 11 of 22 token requests denied in the last 60 s (ratio 0.5, threshold 0.5).',
      },
    ]);
  });

  it('never alarms on fewer than minRequestsForRatio requests, even all denied', () => {
    const d = detector();
    expect(send(d, 'c1', 0, 19, deny)).toEqual([]);
    expect(d.activityOf('c1')).toMatchObject({ issued: 0, denied: 19 });
    expect(send(d, 'c1', 0, 1, deny)).toMatchObject([{ kind: 'denial_ratio', observed: 1 }]);
  });

  it('raises once per cooldown while the denials go on, and again after it', () => {
    const d = detector();
    const raisedAt: number[] = [];
    for (let s = 0; s < 700; s++) {
      for (const anomaly of send(d, 'c1', s * SECOND, 1, deny)) {
        expect(anomaly.kind).toBe('denial_ratio');
        raisedAt.push((anomaly.detectedAt.getTime() - START) / SECOND);
      }
    }
    expect(raisedAt).toEqual([19, 319, 619]);
  });
});

describe('rolling windows', () => {
  it('counts an observation for one window, from its bucket (1/12 of the window) on, then forgets it', () => {
    const remembered = detector();
    send(remembered, 'c1', 4_999, 19, deny);
    expect(send(remembered, 'c1', W - 1, 1, deny)).toHaveLength(1);

    const forgotten = detector();
    send(forgotten, 'c1', 4_999, 19, deny);
    expect(send(forgotten, 'c1', W, 1, deny)).toEqual([]);
    expect(forgotten.activityOf('c1')).toMatchObject({ issued: 0, denied: 1 });

    // Spread out, the last 20 denials are never in one window together with enough of the rest.
    const slow = detector();
    for (let s = 0; s < 600; s += 4) expect(send(slow, 'c1', s * SECOND, 1, deny)).toEqual([]);
    expect(slow.activityOf('c1')?.denied).toBe(15);
  });
});

describe('issuance spike', () => {
  it('learns a baseline from baselineWindows windows, then raises at exactly factor × baseline', () => {
    const d = detector();
    expect(steady(d, 'c1', 20, 0, 31)).toEqual([]);
    // Window 29 learnt, window 30 held back: the rolling window overlaps it.
    expect(d.activityOf('c1')).toMatchObject({ baseline: undefined, baselineSamples: 29 });
    expect(send(d, 'c1', 31 * W, 199)).toEqual([]);
    expect(d.activityOf('c1')).toMatchObject({ baseline: 20, baselineSamples: 30, issued: 199 });
    expect(send(d, 'c1', 31 * W, 1)).toEqual([
      {
        kind: 'issuance_spike',
        clientId: 'c1',
        detectedAt: at(31 * W),
        windowSeconds: 60,
        observed: 200,
        threshold: 200,
        baseline: 20,
        description:
          'Client c1: 200 tokens issued in the last 60 s, 10× its usual 20 per 60 s (threshold 200).',
      },
    ]);
  });

  it('judges no spike for a client without history, however busy it starts', () => {
    const d = detector();
    expect(steady(d, 'busy', 500, 0, 31)).toEqual([]);
    // Quiet for 29 windows, then 50 times busier: not judged yet.
    expect(steady(d, 'quiet', 10, 0, 29)).toEqual([]);
    expect(steady(d, 'quiet', 500, 29, 31)).toEqual([]);
    expect(d.activityOf('quiet')?.baseline).toBeUndefined();
    // Once learnt, the busy client's level is its normal.
    expect(steady(d, 'busy', 500, 31, 40)).toEqual([]);
    expect(d.activityOf('busy')?.baseline).toBe(500);
  });

  it('needs minIssuedForSpike tokens, however small the baseline', () => {
    const d = detector();
    expect(steady(d, 'c1', 2, 0, 31)).toEqual([]);
    expect(send(d, 'c1', 31 * W, 99)).toEqual([]);
    expect(d.activityOf('c1')).toMatchObject({ baseline: 2, issued: 99 });
    expect(send(d, 'c1', 31 * W, 1)).toMatchObject([
      { kind: 'issuance_spike', observed: 100, threshold: 100, baseline: 2 },
    ]);
  });

  it('follows a slow ramp without alarm, and catches a sudden 10× jump within one window', () => {
    const d = detector();
    let rate = 10;
    for (let w = 0; w < 70; w++) {
      expect(spread(d, 'c1', Math.round(rate), w)).toEqual([]);
      rate *= 1.05;
    }
    // 10 → 300 tokens a minute over 70 minutes: the baseline kept up.
    expect(rate).toBeGreaterThan(300);
    const raised = spread(d, 'c1', Math.round(10 * rate), 70);
    expect(raised).toMatchObject([{ kind: 'issuance_spike' }]);
    expect(raised[0]!.baseline).toBe(d.activityOf('c1')?.baseline);
    expect(raised[0]!.baseline).toBeGreaterThan(100);
    expect(raised[0]!.detectedAt.getTime()).toBeLessThan(START + 71 * W);
  });

  it('is not learnt from: a sustained spike keeps its baseline until it has lasted baselineWindows windows', () => {
    const d = detector();
    steady(d, 'c1', 10, 0, 31);
    const raised = [];
    for (let w = 31; w < 75; w++) raised.push(...spread(d, 'c1', 200, w));
    const minutes = raised.map((anomaly) => (anomaly.detectedAt.getTime() - START) / W);
    // One event per 5-minute cooldown, each against the baseline from before the spike.
    expect(raised.every((anomaly) => anomaly.kind === 'issuance_spike' && anomaly.baseline === 10)).toBe(
      true,
    );
    expect(minutes.map(Math.floor)).toEqual([31, 36, 41, 46, 51, 56, 61]);
    // Windows 31–60 spiked; learnt once window 62 began, the new level is the client's normal.
    expect(d.activityOf('c1')?.baseline).toBe(200);
  });

  it('is not dragged down by idle time: a client resuming its usual rate after a night raises nothing', () => {
    const d = detector();
    expect(steady(d, 'batch', 150, 0, 40)).toEqual([]);
    expect(steady(d, 'batch', 150, 40 + (8 * HOUR) / W, 60 + (8 * HOUR) / W)).toEqual([]);
    expect(d.activityOf('batch')?.baseline).toBe(150);
  });
});

describe('distinct addresses and DPoP keys', () => {
  it('raises many_addresses on the 21st distinct address in the window; repeats count once', () => {
    const d = detector();
    for (let i = 0; i < 20; i++) expect(send(d, 'c1', i * 100, 2, { address: `192.0.2.${i}` })).toEqual([]);
    expect(d.activityOf('c1')?.distinctAddresses).toBe(20);
    const raised = send(d, 'c1', 3_000, 1, { address: '192.0.2.200' });
    expect(raised).toEqual([
      {
        kind: 'many_addresses',
        clientId: 'c1',
        detectedAt: at(3_000),
        windowSeconds: 60,
        observed: 21,
        threshold: 20,
        description: 'Client c1: requests from at least 21 distinct addresses in the last 60 s (limit 20).',
      },
    ]);
  });

  it('raises many_dpop_keys on the 51st distinct key in the window', () => {
    const d = detector();
    for (let i = 0; i < 50; i++) expect(send(d, 'c1', i * 100, 1, { dpopJkt: `jkt-${i}` })).toEqual([]);
    expect(send(d, 'c1', 5_000, 3, { dpopJkt: 'jkt-0' })).toEqual([]);
    expect(send(d, 'c1', 5_000, 1, { dpopJkt: 'jkt-50' })).toMatchObject([
      { kind: 'many_dpop_keys', observed: 51, threshold: 50 },
    ]);
  });

  it('forgets addresses and keys with the window', () => {
    const d = detector({ maxAddresses: 3, maxDpopKeys: 3 });
    // Buckets 0, 1 and 2 (5 s each).
    for (let i = 0; i < 3; i++) send(d, 'c1', i * 5 * SECOND, 1, { address: `a${i}`, dpopJkt: `k${i}` });
    expect(send(d, 'c1', W + 2 * SECOND, 1, { address: 'a3', dpopJkt: 'k3' })).toEqual([]);
    // a0/k0 (bucket 0) left; a1, a2 and a3 remain.
    expect(d.activityOf('c1')).toMatchObject({ distinctAddresses: 3, distinctDpopKeys: 3 });
    expect(send(d, 'c1', 2 * W, 1, { address: 'a4', dpopJkt: 'k4' })).toEqual([]);
    expect(d.activityOf('c1')).toMatchObject({ distinctAddresses: 1, distinctDpopKeys: 1 });
  });

  it('keeps at most limit + 1 entries per client, however many and however long the values', () => {
    const d = detector();
    const long = 'x'.repeat(10_000);
    const raised: Anomaly[] = [];
    for (let i = 0; i < 100_000; i++) {
      const value = i % 100 ? `${i}`.padEnd(64, '-') : `${i}${long}`;
      raised.push(...send(d, 'c1', i / 2, 1, { address: value, dpopJkt: `k${value}` }));
    }
    expect(raised.map((anomaly) => [anomaly.kind, anomaly.observed])).toEqual([
      ['many_addresses', 21],
      ['many_dpop_keys', 51],
    ]);
    expect(d.activityOf('c1')).toMatchObject({
      distinctAddresses: 21,
      distinctDpopKeys: 51,
      issued: 100_000,
    });
    for (const anomaly of raised) expect(anomaly.description).not.toContain('xxx');
  });

  it('raises several kinds from one observation, each with its own cooldown', () => {
    const d = detector({ maxAddresses: 2, maxDpopKeys: 2 });
    send(d, 'c1', 0, 1, { address: 'a0', dpopJkt: 'k0' });
    send(d, 'c1', 0, 1, { address: 'a1', dpopJkt: 'k1' });
    const both = send(d, 'c1', 0, 1, { address: 'a2', dpopJkt: 'k2' });
    expect(both.map((anomaly) => anomaly.kind)).toEqual(['many_addresses', 'many_dpop_keys']);
    expect(send(d, 'c1', 1_000, 19, { ...deny, address: 'a3', dpopJkt: 'k3' })).toMatchObject([
      { kind: 'denial_ratio' },
    ]);
  });
});

describe('inactive clients', () => {
  it.each(['disabled', 'deleted'] as const)(
    'raises inactive_client on the 3rd attempt by a %s client in the window, outside the denial ratio',
    (state) => {
      const d = detector();
      expect(send(d, 'c1', 0, 2, { ...deny, clientState: state })).toEqual([]);
      const raised = send(d, 'c1', 1_000, 48, { ...deny, clientState: state });
      expect(raised).toEqual([
        {
          kind: 'inactive_client',
          clientId: 'c1',
          detectedAt: at(1_000),
          windowSeconds: 60,
          observed: 3,
          threshold: 3,
          description: `Client c1 is ${state} but made 3 token requests in the last 60 s (threshold 3).`,
        },
      ]);
      expect(d.activityOf('c1')).toMatchObject({ issued: 0, denied: 0, inactiveAttempts: 50 });
    },
  );

  it('counts attempts per window, and raises nothing for a re-enabled client', () => {
    const d = detector();
    expect(send(d, 'c1', 0, 2, { clientState: 'disabled' })).toEqual([]);
    expect(send(d, 'c1', W, 2, { clientState: 'disabled' })).toEqual([]);
    expect(send(d, 'c1', W + 1, 1, { clientState: 'disabled' })).toMatchObject([{ kind: 'inactive_client' }]);
    // Enabled again: its attempts from before are still in the window, yet its requests raise nothing.
    expect(send(d, 'c1', W + 10 * SECOND, 5)).toEqual([]);
    expect(d.activityOf('c1')).toMatchObject({ issued: 5, inactiveAttempts: 3 });
  });
});

describe('clients tracked', () => {
  it('never tracks unknown client ids, so a scanner cannot evict real clients', () => {
    const d = detector({ maxClients: 5 });
    steady(d, 'real', 10, 0, 32);
    const raised: Anomaly[] = [];
    for (let i = 0; i < 50_000; i++) {
      raised.push(...d.observe(observation(`guess-${i}`, 32 * W + i, { ...deny, clientState: 'unknown' })));
    }
    expect(raised).toEqual([]);
    expect(d.trackedClients()).toBe(1);
    expect(d.activityOf('guess-1')).toBeUndefined();
    expect(d.activityOf('real')?.baseline).toBe(10);
    expect(send(d, 'real', 32 * W + 50 * SECOND, 100)).toMatchObject([{ kind: 'issuance_spike' }]);
  });

  it('forgets the least recently seen client beyond maxClients', () => {
    const d = detector({ maxClients: 3 });
    for (const id of ['a', 'b', 'c']) steady(d, id, 10, 0, 32);
    send(d, 'a', 32 * W, 1);
    send(d, 'd', 32 * W, 1);
    expect(d.trackedClients()).toBe(3);
    expect(d.activityOf('b')).toBeUndefined();
    for (const id of ['a', 'c', 'd']) expect(d.activityOf(id)).toBeDefined();
    // Seen again, it starts over: no baseline, so no spike is judged.
    expect(send(d, 'b', 32 * W, 500)).toEqual([]);
    expect(d.activityOf('b')).toMatchObject({ baselineSamples: 0, issued: 500 });
    expect(d.activityOf('c')).toBeUndefined();
  });
});

describe('time', () => {
  it('counts an observation stamped earlier (clock skew) as of the latest, never reopening a bucket', () => {
    const d = detector();
    send(d, 'c1', 0, 19, deny);
    send(d, 'c1', W + 1, 1, deny);
    // 30 s back: counted at W + 1 with the one denial still in the window.
    expect(send(d, 'c1', 30 * SECOND, 18, deny)).toEqual([]);
    expect(d.activityOf('c1')).toMatchObject({ denied: 19, lastSeenAt: at(W + 1) });
    const raised = send(d, 'c1', -HOUR, 1, deny);
    expect(raised).toMatchObject([{ kind: 'denial_ratio', observed: 1, detectedAt: at(W + 1) }]);
  });

  it('survives any sequence of times without negative counts, and ignores invalid dates', () => {
    const d = detector({ maxAddresses: 3 });
    const offsets = [
      0,
      5,
      -3 * DAY,
      2 * DAY,
      2 * DAY - 1,
      2 * DAY + 30 * SECOND,
      1,
      400 * DAY,
      400 * DAY + W,
    ];
    for (const offset of offsets) {
      send(d, 'c1', offset, 3, { address: `a${offset}` });
      send(d, 'c1', offset, 2, { ...deny, clientState: offset % 2 ? 'disabled' : 'active' });
      const activity = d.activityOf('c1')!;
      for (const value of [activity.issued, activity.denied, activity.inactiveAttempts]) {
        expect(value).toBeGreaterThanOrEqual(0);
      }
    }
    expect(d.observe({ ...observation('c1', 0), at: new Date(Number.NaN) })).toEqual([]);
    expect(d.activityOf('c1')).toMatchObject({ lastSeenAt: at(400 * DAY + W), issued: 3, denied: 2 });
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Simulation
// ---------------------------------------------------------------------------------------------------------------

/** mulberry32: a tiny seeded PRNG, so a failing run replays exactly. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

interface SimClient {
  id: string;
  /** Tokens a minute, before the slow daily-like swing. */
  perMinute: number;
  /** Tokens a minute added by the end of the run (a client growing over the day). */
  growth: number;
  /** Bursts of this many tokens over two minutes every ten minutes, and nothing else (a batch job). */
  burst: number;
  denialRate: number;
  phase: number;
  addresses: string[];
  /** One DPoP key per instance; an instance restarting (about hourly) comes back with a new key. */
  keys: string[];
}

/** An attack on client `target` from `from` (seconds into the run) to the end of `seconds`, or of the run. */
interface Attack {
  kind: AnomalyKind;
  target: number;
  from: number;
  seconds: number;
}

interface SimResult {
  anomalies: Anomaly[];
  observations: number;
  tracked: number;
  secrets: string[];
}

const SIM_HOURS = 6;
const SIM_CLIENTS = 40;

/**
 * Every client's traffic second by second: Poisson arrivals at its rate swinging ±50% over three hours, a few
 * percent denied, a few addresses, a key per instance, up to 2 s of clock skew between instances, and a scanner
 * guessing client ids. Clients 0–5 are the attack targets, with fixed rates; 6 is a batch job, 7 grows 16-fold.
 */
function simulate(seed: number, attacks: readonly Attack[]): SimResult {
  const random = mulberry32(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const poisson = (mean: number) => {
    const limit = Math.exp(-mean);
    let k = 0;
    for (let p = random(); p > limit; p *= random()) k++;
    return k;
  };
  let keyCount = 0;
  const newKey = () => `jkt-${seed}-${keyCount++}`;

  const fixedRates = [2, 12, 6, 6, 4, 1];
  const clients: SimClient[] = [];
  for (let i = 0; i < SIM_CLIENTS; i++) {
    const instances = 1 + Math.floor(random() * 8);
    clients.push({
      id: `client-${i}`,
      perMinute: i === 6 ? 0 : i === 7 ? 5 : (fixedRates[i] ?? 0.3 * (50 / 0.3) ** random()),
      growth: i === 7 ? 75 : 0,
      burst: i === 6 ? 250 : 0,
      denialRate: random() * 0.05,
      phase: random() * 2 * Math.PI,
      addresses: Array.from({ length: 1 + Math.floor(random() * 6) }, (_, a) => `10.${i}.0.${a}`),
      keys: Array.from({ length: instances }, newKey),
    });
  }

  const d = new AnomalyDetector(S, { hashSeed: seed });
  const anomalies: Anomaly[] = [];
  const secrets = new Set<string>();
  let observations = 0;
  const emit = (o: AccessObservation) => {
    observations++;
    if (o.address) secrets.add(o.address);
    if (o.dpopJkt) secrets.add(o.dpopJkt);
    anomalies.push(...d.observe(o));
  };
  const attackOn = (target: number, t: number) =>
    attacks.find((a) => a.target === target && t >= a.from && t < a.from + a.seconds);
  const inactiveState = (target: number, t: number): AccessObservation['clientState'] => {
    const attack = attackOn(target, t);
    if (attack?.kind !== 'inactive_client') return 'active';
    return target % 2 ? 'deleted' : 'disabled';
  };

  const seconds = SIM_HOURS * 3_600;
  for (let t = 0; t < seconds; t++) {
    const ms = t * SECOND;
    for (const [index, client] of clients.entries()) {
      for (const key of client.keys.keys()) if (random() < 1 / 3_600) client.keys[key] = newKey();
      const swing = 1 + 0.5 * Math.sin((2 * Math.PI * t) / (3 * 3_600) + client.phase);
      const steadyRate = (client.perMinute + (client.growth * t) / seconds) * swing;
      const burstRate = client.burst && t % 600 < 120 ? client.burst / 2 : 0;
      const state = inactiveState(index, t);
      const arrivals = poisson((steadyRate + burstRate) / 60);
      for (let i = 0; i < arrivals; i++) {
        const skew = random() < 0.05 ? Math.floor(random() * 2_000) : 0;
        emit({
          at: at(ms + Math.floor(random() * SECOND) - skew),
          clientId: client.id,
          outcome: state === 'active' && random() >= client.denialRate ? 'issued' : 'denied',
          address: pick(client.addresses),
          dpopJkt: pick(client.keys),
          clientState: state,
        });
      }

      const attack = attackOn(index, t);
      if (!attack) continue;
      const elapsed = t - attack.from;
      const base = { at: at(ms + Math.floor(random() * SECOND)), clientId: client.id, clientState: state };
      switch (attack.kind) {
        case 'denial_ratio':
          // Someone guessing this client's secret, one try a second from one address.
          emit({ ...base, outcome: 'denied', address: '203.0.113.7' });
          break;
        case 'issuance_spike':
          // A stolen credential minting 400 tokens a minute.
          for (let i = poisson(400 / 60); i > 0; i--) {
            emit({ ...base, outcome: 'issued', address: '203.0.113.8', dpopJkt: 'jkt-attacker' });
          }
          break;
        case 'many_addresses':
          emit({ ...base, outcome: 'issued', address: `198.51.100.${elapsed}`, dpopJkt: pick(client.keys) });
          break;
        case 'many_dpop_keys':
          for (let i = 0; i < 2; i++) {
            emit({
              ...base,
              outcome: 'issued',
              address: '203.0.113.9',
              dpopJkt: `jkt-minted-${elapsed}-${i}`,
            });
          }
          break;
        case 'inactive_client':
          // Its instances keep retrying every few seconds with the revoked credentials.
          if (elapsed % 5 === 0) emit({ ...base, outcome: 'denied', address: pick(client.addresses) });
          break;
      }
    }
    // A scanner guessing client ids: not tracked, never raised.
    emit({
      at: at(ms),
      clientId: `guess-${Math.floor(random() * 1e9)}`,
      outcome: 'denied',
      address: '203.0.113.99',
      clientState: 'unknown',
    });
  }
  return { anomalies, observations, tracked: d.trackedClients(), secrets: [...secrets] };
}

describe('hours of synthetic traffic', () => {
  const seeds = [1, 20_260_105, 424_242];

  it.each(seeds)('seed %i: normal traffic of 40 clients over 6 hours raises no anomaly', (seed) => {
    const run = simulate(seed, []);
    expect(run.anomalies).toEqual([]);
    expect(run.observations).toBeGreaterThan(100_000);
    // The batch job (6) only appears in bursts, the scanner's guesses are never tracked.
    expect(run.tracked).toBe(SIM_CLIENTS);
  });

  it.each(seeds)('seed %i: each injected attack is reported within one window, and nothing else', (seed) => {
    const offset = (k: number) => 4 * 3_600 + k * 7 * 60 + Math.floor(mulberry32(seed + k)() * 60);
    const attacks: Attack[] = [
      { kind: 'denial_ratio', target: 0, from: offset(0), seconds: 40 },
      { kind: 'issuance_spike', target: 1, from: offset(1), seconds: 180 },
      { kind: 'many_addresses', target: 2, from: offset(2), seconds: 30 },
      { kind: 'many_dpop_keys', target: 3, from: offset(3), seconds: 40 },
      { kind: 'inactive_client', target: 4, from: offset(4), seconds: 3_600 },
      { kind: 'inactive_client', target: 5, from: offset(5), seconds: 3_600 },
    ];
    const run = simulate(seed, attacks);

    for (const attack of attacks) {
      const clientId = `client-${attack.target}`;
      const raised = run.anomalies.filter((anomaly) => anomaly.clientId === clientId);
      expect(raised.length, `${attack.kind} on ${clientId}`).toBeGreaterThan(0);
      for (const anomaly of raised) {
        expect(anomaly.kind).toBe(attack.kind);
        expect(anomaly.detectedAt.getTime()).toBeGreaterThanOrEqual(START + attack.from * SECOND);
      }
      const delay = raised[0]!.detectedAt.getTime() - (START + attack.from * SECOND);
      expect(delay, `${attack.kind} on ${clientId} detected after ${delay} ms`).toBeLessThan(W);
    }
    const attacked = new Set(attacks.map((attack) => `client-${attack.target}`));
    expect(run.anomalies.filter((anomaly) => !attacked.has(anomaly.clientId))).toEqual([]);
    // Clients still trying after being disabled or deleted are reported again after each cooldown.
    const inactive = run.anomalies.filter((anomaly) => anomaly.kind === 'inactive_client');
    expect(inactive.length).toBeGreaterThanOrEqual(2 * Math.floor(3_600 / S.cooldownSeconds));
    // No address or key ever reaches a description.
    const leaks = run.anomalies.filter((anomaly) =>
      run.secrets.some((secret) => anomaly.description.includes(secret)),
    );
    expect(leaks).toEqual([]);
  });
});
