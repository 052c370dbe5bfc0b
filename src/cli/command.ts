import type { AdminClient, AdminScope } from './admin-client.ts';
import type { Output } from './output.ts';

export interface OptionSpec {
  type: 'string' | 'boolean';
  multiple?: boolean;
  short?: string;
  /** How the value is shown in help, e.g. `<seconds>`. */
  value?: string;
  description: string;
}

export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

type OptionValue<S extends OptionSpec> = S['type'] extends 'boolean'
  ? boolean
  : S['multiple'] extends true
    ? string[]
    : string;

export type OptionValues<O extends OptionSpecs> = { -readonly [K in keyof O]?: OptionValue<O[K]> };

/**
 * Which of the shared options a command takes: admin commands talk to the admin API, `url` commands only to the
 * protocol endpoints, `none` commands are configured by the server's environment.
 */
export type GlobalOptionSet = 'admin' | 'url' | 'none';

export interface CommandContext {
  out: Output;
  /** Print the admin API's JSON as is. */
  json: boolean;
  /** Mayfly's base URL, without a trailing slash. */
  url: string;
  credentialsPath: string;
  /** Authenticates to the admin API on first use, asking for only the scope the command needs. */
  connect(scope: AdminScope): Promise<AdminClient>;
}

export interface ArgumentSpec<A extends string> {
  name: A;
  description: string;
}

export interface CommandInput<O extends OptionSpecs, A extends string> {
  values: OptionValues<O>;
  args: Record<A, string>;
}

export interface CommandSpec<O extends OptionSpecs, A extends string> {
  /** The words after `mayfly`: a group and a subcommand, or one word. */
  path: readonly [string] | readonly [string, string];
  summary: string;
  /** A paragraph for the command's help, when the summary is not enough. */
  description?: string;
  /** What follows the path in the usage line, e.g. `<uri> --scopes "<scope> …" [options]`. */
  synopsis: string;
  arguments: readonly ArgumentSpec<A>[];
  options: O;
  globals: GlobalOptionSet;
  examples?: readonly string[];
  run(input: CommandInput<O, A>, context: CommandContext): Promise<void>;
}

/** A command with its option types erased, so that commands of every shape share one catalogue. */
export interface Command {
  path: readonly [string] | readonly [string, string];
  summary: string;
  description: string | undefined;
  synopsis: string;
  arguments: readonly ArgumentSpec<string>[];
  options: OptionSpecs;
  globals: GlobalOptionSet;
  examples: readonly string[];
  run(
    values: Readonly<Record<string, unknown>>,
    args: readonly string[],
    context: CommandContext,
  ): Promise<void>;
}

export function defineCommand<const O extends OptionSpecs, const A extends string = never>(
  spec: CommandSpec<O, A>,
): Command {
  return {
    path: spec.path,
    summary: spec.summary,
    description: spec.description,
    synopsis: spec.synopsis,
    arguments: spec.arguments,
    options: spec.options,
    globals: spec.globals,
    examples: spec.examples ?? [],
    run: (values, args, context) =>
      spec.run(
        {
          // parseArgs checked every value against these very option specs, and the runner the argument count.
          values: values as OptionValues<O>,
          args: Object.fromEntries(spec.arguments.map((arg, i) => [arg.name, args[i]])) as Record<A, string>,
        },
        context,
      ),
  };
}

export function formatCommandName(command: Pick<Command, 'path'>): string {
  return ['mayfly', ...command.path].join(' ');
}
