#!/usr/bin/env node
// The installed `mechreward` command: runs the compiled CLI (npm run build writes dist/).
import('../dist/src/cli.js').then((cli) => cli.main(process.argv)).catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
