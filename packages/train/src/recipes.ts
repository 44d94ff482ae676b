/**
 * Named recipes: the training recipes of the paper's Table B.1 (and HF's run_glue for GLUE) as
 * YAML files shipped in this package (packages/train/recipes/<name>.yaml). A recipe is a partial
 * run config merged underneath the config file and the flags, so the precedence is
 * recipe < config file < --set / flags, and the one schema in config.ts validates the result.
 *
 * This module does not import config.ts (config.ts calls applyRecipe before it validates).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { FileFormatError, OptionError } from '@masksub/core';

/** Where the recipe files live: beside src/ and dist/ in the package, so both find them. */
export const RECIPES_DIR = fileURLToPath(new URL('../recipes/', import.meta.url));

export interface RecipeInfo {
  name: string;
  /** One line: what the recipe trains, from the file's `# description:` header line. */
  description: string;
  /** Where its values come from (paper table and official file:line), from `# source:`. */
  source: string;
  file: string;
}

export interface Recipe extends RecipeInfo {
  /** The recipe's config keys (a partial run config). */
  values: Record<string, unknown>;
}

/** Keys that describe one run (its model, data, folder), never a recipe. */
const RUN_SPECIFIC_KEYS = ['recipe', 'model', 'weights', 'num_labels', 'data.train', 'data.eval', 'run.dir'];

/**
 * Keys that set the same quantity in two ways. When the config file or a flag sets one of a
 * group, the recipe's others are dropped, so e.g. `--lr` replaces a recipe's `optimizer.blr`
 * instead of colliding with it.
 */
const ALTERNATIVES: string[][] = [
  ['optimizer.lr', 'optimizer.blr'],
  ['optimizer.warmup_steps', 'optimizer.warmup_epochs'],
  ['train.steps', 'train.epochs'],
  ['augment.rand_augment', 'augment.three_augment'],
];

const NAME = /^[a-z0-9][a-z0-9.-]*$/;

type Tree = Record<string, unknown>;

const isTree = (v: unknown): v is Tree => typeof v === 'object' && v !== null && !Array.isArray(v);

function getPath(tree: Tree, dotted: string): unknown {
  let node: unknown = tree;
  for (const k of dotted.split('.')) {
    if (!isTree(node)) return undefined;
    node = node[k];
  }
  return node;
}

function deletePath(tree: Tree, dotted: string): void {
  const keys = dotted.split('.');
  let node: unknown = tree;
  for (const k of keys.slice(0, -1)) {
    if (!isTree(node)) return;
    node = node[k];
  }
  if (isTree(node)) delete node[keys[keys.length - 1]];
}

/** A key counts as chosen when it holds a value that turns its option on (not unset, null or false). */
const chosen = (v: unknown) => v !== undefined && v !== null && v !== false;

/** `upper` over `lower`, recursively for mappings; lists and scalars of `upper` replace. */
export function mergeUnder(lower: Tree, upper: Tree): Tree {
  const out: Tree = structuredClone(lower);
  for (const [k, v] of Object.entries(upper)) {
    if (v === undefined) continue;
    const value = isTree(v) && Object.hasOwn(out, k) && isTree(out[k]) ? mergeUnder(out[k] as Tree, v) : structuredClone(v);
    // An own property even for '__proto__', so the strict schema reports it instead of it becoming the prototype.
    Object.defineProperty(out, k, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** The header lines `# description: ...` and `# source: ...` (continued by `#   ...` lines). */
function readHeader(text: string, file: string): { description: string; source: string } {
  const fields: Record<string, string> = {};
  let current: string | null = null;
  for (const line of text.split('\n')) {
    if (!line.startsWith('#')) break;
    const m = /^#\s*(description|source):\s*(.*)$/.exec(line);
    if (m) {
      current = m[1];
      fields[current] = m[2].trim();
    } else if (current && /^#\s{2,}\S/.test(line)) {
      fields[current] += ` ${line.replace(/^#\s+/, '').trim()}`;
    } else {
      current = null;
    }
  }
  for (const key of ['description', 'source']) {
    if (!fields[key]) throw new FileFormatError(file, `a recipe file starts with a '# ${key}:' comment line`);
  }
  return { description: fields.description, source: fields.source };
}

/** The recipe names shipped with this package, sorted. */
export function recipeNames(dir = RECIPES_DIR): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => f.slice(0, -'.yaml'.length))
    .filter((n) => NAME.test(n))
    .sort();
}

/** Read one recipe by name; an unknown name is an OptionError on `recipe` listing the known ones. */
export function readRecipe(name: string, dir = RECIPES_DIR): Recipe {
  const names = recipeNames(dir);
  if (!NAME.test(name) || !names.includes(name)) {
    throw new OptionError('recipe', `unknown recipe '${name}' (known: ${names.join(', ') || 'none found in ' + dir})`);
  }
  const file = join(dir, `${name}.yaml`);
  const text = readFileSync(file, 'utf8');
  let values: unknown;
  try {
    values = YAML.parse(text);
  } catch (e) {
    throw new FileFormatError(file, `not valid YAML: ${(e as Error).message}`);
  }
  if (!isTree(values)) throw new FileFormatError(file, 'a recipe is a mapping of run config keys');
  for (const key of RUN_SPECIFIC_KEYS) {
    if (getPath(values, key) !== undefined) throw new FileFormatError(file, `'${key}' belongs to a run, not to a recipe`);
  }
  return { name, file, ...readHeader(text, file), values };
}

export function listRecipes(dir = RECIPES_DIR): RecipeInfo[] {
  return recipeNames(dir).map((n) => {
    const { name, description, source, file } = readRecipe(n, dir);
    return { name, description, source, file };
  });
}

/**
 * The raw config (file + flags) with its recipe, if it names one, merged underneath. Where the
 * raw config chooses one of a group of alternative keys, the recipe's others are dropped.
 */
export function applyRecipe(raw: Tree): Tree {
  const name = raw.recipe;
  if (name === undefined) return raw;
  if (typeof name !== 'string') throw new OptionError('recipe', `expected a recipe name, got ${JSON.stringify(name)}`);
  const recipe = structuredClone(readRecipe(name).values);
  for (const group of ALTERNATIVES) {
    const picked = group.filter((k) => chosen(getPath(raw, k)));
    if (picked.length === 0) continue;
    for (const k of group) if (!picked.includes(k)) deletePath(recipe, k);
  }
  return mergeUnder(recipe, raw);
}
