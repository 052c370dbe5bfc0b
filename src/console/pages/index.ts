import type { ConsolePage } from '../console.ts';
import { AUDIT_PAGES } from './audit.ts';
import { CLIENT_PAGES } from './clients.ts';
import { KEY_PAGES } from './keys.ts';
import { OVERVIEW_PAGES } from './overview.ts';
import { RESOURCE_PAGES } from './resources.ts';

/** Every console page but sign-in and sign-out, which need no session or end one (see console.ts). */
export const CONSOLE_PAGES: readonly ConsolePage[] = [
  ...OVERVIEW_PAGES,
  ...RESOURCE_PAGES,
  ...CLIENT_PAGES,
  ...KEY_PAGES,
  ...AUDIT_PAGES,
];
