import { AnomalyEvent } from '../abuse/anomalies.ts';
import { ANOMALY_KINDS } from '../abuse/anomaly-detector.ts';
import { AuditEvent } from '../audit/audit-trail.ts';
import { Resource } from '../clients/resource.schemas.ts';
import { parseChoice, parseTimestamp } from './args.ts';
import { defineCommand } from './command.ts';
import { UsageError } from './errors.ts';
import { PAGE_OPTIONS, printList, readPageQuery } from './paging.ts';
import { formatAnomalyTable, formatAuditTable, readAs } from './views.ts';

const TIME_RANGE_OPTIONS = {
  since: {
    type: 'string',
    value: '<time>',
    description: 'at or after this time, e.g. 2025-01-31T09:00:00Z',
  },
  until: { type: 'string', value: '<time>', description: 'before this time' },
} as const;

function readTimeRange(values: { since?: string; until?: string }) {
  return {
    since: values.since === undefined ? undefined : parseTimestamp(values.since, '--since'),
    until: values.until === undefined ? undefined : parseTimestamp(values.until, '--until'),
  };
}

const listAuditEvents = defineCommand({
  path: ['audit', 'list'],
  summary: 'the trail of admin changes, newest first',
  description:
    'The trail of admin changes, newest first: who (the admin client), what and when. `--json` shows each\n' +
    "change's before and after (never a secret).",
  synopsis: '[--client <client_id> | --resource <uri>] [--action <action>] [--since <time>] [--limit <n>]',
  arguments: [],
  options: {
    client: { type: 'string', value: '<client_id>', description: 'changes made to this client' },
    resource: { type: 'string', value: '<uri>', description: 'changes made to this resource' },
    actor: { type: 'string', value: '<client_id>', description: 'changes made by this admin client' },
    action: {
      type: 'string',
      value: '<action>',
      description: 'one kind of change, e.g. client.create, client.disable',
    },
    ...TIME_RANGE_OPTIONS,
    ...PAGE_OPTIONS,
  },
  globals: 'admin',
  examples: ['mayfly audit list --client <client_id> --since 2025-01-31'],
  async run({ values }, context) {
    if (values.client !== undefined && values.resource !== undefined) {
      throw new UsageError('give --client or --resource, not both');
    }
    const query = {
      ...readPageQuery(values),
      actor: values.actor,
      action: values.action,
      ...readTimeRange(values),
    };
    const api = await context.connect('admin:read');
    // Changes are recorded against a resource's id, which people do not type: look it up by identifier.
    const target =
      values.resource === undefined
        ? values.client
        : readAs(
            Resource,
            await api.send('GET', `/resources/${encodeURIComponent(values.resource)}`),
            'resource',
          ).id;
    await printList(
      context,
      api,
      { path: '/audit-events', query: { ...query, target }, all: values.all },
      AuditEvent,
      formatAuditTable,
    );
  },
});

const listAnomalies = defineCommand({
  path: ['anomalies'],
  summary: 'unusual client behaviour seen at the token endpoint, newest first',
  description:
    'Anomalies raised by the per-client detector, newest first: a spike of denials (denial_ratio) or of\n' +
    'issued tokens (issuance_spike), requests from many addresses (many_addresses) or DPoP keys\n' +
    '(many_dpop_keys), a disabled or deleted client still trying (inactive_client).',
  synopsis: '[--client <client_id>] [--kind <kind>] [--since <time>] [--until <time>] [--limit <n>]',
  arguments: [],
  options: {
    client: { type: 'string', value: '<client_id>', description: 'anomalies of this client' },
    kind: { type: 'string', value: '<kind>', description: `one of ${ANOMALY_KINDS.join(', ')}` },
    ...TIME_RANGE_OPTIONS,
    ...PAGE_OPTIONS,
  },
  globals: 'admin',
  examples: ['mayfly anomalies --since 2025-01-31T00:00:00Z', 'mayfly anomalies --kind denial_ratio --json'],
  async run({ values }, context) {
    const query = {
      ...readPageQuery(values),
      client_id: values.client,
      kind: values.kind === undefined ? undefined : parseChoice(values.kind, '--kind', ANOMALY_KINDS),
      ...readTimeRange(values),
    };
    const api = await context.connect('admin:read');
    await printList(
      context,
      api,
      { path: '/anomalies', query, all: values.all },
      AnomalyEvent,
      formatAnomalyTable,
    );
  },
});

export const AUDIT_COMMANDS = [listAuditEvents, listAnomalies];
