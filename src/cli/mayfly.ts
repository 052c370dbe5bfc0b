#!/usr/bin/env node
import module from 'node:module';

// A command-line tool starts often: reuse the compiled (and type-stripped) modules between runs.
module.enableCompileCache();
// Every file the CLI creates (secrets, exports) is its owner's alone, whatever the shell's umask.
process.umask(0o077);

const { runCli } = await import('./cli.ts');
const { readCliDefaults } = await import('./settings.ts');

process.exitCode = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  defaults: readCliDefaults(),
});
