import type { ConsolePage } from '../console.ts';

export const AUDIT_PAGES: readonly ConsolePage[] = [];
