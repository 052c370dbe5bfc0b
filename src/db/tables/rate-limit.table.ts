import type { ColumnType } from 'kysely';

/** rate-limiter-flexible's Postgres store layout; the library reads and writes it, Mayfly only purges it. */
export interface RateLimitTable {
  /** `<limit>:<subject>`, e.g. `token-client:orders-service`. */
  key: string;
  points: number;
  /** End of the current window, epoch milliseconds (bigint: node-postgres answers a string). */
  expire: ColumnType<string | number | null, number | null, number | null>;
}
