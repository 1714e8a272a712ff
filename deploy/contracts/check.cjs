// Validates an AsyncAPI document with the AsyncAPI initiative's own parser
// (@asyncapi/parser, pinned by package-lock.json beside this file): `make contracts-check`.
// Prints every diagnostic; exits 1 on an error, or on a warning unless --allow-warnings.
"use strict";
const fs = require("node:fs");
const { Parser, DiagnosticSeverity } = require("@asyncapi/parser");

async function main() {
  const path = process.argv[2];
  if (!path) {
    console.error("usage: node check.cjs DOCUMENT");
    process.exit(2);
  }
  const version = require("@asyncapi/parser/package.json").version;
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(fs.readFileSync(path, "utf8"), {
    source: path,
  });
  const names = Object.fromEntries(Object.entries(DiagnosticSeverity).map(([k, v]) => [v, k]));
  for (const d of diagnostics) {
    const where = d.path && d.path.length ? d.path.join(".") : "(document)";
    console.log(`${names[d.severity] || d.severity}: ${d.code}: ${d.message} at ${where}`);
  }
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error).length;
  const warnings = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Warning).length;
  if (!document || errors) {
    console.log(`@asyncapi/parser ${version}: ${path} is NOT valid (${errors} errors)`);
    process.exit(1);
  }
  const channels = document.channels().length;
  const operations = document.operations().length;
  const messages = document.components().messages().length;
  console.log(
    `@asyncapi/parser ${version}: ${path} is valid AsyncAPI ${document.version()}: ` +
      `${channels} channels, ${operations} operations, ${messages} messages, ` +
      `${errors} errors, ${warnings} warnings`,
  );
  if (warnings && !process.argv.includes("--allow-warnings")) process.exit(1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
