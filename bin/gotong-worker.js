#!/usr/bin/env node
'use strict';
let cli;
try {
  cli = require('../dist/src/client/cli.js');
} catch (err) {
  if (err && err.code === 'MODULE_NOT_FOUND' && /dist[\\/]src[\\/]client[\\/]cli/.test(String(err.message))) {
    process.stderr.write("error: gotong-worker is not built; run 'npm ci' (or 'npm run build') in its directory\n");
    process.exit(1);
  }
  throw err;
}
cli.main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`error: ${err && err.message ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
