import { chmod, lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The folders Mayfly keeps secrets in (the embedded database: password hashes, the audit trail, every client; and
 * local key material) belong to its user alone: folders 0700, files 0600. The server creates them so (its umask
 * is 077), and this tightens one found open to other users, made under another umask or by an earlier release.
 * Symbolic links are left alone. Returns how many entries it changed.
 */
export async function keepPrivate(folder: string): Promise<number> {
  let entry;
  try {
    entry = await lstat(folder);
  } catch {
    return 0;
  }
  if (entry.isSymbolicLink()) return 0;
  let changed = 0;
  if (entry.isDirectory()) {
    if (entry.mode & 0o077) {
      await chmod(folder, 0o700);
      changed += 1;
    }
    for (const name of await readdir(folder)) changed += await keepPrivate(join(folder, name));
  } else if (entry.isFile() && entry.mode & 0o077) {
    await chmod(folder, 0o600);
    changed += 1;
  }
  return changed;
}
