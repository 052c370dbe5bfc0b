import type { ConsolePage } from '../console.ts';

export const RESOURCE_PAGES: readonly ConsolePage[] = [];
