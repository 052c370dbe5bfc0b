import { CompiledQuery, type Kysely } from 'kysely';
import type pg from 'pg';

/**
 * A statement of the token and introspection paths: SQL written once, never built per request. On PostgreSQL it
 * is a named prepared statement, parsed and planned once per connection; with `prepare` off (a pooler in
 * transaction mode that cannot keep them, such as pgbouncer before 1.21) the same text is sent unnamed each time.
 */
export interface Statement {
  /** Unique per text: a connection knows a prepared statement by its name. */
  readonly name: string;
  readonly text: string;
}

export function statement(name: string, text: string): Statement {
  return { name: `mayfly_${name}`, text: text.replace(/\s+/g, ' ').trim() };
}

/** Runs hot statements; `values` are bound as parameters ($1, $2, …). */
export interface Statements {
  query<Row>(statement: Statement, values: readonly unknown[]): Promise<Row[]>;
}

/** Told of every failed statement (the database handle's query error hook). */
type OnError = (error: unknown) => void;

export function poolStatements(pool: pg.Pool, prepare: boolean, onError: OnError): Statements {
  return {
    async query<Row>({ name, text }: Statement, values: readonly unknown[]): Promise<Row[]> {
      try {
        const result = await pool.query({ text, values: [...values], ...(prepare ? { name } : {}) });
        return result.rows as Row[];
      } catch (error) {
        onError(error);
        throw error;
      }
    },
  };
}

/**
 * PGlite is one connection shared through Kysely's (serialized) driver: going through it keeps a statement out of
 * another caller's open transaction. The text is still fixed; only the query builder is skipped.
 */
export function kyselyStatements<DB>(db: Kysely<DB>): Statements {
  return {
    async query<Row>({ text }: Statement, values: readonly unknown[]): Promise<Row[]> {
      const result = await db.executeQuery<Row>(CompiledQuery.raw(text, [...values]));
      return result.rows;
    },
  };
}
