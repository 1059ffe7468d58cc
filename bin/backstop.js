#!/usr/bin/env node
// The `backstop` command. Backstop is written in TypeScript and run through tsx's
// loader, so a checkout works right after `npm install` with no build step.
import { register } from 'tsx/esm/api';
register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
