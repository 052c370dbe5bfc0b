import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';

import { Document, isScalar, parseDocument, visit } from 'yaml';
import type { z } from 'zod';

import { ClientInput, type Client } from '../clients/client.schemas.ts';
import { ResourceInput, type Resource } from '../clients/resource.schemas.ts';

/**
 * A policy file declares resources and clients; `mayfly apply` makes the server match it. Clients are known by
 * name among the clients a policy manages (their ids are random and differ between servers), resources by
 * identifier.
 */
export const POLICY_VERSION = 1;

/**
 * The managed_by label of every object apply creates. Apply updates and `--prune` deletes only clients carrying
 * it (made by hand: only with --adopt or --prune-all; labelled by another manager: never). Only the admin API
 * sets it, so a registrant (RFC 7591), who chooses the name of its client, cannot.
 */
export const POLICY_LABEL = 'policy';

/** The file is wrong, or cannot be applied to this server: every problem in one line, the file named first. */
export class PolicyError extends Error {
  override name = 'PolicyError';
}

export type PolicySyntax = 'yaml' | 'json';

export type DeclaredResource = Pick<Resource, 'identifier' | 'name' | 'scopes' | 'token_format'> & {
  /** Where it is in the file, for messages: `resources[0] (identifier "https://…")`. */
  at: string;
  /** Left out: a new resource gets the server's default lifetime, and an existing one keeps its own. */
  token_ttl: number | undefined;
};

export type DeclaredClient = Pick<
  Client,
  | 'name'
  | 'auth_method'
  | 'jwks'
  | 'jwks_uri'
  | 'grants'
  | 'introspects'
  | 'bearer_allowed'
  | 'dpop_jkts'
  | 'rate_limits'
> & { at: string };

export interface Policy {
  /** The file, as named on the command line. */
  source: string;
  resources: DeclaredResource[];
  clients: DeclaredClient[];
}

/** What a policy file holds, as export writes it: members at their default are left out. */
export interface PolicyDocument {
  version: typeof POLICY_VERSION;
  resources: Record<string, unknown>[];
  clients: Record<string, unknown>[];
}

const TOP_LEVEL = ['version', 'resources', 'clients'];

const SECRET_REFUSED =
  'secrets never belong in a policy file; apply prints a new client secret once (or writes it to --secrets-out)';
const LABEL_REFUSED = `set by apply (${POLICY_LABEL}), not by the file`;

export async function readPolicyFile(path: string): Promise<Policy> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new PolicyError(`cannot read the policy file ${path}: ${code ?? String(error)}`);
  }
  return parsePolicy(text, path, extname(path).toLowerCase() === '.json' ? 'json' : 'yaml');
}

export function parsePolicy(text: string, source: string, syntax: PolicySyntax): Policy {
  return readPolicy(syntax === 'json' ? parseJson(text, source) : parseYaml(text, source), source);
}

function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new PolicyError(
      `${source}: not valid JSON: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}

function parseYaml(text: string, source: string): unknown {
  const document = parseDocument(text);
  const [error] = document.errors;
  if (error) {
    // The message ends with the position and, on the next lines, the text around it: keep one line.
    const message = (error.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
    const where = error.linePos ? `line ${error.linePos[0].line}, column ${error.linePos[0].col}: ` : '';
    throw new PolicyError(`${source}: not valid YAML: ${where}${message}`);
  }
  return document.toJS();
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Validates the document with the admin API's own schemas, naming the file, the object and the field. */
export function readPolicy(value: unknown, source: string): Policy {
  if (!isRecord(value)) {
    throw new PolicyError(`${source}: expected a mapping with version, resources and clients`);
  }
  const problems: string[] = [];
  for (const key of Object.keys(value)) {
    if (key === 'client_secret') problems.push(`client_secret: ${SECRET_REFUSED}`);
    else if (!TOP_LEVEL.includes(key))
      problems.push(`${key}: unknown field; a policy has version, resources and clients`);
  }
  if (value.version !== POLICY_VERSION) {
    const got = value.version === undefined ? 'nothing' : JSON.stringify(value.version);
    problems.push(`version: expected ${POLICY_VERSION} (the policy format version), got ${got}`);
  }
  const resources = readList(value.resources, 'resources', problems).flatMap((item, i) => {
    const at = describeObject('resources', i, item, 'identifier');
    const parsed = ResourceInput.safeParse(withoutRefused(item, at, problems), { reportInput: true });
    if (!parsed.success) {
      problems.push(...describeIssues(at, parsed.error.issues));
      return [];
    }
    const { identifier, name, scopes, token_ttl, token_format } = parsed.data;
    return [{ at, identifier, name: name ?? null, scopes, token_ttl, token_format }];
  });
  const clients = readList(value.clients, 'clients', problems).flatMap((item, i) => {
    const at = describeObject('clients', i, item, 'name');
    const parsed = ClientInput.safeParse(withoutRefused(item, at, problems), { reportInput: true });
    if (!parsed.success) {
      problems.push(...describeIssues(at, parsed.error.issues));
      return [];
    }
    const client = parsed.data;
    return [
      {
        at,
        name: client.name,
        auth_method: client.auth_method,
        jwks: client.jwks ?? null,
        jwks_uri: client.jwks_uri ?? null,
        grants: client.grants,
        introspects: client.introspects,
        bearer_allowed: client.bearer_allowed,
        dpop_jkts: client.dpop_jkts,
        rate_limits: {
          tokens_per_minute: client.rate_limits?.tokens_per_minute ?? null,
          introspections_per_minute: client.rate_limits?.introspections_per_minute ?? null,
        },
      },
    ];
  });
  problems.push(
    ...findRepeats(resources, (r) => r.identifier, 'identifier', 'resource identifiers must not repeat'),
    ...findRepeats(clients, (c) => c.name, 'name', 'clients are known by name, so names must not repeat'),
  );
  if (problems.length) throw new PolicyError(`${source}: ${problems.join('; ')}`);
  return { source, resources, clients };
}

function readList(value: unknown, key: string, problems: string[]): unknown[] {
  if (value === undefined || value === null) return [];
  if (Array.isArray(value)) return value;
  problems.push(`${key}: expected a list`);
  return [];
}

/** `clients[2] (name "billing")`: the position, and the key when there is one to show. */
function describeObject(list: string, index: number, item: unknown, key: string): string {
  const value = isRecord(item) ? item[key] : undefined;
  return `${list}[${index}]${typeof value === 'string' ? ` (${key} ${JSON.stringify(value)})` : ''}`;
}

/** Members a policy must not carry get their own message, and are left out of the schema's check. */
function withoutRefused(item: unknown, at: string, problems: string[]): unknown {
  if (!isRecord(item)) return item;
  const { client_secret: secret, managed_by: label, ...rest } = item;
  if (secret !== undefined) problems.push(`${at}: client_secret: ${SECRET_REFUSED}`);
  if (label !== undefined) problems.push(`${at}: managed_by: ${LABEL_REFUSED}`);
  return rest;
}

function describeIssues(at: string, issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => `${at}: ${formatPath([...issue.path, key])}: unknown field`);
    }
    const missing = issue.code === 'invalid_type' && issue.input === undefined;
    const path = formatPath(issue.path);
    return [`${at}: ${path ? `${path}: ` : ''}${missing ? 'required' : issue.message}`];
  });
}

/** `grants[0].scopes`, as one would point at it in the file. */
export function formatPath(path: readonly PropertyKey[]): string {
  return path
    .map((segment, i) => (typeof segment === 'number' ? `[${segment}]` : `${i ? '.' : ''}${String(segment)}`))
    .join('');
}

function findRepeats<T extends { at: string }>(
  items: readonly T[],
  keyOf: (item: T) => string,
  field: string,
  why: string,
): string[] {
  const first = new Map<string, T>();
  return items.flatMap((item) => {
    const earlier = first.get(keyOf(item));
    if (!earlier) {
      first.set(keyOf(item), item);
      return [];
    }
    return [`${item.at}: ${field}: also declared by ${earlier.at.replace(/ \(.*$/, '')}; ${why}`];
  });
}

/** The resources and clients as a policy document; members at their default are left out. */
export function buildPolicyDocument(
  resources: readonly Resource[],
  clients: readonly Client[],
): PolicyDocument {
  return {
    version: POLICY_VERSION,
    resources: resources.map((r) => ({
      identifier: r.identifier,
      ...(r.name === null ? {} : { name: r.name }),
      scopes: r.scopes,
      token_ttl: r.token_ttl,
      token_format: r.token_format,
    })),
    clients: clients.map((c) => {
      const limits = Object.fromEntries(Object.entries(c.rate_limits).filter(([, limit]) => limit !== null));
      return {
        name: c.name,
        auth_method: c.auth_method,
        ...(c.jwks ? { jwks: c.jwks } : {}),
        ...(c.jwks_uri ? { jwks_uri: c.jwks_uri } : {}),
        ...(c.grants.length ? { grants: c.grants } : {}),
        ...(c.introspects.length ? { introspects: c.introspects } : {}),
        ...(c.bearer_allowed ? { bearer_allowed: true } : {}),
        ...(c.dpop_jkts.length ? { dpop_jkts: c.dpop_jkts } : {}),
        ...(Object.keys(limits).length ? { rate_limits: limits } : {}),
      };
    }),
  };
}

export function formatPolicy(document: PolicyDocument, syntax: PolicySyntax): string {
  if (syntax === 'json') return `${JSON.stringify(document, null, 2)}\n`;
  const yaml = new Document(document);
  // Lists of plain values (scopes, identifiers, thumbprints) read best on one line, as people write them.
  visit(yaml, {
    Seq(_key, node) {
      if (node.items.every((item) => isScalar(item))) node.flow = true;
    },
  });
  // Long members (an RSA key's n) stay on one line rather than folded.
  return yaml.toString({ lineWidth: 0, flowCollectionPadding: false });
}
