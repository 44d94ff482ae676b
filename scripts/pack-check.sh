#!/usr/bin/env bash
# The packages really install (issue 9 §4): pack every publishable workspace package, install the
# tarballs with plain npm into an empty project outside the workspace, and use them there as a
# user would.
#   1. `pnpm build` (dist), then `pnpm -r pack` into a temp dir; one tarball per non-private
#      package.
#   2. `npm install` only @masksub/core + @masksub/vit: the trainer's dependencies (sharp, vega,
#      zod, cli-progress, commander) must not be anywhere in node_modules.
#   3. The README's "API in ten lines" block, taken from README.md as it is, run against the
#      hf-tiny ViT fixture (MASKSUB_PACK_FIXTURE, default ../shared/fixtures/hf-tiny/vit beside
#      the repository): finite losses, and the fine-tuned folder is written.
#   4. `npm install` every other tarball; every main/types/bin/exports path of the installed
#      manifests exists; then `npx masksub --help`, `npx masksub recipes` (the recipe files ship)
#      and `npx masksub adapters` (the architecture packages register).
# Any failure exits non-zero. MASKSUB_PACK_KEEP=1 keeps the temp dir for a look.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
fixture=${MASKSUB_PACK_FIXTURE:-$repo/../shared/fixtures/hf-tiny/vit}
fail() { echo "pack-check: FAIL: $*" >&2; exit 1; }
step() { echo "pack-check: $* ($(( SECONDS - start ))s)"; }
start=$SECONDS

[ -f "$fixture/config.json" ] || fail "no ViT fixture at $fixture (set MASKSUB_PACK_FIXTURE to a folder with config.json + model.safetensors)"
fixture=$(cd "$fixture" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/masksub-pack-check.XXXXXX")
if [ "${MASKSUB_PACK_KEEP:-0}" = 1 ]; then echo "pack-check: keeping $work"; else trap 'rm -rf "$work"' EXIT; fi
case "$work/" in "$repo"/*) fail "the temp dir $work is inside the workspace";; esac
tarballs=$work/tarballs
project=$work/project
mkdir -p "$tarballs" "$project"

# 1. Build dist once for every package (one tsc -b: each package's prepack then finds it up to
# date, instead of seven cold builds), then pack.
step "building dist and packing the workspace packages"
(cd "$repo" && pnpm build) >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; fail "pnpm build"; }
(cd "$repo" && pnpm -r pack --pack-destination "$tarballs") >"$work/pack.log" 2>&1 || { cat "$work/pack.log" >&2; fail "pnpm -r pack"; }
expected=$(cd "$repo" && node -e '
  const fs = require("node:fs");
  for (const d of fs.readdirSync("packages")) {
    const f = `packages/${d}/package.json`;
    if (!fs.existsSync(f)) continue;
    const p = JSON.parse(fs.readFileSync(f, "utf8"));
    if (!p.private) console.log(`${p.name.replace(/^@/, "").replace("/", "-")}-${p.version}.tgz`);
  }' | sort)
actual=$(cd "$tarballs" && ls -1 | sort)
[ "$expected" = "$actual" ] || fail "tarballs differ from the publishable packages: expected [$(echo $expected)], got [$(echo $actual)]"
tgz() { echo "$tarballs/masksub-$1-"*.tgz; }

# 2. A drop-in user's install: core + one architecture.
cd "$project"
printf '{ "name": "masksub-pack-check", "private": true, "type": "module" }\n' >package.json
step "npm install @masksub/core @masksub/vit"
npm install --no-audit --no-fund --loglevel=error "$(tgz core)" "$(tgz vit)" >"$work/npm-core.log" 2>&1 || { cat "$work/npm-core.log" >&2; fail "npm install core + vit"; }
for dep in sharp vega zod cli-progress commander; do
  found=$(find node_modules -type d -path "*node_modules/$dep" -print -quit)
  [ -z "$found" ] || fail "installing @masksub/core + @masksub/vit pulled the trainer dependency '$dep' ($found)"
done

# 3. The README's API example, as written there, on the tiny fixture.
step "running the README's API example against $fixture"
node - "$repo/README.md" "$fixture" >api-example.mjs <<'EOF'
const fs = require('node:fs');
const [readme, fixture] = process.argv.slice(2);
const text = fs.readFileSync(readme, 'utf8');
const section = text.split(/^## /m).find((s) => s.startsWith('The API in ten lines'));
if (!section) throw new Error(`${readme}: no "## The API in ten lines" section`);
const block = /```ts\n([\s\S]*?)```/.exec(section);
if (!block) throw new Error(`${readme}: the API section has no \`\`\`ts block`);
if (!block[1].includes("'./vit-checkpoint'")) throw new Error(`${readme}: the API example no longer loads './vit-checkpoint'`);
const config = JSON.parse(fs.readFileSync(`${fixture}/config.json`, 'utf8'));
const [c, s] = [config.num_channels ?? 3, config.image_size ?? 224];
console.log(`// The README's example with its free names bound: a batch of 2 from the fixture's input size.
import { tf } from '@masksub/core';
const x = tf.randomNormal([2, ${c}, ${s}, ${s}]);
const labels = tf.tensor1d([1, 3], 'int32');
const step = 0;
${block[1].replace("'./vit-checkpoint'", JSON.stringify(fixture))}
for (const [k, v] of Object.entries({ loss, lossMain, lossSub })) if (!Number.isFinite(v)) throw new Error(k + ' is ' + v);
console.log('api example: loss ' + loss.toFixed(4) + ' (main ' + lossMain.toFixed(4) + ', sub ' + lossSub.toFixed(4) + ')');`);
EOF
node api-example.mjs >"$work/api.log" 2>&1 || { cat api-example.mjs "$work/api.log" >&2; fail "the README's API example"; }
grep -q '^api example: loss' "$work/api.log" || { cat "$work/api.log" >&2; fail "the API example printed no losses"; }
for f in config.json model.safetensors; do [ -s "fine-tuned/$f" ] || fail "the API example wrote no fine-tuned/$f"; done
grep '^api example' "$work/api.log"

# 4. Everything else, and the command line.
step "npm install the other packages"
# @huggingface/transformers (bert, clip) pulls onnxruntime-node, whose install script fetches CUDA
# provider binaries from api.nuget.org (not the npm registry, unreachable here); its CPU runtime
# ships in the npm package, so skip that download.
export ONNXRUNTIME_NODE_INSTALL=skip
others=()
for t in "$tarballs"/*.tgz; do case "$t" in */masksub-core-*|*/masksub-vit-*) ;; *) others+=("$t");; esac; done
npm install --no-audit --no-fund --loglevel=error "${others[@]}" >"$work/npm-all.log" 2>&1 || { cat "$work/npm-all.log" >&2; fail "npm install the other tarballs"; }
# Every entry point an installed manifest declares (main, types, bin, exports) is in the package.
node -e '
  const fs = require("node:fs");
  const path = require("node:path");
  const bad = [];
  const targets = (e) => (typeof e === "string" ? [e] : e && typeof e === "object" ? Object.values(e).flatMap(targets) : []);
  for (const d of fs.readdirSync("node_modules/@masksub")) {
    const dir = path.join("node_modules/@masksub", d);
    const p = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
    for (const t of [p.main, p.types, ...targets(p.bin), ...targets(p.exports)].filter(Boolean)) {
      if (!fs.existsSync(path.join(dir, t))) bad.push(`${p.name}: ${t}`);
    }
  }
  if (bad.length) { console.error("declared but not shipped:\n  " + bad.join("\n  ")); process.exit(1); }
' || fail "an installed package declares a file it does not ship"
step "npx masksub"
npx --no-install masksub --help >"$work/help.log" 2>&1 || { cat "$work/help.log" >&2; fail "npx masksub --help"; }
grep -q 'Usage: masksub' "$work/help.log" || { cat "$work/help.log" >&2; fail "masksub --help printed no usage"; }
npx --no-install masksub recipes >"$work/recipes.log" 2>&1 || { cat "$work/recipes.log" >&2; fail "npx masksub recipes"; }
grep -q '^mae-finetune ' "$work/recipes.log" || { cat "$work/recipes.log" >&2; fail "masksub recipes does not list the shipped recipes"; }
npx --no-install masksub adapters >"$work/adapters.log" 2>&1 || { cat "$work/adapters.log" >&2; fail "npx masksub adapters"; }
for a in vit resnet swin bert clip; do grep -q "^$a" "$work/adapters.log" || { cat "$work/adapters.log" >&2; fail "masksub adapters does not list $a"; }; done
step "ok: $(echo $actual | wc -w) packages pack, install outside the workspace and run"
