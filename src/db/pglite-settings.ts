/**
 * PGlite keeps Postgres's buffers inside its WebAssembly memory, which grows and never shrinks: its default of
 * 128 MB of shared buffers alone made the embedded server idle above 500 MB. The files stay in the operating
 * system's page cache whatever the setting, so a small pool costs little here.
 */
export const PGLITE_SETTINGS = ['shared_buffers = 16MB'];
