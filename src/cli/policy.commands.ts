import { createHash } from 'node:crypto';
import { open, unlink, writeFile, type FileHandle } from 'node:fs/promises';

import { z } from 'zod';

import { Client, ClientWithSecret } from '../clients/client.schemas.ts';
import { Resource } from '../clients/resource.schemas.ts';
import {
  buildPolicyDocument,
  formatPolicy,
  PolicyError,
  readPolicyFile,
  type Policy,
} from '../policy/policy-document.ts';
import {
  planPolicy,
  selectForExport,
  type ChangeAction,
  type Plan,
  type PlannedChange,
  type PlanOptions,
  type ServerState,
} from '../policy/policy-plan.ts';
import type { AdminClient } from './admin-client.ts';
import { parseChoice } from './args.ts';
import { defineCommand, type CommandContext } from './command.ts';
import { CliError } from './errors.ts';
import { formatJson, formatTable } from './output.ts';
import { readAs } from './views.ts';

/** A policy problem is the user's to fix: one line, exit 1. */
function rethrowAsCliError(error: unknown): never {
  throw error instanceof PolicyError ? new CliError(error.message) : error;
}

const PAGE_SIZE = '200';

async function listAll<T>(api: AdminClient, path: string, item: z.ZodType<T>): Promise<T[]> {
  const Page = z.object({ items: z.array(item), next_cursor: z.string().nullable() });
  const items: T[] = [];
  let cursor: string | undefined;
  do {
    const page = readAs(Page, await api.send('GET', path, { query: { limit: PAGE_SIZE, cursor } }), 'list');
    items.push(...page.items);
    cursor = page.next_cursor ?? undefined;
  } while (cursor !== undefined);
  return items;
}

async function readServerState(context: CommandContext): Promise<ServerState> {
  const api = await context.connect('admin:read');
  return {
    resources: await listAll(api, '/resources', Resource),
    clients: await listAll(api, '/clients', Client),
  };
}

interface NewSecret {
  name: string;
  client_id: string;
  client_secret: string;
}

const SECRET_WARNING =
  'Save the client secrets now: Mayfly keeps only a hash of each and will not show them again.\n';

const ACTIONS: readonly ChangeAction[] = ['create', 'update', 'replace', 'delete', 'unchanged'];
const PLANNED: Record<ChangeAction, string> = {
  create: 'to create',
  update: 'to update',
  replace: 'to replace',
  delete: 'to delete',
  unchanged: 'unchanged',
};
const DONE: Record<ChangeAction, string> = {
  create: 'created',
  update: 'updated',
  replace: 'replaced',
  delete: 'deleted',
  unchanged: 'unchanged',
};

function countActions(plan: Plan): Record<ChangeAction, number> {
  const counts = { create: 0, update: 0, replace: 0, delete: 0, unchanged: 0 };
  for (const change of plan.changes) counts[change.action] += 1;
  return counts;
}

const ACTION_WIDTH = Math.max(...ACTIONS.map((a) => a.length));
/** Under the object's kind, two columns further in. */
const FIELD_INDENT = ' '.repeat(ACTION_WIDTH + 6);

function formatChange(change: PlannedChange, dryRun: boolean): string {
  const facts = [
    ...(change.client_id === undefined ? [] : [`client_id ${change.client_id}`]),
    ...(change.action !== 'delete'
      ? []
      : [change.managed_by === null ? 'made by hand' : `managed_by ${String(change.managed_by)}`]),
    ...(change.adopted ? [`made by hand, ${dryRun ? 'to adopt' : 'adopted'}`] : []),
  ];
  const replaced = change.action === 'replace' ? '; the new client gets a new client_id and secret' : '';
  const head = `  ${change.action.padEnd(ACTION_WIDTH)}  ${change.kind} ${change.key}${facts.length ? ` (${facts.join(', ')}${replaced})` : ''}`;
  const fields = change.fields.map(
    (f) =>
      `${FIELD_INDENT}${f.field}: ${'from' in f ? `${formatValue(f.field, f.from)} → ` : ''}${formatValue(f.field, f.to)}`,
  );
  return [head, ...fields].join('\n');
}

/** Values as a person compares them: lists space-separated, grants as uri=scope,scope, keys by kid. */
function formatValue(field: string, value: unknown): string {
  if (value === null || value === undefined) return '-';
  if (field === 'grants') {
    const grants = value as Client['grants'];
    return grants.length ? grants.map((g) => `${g.resource}=${g.scopes.join(',')}`).join(' ') : '(none)';
  }
  if (field === 'jwks') {
    const keys = (value as { keys: Record<string, unknown>[] }).keys;
    const names = keys.map((key) =>
      typeof key.kid === 'string'
        ? key.kid
        : `#${createHash('sha256').update(JSON.stringify(key)).digest('hex').slice(0, 8)}`,
    );
    return `${keys.length} key${keys.length === 1 ? '' : 's'} (${names.join(', ')})`;
  }
  if (field === 'rate_limits') {
    const limits = value as Client['rate_limits'];
    const perMinute = (limit: number | null) => (limit === null ? 'server default' : `${limit}/min`);
    return `tokens ${perMinute(limits.tokens_per_minute)}, introspections ${perMinute(limits.introspections_per_minute)}`;
  }
  if (field === 'token_ttl' && typeof value === 'number') return `${value} s`;
  if (Array.isArray(value)) return value.length ? value.map(String).join(' ') : '(none)';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function formatPlan(policy: Policy, plan: Plan, options: PlanOptions, dryRun: boolean): string {
  const counts = countActions(plan);
  const writes = plan.operations.length > 0;
  const words = dryRun ? PLANNED : DONE;
  const tally = ACTIONS.filter((a) => counts[a] > 0 || a === 'unchanged')
    .map((a) => `${counts[a]} ${words[a]}`)
    .join(', ');
  const headline = !writes
    ? `No changes: ${policy.source} matches the server.`
    : dryRun
      ? `Plan for ${policy.source} (dry run: nothing is written):`
      : `Applied ${policy.source}:`;
  const lines = [headline, ...plan.changes.map((change) => formatChange(change, dryRun))];
  lines.push(dryRun && writes ? `${tally}. Run again without --dry-run to apply.` : `${tally}.`);
  const adopted = plan.changes.filter((c) => c.adopted);
  if (adopted.length) {
    lines.push(
      `${dryRun ? 'Would adopt' : 'Adopted'} ${plural(adopted.length, 'client')} made by hand: ` +
        `${adopted.map(describeAdopted).join(', ')}; ` +
        `the policy manages ${adopted.length === 1 ? 'it' : 'them'} from now on.`,
    );
  }
  const others = Object.entries(plan.managedByOthers);
  const otherCount = others.reduce((sum, [, count]) => sum + count, 0);
  const own = plan.undeclared - otherCount;
  if (own > 0 && options.prune !== 'all') {
    lines.push(
      `${plural(own, 'object')} on the server that the file does not declare ` +
        `left as ${own === 1 ? 'it is' : 'they are'}` +
        (options.prune === 'none'
          ? ' (--prune deletes those a policy created, --prune-all all of them).'
          : ' (not created by a policy; --prune-all deletes them).'),
    );
  }
  if (otherCount > 0) {
    lines.push(
      `${plural(otherCount, 'client')} another manager manages left as ${otherCount === 1 ? 'it is' : 'they are'} ` +
        `(${others.map(([label, count]) => `managed_by ${label}: ${count}`).join(', ')}); ` +
        'apply never changes or deletes those.',
    );
  }
  return `${lines.join('\n')}\n`;
}

const plural = (count: number, noun: string) => `${count} ${noun}${count === 1 ? '' : 's'}`;

/** An adopted client that --allow-replace replaces goes: its successor, with a new client_id, is the policy's. */
const describeAdopted = (change: PlannedChange) =>
  `${change.key} (client_id ${String(change.client_id)}${change.action === 'replace' ? ', replaced' : ''})`;

function formatResult(
  policy: Policy,
  plan: Plan,
  options: PlanOptions,
  dryRun: boolean,
  handover: { secrets: NewSecret[]; file: string | undefined },
) {
  const counts = countActions(plan);
  return {
    file: policy.source,
    dry_run: dryRun,
    prune: options.prune,
    summary: { ...counts, undeclared: plan.undeclared },
    managed_by_others: plan.managedByOthers,
    changes: plan.changes,
    ...(handover.file === undefined ? { secrets: handover.secrets } : { secrets_file: handover.file }),
  };
}

/**
 * Where new secrets go: a file created now (before anything is written, so that a file already there or an
 * unwritable folder stops the apply early) with mode 0600, never overwritten.
 */
async function reserveSecretsFile(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'wx', 0o600);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      throw new CliError(
        `--secrets-out ${path} exists, and apply never overwrites a secrets file: move it away or name another`,
      );
    }
    throw new CliError(`cannot create --secrets-out ${path}: ${code ?? String(error)}`);
  }
}

async function writeSecretsFile(handle: FileHandle, path: string, secrets: NewSecret[]): Promise<void> {
  if (secrets.length) await handle.writeFile(formatJson(secrets));
  await handle.close();
  if (!secrets.length) await unlink(path);
}

function formatSecrets(secrets: readonly NewSecret[]): string {
  return (
    'New client secrets, shown this once:\n' +
    formatTable(
      ['NAME', 'CLIENT_ID', 'CLIENT_SECRET'],
      secrets.map((s) => [s.name, s.client_id, s.client_secret]),
    )
  );
}

/** Runs the calls in order; what was created before a failure is kept, and its secrets handed over all the same. */
async function executePlan(api: AdminClient, plan: Plan, secrets: NewSecret[]): Promise<void> {
  for (const [index, operation] of plan.operations.entries()) {
    let answer: unknown;
    try {
      answer = await api.send(
        operation.method,
        operation.path,
        operation.body ? { body: operation.body } : {},
      );
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new CliError(
        `apply stopped at change ${index + 1} of ${plan.operations.length} (${operation.what}): ${reason}. ` +
          'The changes before it are made; fix the cause and apply again',
      );
    }
    if (operation.secretOf === undefined) continue;
    const created = readAs(ClientWithSecret, answer, 'client');
    if (created.client_secret !== undefined) {
      secrets.push({
        name: created.name,
        client_id: created.client_id,
        client_secret: created.client_secret,
      });
    }
  }
}

const applyPolicy = defineCommand({
  path: ['apply'],
  summary: 'make the resources and clients match a policy file',
  description:
    'Make the resources and clients match a policy file (YAML, or JSON when named .json): create what is\n' +
    'missing, update what differs, field by field, and leave the rest alone. Resources are known by\n' +
    'identifier; what apply creates is labelled managed_by: policy, and clients are known by name among those\n' +
    'so labelled. A declared name that another client holds is an error, and nothing is written: a client made\n' +
    'by hand is taken over only with --adopt, one another manager labels (managed_by: registration, ...) never.\n' +
    "Applying the same file again changes nothing. New client secrets are printed once. The admin API's\n" +
    'resource and admin clients are never touched.',
  synopsis: '<file> [--dry-run] [--prune | --prune-all] [--allow-replace] [--adopt] [--secrets-out <file>]',
  arguments: [{ name: 'file', description: 'the policy file, YAML or JSON' }],
  options: {
    'dry-run': { type: 'boolean', description: 'print the changes without making them' },
    prune: {
      type: 'boolean',
      description: 'delete what the file does not declare, among the objects a policy created',
    },
    'prune-all': {
      type: 'boolean',
      description:
        'delete everything the file does not declare, made by hand too (never admin clients, nor clients ' +
        'another manager such as registration manages)',
    },
    'allow-replace': {
      type: 'boolean',
      description:
        'replace a client whose auth_method changed (deleted and created: a new client_id and secret)',
    },
    adopt: {
      type: 'boolean',
      description:
        'label declared objects made by hand managed_by: policy, so that apply manages them from now on ' +
        '(never a client another manager such as registration manages)',
    },
    'secrets-out': {
      type: 'string',
      value: '<file>',
      description: 'write new client secrets to this new file (mode 0600) instead of printing them',
    },
  },
  globals: 'admin',
  examples: [
    'mayfly apply policy.yaml --dry-run',
    'mayfly apply policy.yaml --prune --secrets-out new-secrets.json',
    'mayfly export > policy.yaml',
  ],
  async run({ args, values }, context) {
    const dryRun = values['dry-run'] === true;
    const options: PlanOptions = {
      prune: values['prune-all'] ? 'all' : values.prune ? 'managed' : 'none',
      allowReplace: values['allow-replace'] === true,
      adopt: values.adopt === true,
    };
    const secretsPath = values['secrets-out'];
    const policy = await readPolicyFile(args.file).catch(rethrowAsCliError);
    const state = await readServerState(context);
    let plan: Plan;
    try {
      plan = planPolicy(policy, state, options);
    } catch (error) {
      rethrowAsCliError(error);
    }

    const secrets: NewSecret[] = [];
    const handover = { secrets, file: undefined as string | undefined };
    if (!dryRun && plan.operations.length) {
      const makesSecrets = plan.operations.some((o) => o.secretOf !== undefined);
      const secretsFile =
        secretsPath !== undefined && makesSecrets ? await reserveSecretsFile(secretsPath) : undefined;
      if (secretsFile) handover.file = secretsPath;
      let failed = false;
      try {
        await executePlan(await context.connect('admin:write'), plan, secrets);
      } catch (error) {
        failed = true;
        throw error;
      } finally {
        if (secretsFile && secretsPath !== undefined)
          await writeSecretsFile(secretsFile, secretsPath, secrets);
        else if (secrets.length) {
          // A failure part-way must not lose the secrets of the clients already created.
          if (failed) context.out.result(context.json ? formatJson({ secrets }) : formatSecrets(secrets));
          context.out.note(SECRET_WARNING);
        }
      }
    }

    if (context.json) {
      context.out.result(formatJson(formatResult(policy, plan, options, dryRun, handover)));
      return;
    }
    context.out.result(formatPlan(policy, plan, options, dryRun));
    if (handover.file === undefined && secrets.length) context.out.result(formatSecrets(secrets));
    if (handover.file !== undefined && secrets.length) {
      context.out.result(
        `Wrote ${secrets.length} new client secret${secrets.length === 1 ? '' : 's'} to ${handover.file} (mode 0600).\n`,
      );
    }
  },
});

const exportPolicy = defineCommand({
  path: ['export'],
  summary: 'write the resources and clients as a policy file that apply accepts',
  description:
    "Write the server's resources and clients as a policy file that `mayfly apply` accepts unchanged (applying\n" +
    'it right away changes nothing, but for clients made by hand, which need --adopt the first time). Secrets\n' +
    "are never part of it; the admin API's resource, admin clients and clients another manager (registration)\n" +
    'manages are left out.',
  synopsis: '[--format yaml|json] [--out <file>] [--managed-only]',
  arguments: [],
  options: {
    format: {
      type: 'string',
      value: 'yaml|json',
      description: 'the file format (default yaml; --json: json)',
    },
    out: { type: 'string', value: '<file>', description: 'write to this file instead of stdout' },
    'managed-only': {
      type: 'boolean',
      description: 'only the objects a policy manages (managed_by: policy)',
    },
  },
  globals: 'admin',
  examples: ['mayfly export --out policy.yaml', 'mayfly export --format json --managed-only'],
  async run({ values }, context) {
    const format =
      values.format === undefined
        ? context.json
          ? 'json'
          : 'yaml'
        : parseChoice(values.format, '--format', ['yaml', 'json'] as const);
    const state = await readServerState(context);
    let selected: ServerState;
    try {
      selected = selectForExport(state, { managedOnly: values['managed-only'] === true });
    } catch (error) {
      rethrowAsCliError(error);
    }
    const text = formatPolicy(buildPolicyDocument(selected.resources, selected.clients), format);
    if (values.out === undefined) {
      context.out.result(text);
      return;
    }
    try {
      await writeFile(values.out, text);
    } catch (error) {
      throw new CliError(
        `cannot write --out ${values.out}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      );
    }
    const counts = { resources: selected.resources.length, clients: selected.clients.length };
    context.out.result(
      context.json
        ? formatJson({ file: values.out, ...counts })
        : `Wrote ${values.out}: ${counts.resources} resources, ${counts.clients} clients.\n`,
    );
  },
});

export const POLICY_COMMANDS = [applyPolicy, exportPolicy];
