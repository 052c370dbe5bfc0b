import type { ConsolePage } from '../console.ts';

export const CLIENT_PAGES: readonly ConsolePage[] = [];
