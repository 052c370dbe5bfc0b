export interface CliDefaults {
  /** Where the admin API is when --url is not given. */
  url: string;
  /** The admin credentials file when --credentials is not given. */
  credentialsPath: string;
}

/**
 * The CLI's only reading of the environment: the documented defaults of --url (MAYFLY_URL, else
 * http://localhost:$PORT) and --credentials (MAYFLY_CREDENTIALS). Blank values count as unset, as for the server.
 */
export function readCliDefaults(env: NodeJS.ProcessEnv = process.env): CliDefaults {
  const set = (value: string | undefined) => (value?.trim() ? value.trim() : undefined);
  return {
    url: set(env.MAYFLY_URL) ?? `http://localhost:${set(env.PORT) ?? '3000'}`,
    credentialsPath: set(env.MAYFLY_CREDENTIALS) ?? './keys/admin.json',
  };
}
