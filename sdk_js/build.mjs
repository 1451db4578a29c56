// Build dist/segserver.esm.js (ES module) and dist/segserver.js (classic script,
// window.segserver), both minified; print their minified + gzipped sizes and fail
// when either is over the budget (issue 6: 6 KB).
import { build } from "esbuild";
import { gzipSync } from "node:zlib";
import { readFileSync } from "node:fs";

export const BUDGET = 6 * 1024;
// ES2019: every browser of the last ~6 years (optional chaining etc. are lowered).
export const TARGET = "es2019";

export const builds = [
  { entryPoints: ["src/index.js"], format: "esm", outfile: "dist/segserver.esm.js" },
  { entryPoints: ["src/global.js"], format: "iife", outfile: "dist/segserver.js" },
];

export const common = { bundle: true, minify: true, target: TARGET, legalComments: "none", logLevel: "warning" };

export const gzipped = (code) => gzipSync(code, { level: 9 }).length;

if (import.meta.url === `file://${process.argv[1]}`) {
  let failed = false;
  for (const b of builds) {
    try {
      await build({ ...common, ...b });
    } catch {
      process.exit(1); // esbuild has printed the error
    }
    const code = readFileSync(b.outfile);
    const gz = gzipped(code);
    const ok = gz <= BUDGET;
    failed ||= !ok;
    console.log(`${b.outfile}: ${code.length} B minified, ${gz} B min+gzip (budget ${BUDGET} B) ${ok ? "ok" : "OVER BUDGET"}`);
  }
  if (failed) process.exit(1);
}
