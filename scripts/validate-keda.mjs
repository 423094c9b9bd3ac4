// Checks KEDA manifests against KEDA's ScaledObject schema (the npm package
// @kubernetes-models/keda, generated from KEDA 2.10's CRDs) and that every Kindling metric a
// prometheus trigger's query names is one the node exports (the names are read from
// METRICS_FILE, a /metrics scrape, when set). Exits 1 naming each problem.
//   node scripts/validate-keda.mjs FILE.yaml...
// The packages come from scripts/setup.sh --test, in KINDLING_TOOLS
// (default ~/.cache/kindling/tools).
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

const tools = process.env.KINDLING_TOOLS || join(homedir(), ".cache", "kindling", "tools");
const require = createRequire(join(tools, "package.json"));
const yaml = require("js-yaml");
const keda = require("@kubernetes-models/keda/keda.sh/v1alpha1");

const exported = process.env.METRICS_FILE
  ? new Set(
      readFileSync(process.env.METRICS_FILE, "utf8")
        .split("\n")
        .filter((line) => line.startsWith("# TYPE "))
        .map((line) => line.split(" ")[2]),
    )
  : null;

let problems = 0;
let checked = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(readFileSync(file, "utf8"))) {
    if (!doc) continue;
    const Model = keda[doc.kind];
    if (!Model || doc.apiVersion !== "keda.sh/v1alpha1") {
      console.error(`${file}: ${doc.apiVersion} ${doc.kind} is not a KEDA resource`);
      problems++;
      continue;
    }
    try {
      new Model(doc).validate();
      checked++;
    } catch (err) {
      console.error(`${file}: ${doc.kind} ${doc.metadata?.name}: ${err.message}`);
      problems++;
    }
    for (const trigger of doc.spec?.triggers || []) {
      if (trigger.type !== "prometheus" || !exported) continue;
      for (const name of trigger.metadata.query.match(/kindling_[a-z_]+/g) || []) {
        if (!exported.has(name)) {
          console.error(`${file}: the query names ${name}, which no Kindling node exports`);
          problems++;
        }
      }
    }
  }
}
if (problems) process.exit(1);
console.log(`${checked} KEDA resources valid`);
