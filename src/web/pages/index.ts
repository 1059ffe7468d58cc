/*
 * web/pages/index — the console's pages. Each role adds its own line (the
 * module exports `page: ConsolePage`, see registry.ts); the order here does
 * not matter, the navigation follows NAV_SLOTS. Loaded when the console
 * starts, so a page that fails to load stops start-up rather than a request.
 */
import type { ConsolePage } from './registry.ts';

export const PAGES: (() => Promise<{ page: ConsolePage }>)[] = [
  () => import('./dashboard.ts'),
  () => import('./trace.ts'),
  () => import('./quarantine.ts'),
  () => import('./outbox.ts'),
  () => import('../../desk/web.ts'), // the abuse desk's page lives with the desk
  () => import('./audit.ts'),
  () => import('./settings.ts'),
];
