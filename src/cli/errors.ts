/** A failure the user can fix; the CLI prints the message alone and exits 1. */
export class CliError extends Error {
  override name = 'CliError';
}

/** The command line itself is wrong (unknown option, missing argument, malformed value): exit 2. */
export class UsageError extends CliError {
  override name = 'UsageError';
}
