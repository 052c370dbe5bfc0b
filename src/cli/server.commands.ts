import { defineCommand } from './command.ts';
import { CliError } from './errors.ts';

// The server modules are loaded only when asked for: the admin commands stay quick to start.

const serve = defineCommand({
  path: ['serve'],
  summary: 'run the Mayfly server (what npm start runs)',
  description:
    'Run the Mayfly server until SIGTERM or SIGINT; what npm start runs. It is configured by the\n' +
    'environment (PORT, MAYFLY_ISSUER, DATABASE_URL, …; see the README), and on its first start writes the\n' +
    'admin credentials that the other commands use to keys/admin.json.',
  synopsis: '',
  arguments: [],
  options: {},
  globals: 'none',
  async run() {
    const { serve: startMayfly } = await import('../main.ts');
    await startMayfly();
  },
});

const migrate = defineCommand({
  path: ['migrate'],
  summary: 'apply pending database migrations (what npm run db:migrate runs)',
  description:
    'Apply pending migrations to the configured database (DATABASE_URL, else the embedded database in\n' +
    'MAYFLY_DATA_DIR) and exit; what npm run db:migrate runs. The server also migrates when it starts.',
  synopsis: '',
  arguments: [],
  options: {},
  globals: 'none',
  async run(_input, context) {
    const { describeMigrationFailure, migrate: migrateDatabase } = await import('../db/migrate-cli.ts');
    try {
      await migrateDatabase(context.out);
    } catch (error) {
      throw new CliError(describeMigrationFailure(error));
    }
  },
});

export const SERVER_COMMANDS = [serve, migrate];
