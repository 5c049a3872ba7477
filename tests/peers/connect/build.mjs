// `npm run build`: bundle browser.mjs (connect-web, protobuf-es, grpc-web) into bundle.js,
// one classic script for <script src="bundle.js"> that sets window.edgeCall. Not minified,
// so a failing browser test's stack points at readable code. About a second.

import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const here = (name) => fileURLToPath(new URL(name, import.meta.url));

await build({
  entryPoints: [here('browser.mjs')],
  outfile: here('bundle.js'),
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['chrome110'],
  legalComments: 'none',
  logLevel: 'warning',
});
