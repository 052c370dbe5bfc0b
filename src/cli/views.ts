import type { z } from 'zod';

import type { AnomalyEvent } from '../abuse/anomalies.ts';
import type { AuditEvent } from '../audit/audit-trail.ts';
import type { Client, ClientWithSecret } from '../clients/client.schemas.ts';
import type { Resource } from '../clients/resource.schemas.ts';
import { CliError } from './errors.ts';
import { formatRecord, formatTable, formatTime } from './output.ts';

/** An admin API answer read with the server's own schema, so a mismatch is reported instead of printed wrong. */
export function readAs<S extends z.ZodType>(schema: S, body: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    throw new CliError(`the server answered with an unexpected ${what}; try --json to see it as it is`);
  }
  return parsed.data;
}

export function formatResource(resource: Resource): string {
  return formatRecord([
    ['identifier', resource.identifier],
    ['name', resource.name ?? '-'],
    ['scopes', resource.scopes.join(' ')],
    ['token ttl', `${resource.token_ttl} s`],
    ['token format', resource.token_format],
    ...(resource.reserved ? [['reserved', 'yes (the admin API itself; not editable)'] as const] : []),
    ['id', resource.id],
    ['created', formatTime(resource.created_at)],
    ['updated', formatTime(resource.updated_at)],
  ]);
}

export function formatResourceTable(resources: readonly Resource[]): string {
  if (!resources.length) return 'No resources.\n';
  return formatTable(
    ['IDENTIFIER', 'NAME', 'SCOPES', 'TTL', 'FORMAT'],
    resources.map((r) => [
      r.identifier,
      r.name ?? '-',
      r.scopes.join(' '),
      `${r.token_ttl}s`,
      r.token_format,
    ]),
  );
}

export function formatClient(client: Client | ClientWithSecret): string {
  const keys =
    client.auth_method !== 'private_key_jwt'
      ? []
      : client.jwks_uri
        ? [['jwks uri', client.jwks_uri] as const]
        : [['jwks', `${client.jwks?.keys.length ?? 0} key(s)`] as const];
  return formatRecord([
    ['client_id', client.client_id],
    ...('client_secret' in client && client.client_secret
      ? [['client_secret', client.client_secret] as const]
      : []),
    ['name', client.name],
    ['status', client.status === 'disabled' ? `disabled since ${formatTime(client.disabled_at)}` : 'enabled'],
    ['auth method', client.auth_method],
    ...keys,
    [
      'grants',
      client.grants.length
        ? client.grants.map((g) => `${g.resource}  ${g.scopes.join(' ')}`).join('\n')
        : '-',
    ],
    ['introspects', client.introspects.length ? client.introspects.join('\n') : '-'],
    ['bearer', client.bearer_allowed ? 'allowed (tokens without DPoP)' : 'no (DPoP required)'],
    ['dpop keys', client.dpop_jkts.length ? client.dpop_jkts.join('\n') : 'any (none pinned)'],
    [
      'rate limits',
      `tokens ${perMinute(client.rate_limits.tokens_per_minute)}, ` +
        `introspections ${perMinute(client.rate_limits.introspections_per_minute)}`,
    ],
    ...(client.auth_method === 'private_key_jwt' ? [] : [['secrets', formatSecrets(client)] as const]),
    ['created', formatTime(client.created_at)],
    ['updated', formatTime(client.updated_at)],
  ]);
}

function perMinute(limit: number | null): string {
  return limit === null ? 'server default' : `${limit}/min`;
}

function formatSecrets(client: Client): string {
  if (!client.secrets.length) return 'none working';
  return client.secrets
    .map(
      (s) =>
        `${s.id}  created ${formatTime(s.created_at)}, ${s.expires_at ? `expires ${formatTime(s.expires_at)}` : 'no expiry'}`,
    )
    .join('\n');
}

export function formatClientTable(clients: readonly Client[]): string {
  if (!clients.length) return 'No clients.\n';
  return formatTable(
    ['CLIENT_ID', 'NAME', 'STATUS', 'AUTH', 'GRANTS'],
    clients.map((c) => [
      c.client_id,
      c.name,
      c.status,
      c.auth_method,
      c.grants.map((g) => `${g.resource}=${g.scopes.join(',')}`).join(' ') || '-',
    ]),
  );
}

export function formatAnomalyTable(anomalies: readonly AnomalyEvent[]): string {
  if (!anomalies.length) return 'No anomalies.\n';
  return formatTable(
    ['TIME', 'KIND', 'CLIENT', 'DESCRIPTION'],
    anomalies.map((a) => [formatTime(a.detected_at), a.kind, a.client_id, a.description]),
  );
}

export function formatAuditTable(events: readonly AuditEvent[]): string {
  if (!events.length) return 'No audit events.\n';
  return formatTable(
    ['TIME', 'ACTION', 'TARGET', 'ACTOR'],
    events.map((e) => [formatTime(e.occurred_at), e.action, `${e.target_type} ${e.target_id}`, e.actor]),
  );
}
