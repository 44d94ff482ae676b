/**
 * The study file: a base run config, a grid of settings, seeds and a results folder. One schema
 * (zod, strict) so a typo in a key is an error that names it, not a silently ignored setting.
 *
 * Paths in a study file (base, results, runs) are relative to the working directory, as the
 * paths inside run configs are: run `masksub study` from the repository root.
 */
import { basename, extname } from 'node:path';
import { z } from 'zod';
import { FileFormatError, OptionError } from '@masksub/core';
import { readConfigFile } from '../config.js';

/** Drop kinds the measurement pass can apply: the model's own operators and the stochastic ones. */
export const MEASURE_DROP_KINDS = ['token-removal', 'mask-token', 'zero-fill', 'token-masking', 'dropout', 'drop-path'] as const;
export type MeasureDropKind = (typeof MEASURE_DROP_KINDS)[number];

/** Setting names become folder and file names. */
const settingName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'must be letters, digits, ".", "_" or "-" (it names folders)');

/** `{ "masksub.ratio": 0.5, "optimizer.lr": 1e-3 }`: any run config key by dotted path. */
const overrides = z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/, 'must be a dotted config key like masksub.ratio'), z.unknown());

const measureSchema = z
  .object({
    /** Drop operator of the "train loss (drop)" column. */
    drop: z.enum(MEASURE_DROP_KINDS),
    ratio: z.number().min(0).lt(1),
    /** The first N training samples (no augmentation, fixed order). */
    samples: z.number().int().positive().default(1024),
    batch_size: z.number().int().positive().default(128),
    /** Seed of the masks/noise of the drop pass: every setting sees the same draws. */
    seed: z.number().int().min(0).default(1234),
  })
  .strict();

const settingSchema = z
  .object({
    name: settingName,
    /** Row group in the table (e.g. "masking", "dropout"), as the paper's tables group rows. */
    group: z.string().min(1).optional(),
    /** Config keys of this setting, applied over the base and the study-wide `set`. */
    set: overrides.default({}),
    /** This setting's measurement (e.g. its row group's drop kind); default: the study's. */
    measure: measureSchema.partial().strict().optional(),
    /** Free text shown in the table (what the setting is in the paper's words). */
    label: z.string().optional(),
  })
  .strict();

export const studySchema = z
  .object({
    /** Folder and heading name; default: the study file's name. */
    name: settingName.optional(),
    title: z.string().optional(),
    /** The claim and table of the paper this study tests (shown in the report). */
    paper: z.string().optional(),
    /** Run config (YAML) every cell starts from. */
    base: z.string().min(1),
    /** Config keys applied to every cell. */
    set: overrides.default({}),
    /** Explicit settings (rows). */
    settings: z.array(settingSchema).optional(),
    /** Cartesian product of config keys; combined with `settings` (each setting x each grid point). */
    grid: z.record(z.string(), z.array(z.union([z.number(), z.string(), z.boolean(), z.null()])).min(1)).optional(),
    seeds: z.array(z.number().int().min(0)).min(1),
    /** Where summaries, the table, plots and results.json go (committed). */
    results: z.string().min(1),
    /** Where the raw run folders go (not committed); default runs/studies/<name>. */
    runs: z.string().min(1).optional(),
    /** Primary eval metric (a key of the eval records in metrics.jsonl); default top1 if logged, else the first. */
    metric: z.string().min(1).optional(),
    /** Whether larger values of `metric` are better; default: not for names with loss/error/mse/mae. */
    higher_is_better: z.boolean().optional(),
    /** The setting every other is compared with; default the first. */
    reference: z.string().optional(),
    /**
     * 'all': every setting is compared with the reference. 'group': each setting only with the
     * first setting of its own group (the reference where it is in that group), for studies whose
     * groups are separate experiments (e.g. one GLUE task each).
     */
    reference_scope: z.enum(['all', 'group']).default('all'),
    /** Further pairs to compare, e.g. [[masking-single, masksub]]. */
    compare: z.array(z.tuple([z.string(), z.string()])).default([]),
    measure: measureSchema,
  })
  .strict();

export type StudyInput = z.input<typeof studySchema>;
export type StudyFile = z.infer<typeof studySchema>;
export type MeasureSpec = z.infer<typeof measureSchema>;

/** One row of the study: a name, its overrides and how its train loss is measured. */
export interface StudySetting {
  name: string;
  group: string | null;
  label: string | null;
  set: Record<string, unknown>;
  measure: MeasureSpec;
}

export interface Study {
  name: string;
  title: string;
  paper: string | null;
  /** The file it was read from (copied into the results). */
  source: string;
  base: string;
  set: Record<string, unknown>;
  settings: StudySetting[];
  seeds: number[];
  results: string;
  runs: string;
  metric: string | null;
  higherIsBetter: boolean | null;
  reference: string;
  referenceScope: 'all' | 'group';
  compare: [string, string][];
}

function describe(issue: z.core.$ZodIssue, source: string): string {
  const path = issue.path.map(String).join('.') || '(root)';
  if (issue.code === 'unrecognized_keys') return `${source}: unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${[...issue.path.map(String), k].join('.')}'`).join(', ')}`;
  if (issue.code === 'invalid_type' && issue.input === undefined) return `${source}: '${path}' is required`;
  return `${source}: '${path}': ${issue.message}`;
}

const gridValueName = (v: unknown): string => String(v).replace(/[^A-Za-z0-9._-]+/g, '_');

/** Validate a study object (as read from YAML); errors name the key. */
export function parseStudy(input: unknown, source = 'study'): Study {
  const r = studySchema.safeParse(input);
  if (!r.success) {
    const first = r.error.issues[0];
    throw new OptionError(first?.path.map(String).join('.') || 'study', `\n${r.error.issues.map((i) => describe(i, source)).join('\n')}`);
  }
  const s = r.data;
  const name = s.name ?? basename(source, extname(source));
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new OptionError('name', `${source}: the study name '${name}' must be letters, digits, ".", "_" or "-"`);
  if (!s.settings && !s.grid) throw new OptionError('settings', `${source}: give 'settings' (a list) or 'grid' (config keys with lists of values)`);

  const explicit: StudySetting[] = (s.settings ?? [{ name: '', set: {} }]).map((x) => ({
    name: x.name,
    group: 'group' in x ? (x.group ?? null) : null,
    label: 'label' in x ? (x.label ?? null) : null,
    set: x.set,
    measure: { ...s.measure, ...('measure' in x ? x.measure : {}) },
  }));
  let settings = explicit;
  for (const [key, values] of Object.entries(s.grid ?? {})) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/.test(key)) throw new OptionError(`grid.${key}`, `${source}: 'grid.${key}': must be a dotted config key like masksub.ratio`);
    const short = key.split('.').at(-1)!;
    settings = settings.flatMap((st) =>
      values.map((v) => ({
        ...st,
        name: [st.name, `${short}-${gridValueName(v)}`].filter((p) => p !== '').join('_'),
        set: { ...st.set, [key]: v },
        // A grid over the drop ratio measures the drop loss at each point's own ratio.
        measure: key === 'masksub.ratio' && typeof v === 'number' ? { ...st.measure, ratio: v } : st.measure,
      })),
    );
  }
  const names = settings.map((x) => x.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) throw new OptionError('settings', `${source}: the setting name '${dup}' is used twice`);
  if (new Set(s.seeds).size !== s.seeds.length) throw new OptionError('seeds', `${source}: 'seeds' lists a seed twice: [${s.seeds.join(', ')}]`);
  const reference = s.reference ?? names[0];
  if (!names.includes(reference)) throw new OptionError('reference', `${source}: 'reference': no setting named '${reference}' (settings: ${names.join(', ')})`);
  s.compare.forEach((pair, i) => {
    for (const n of pair) if (!names.includes(n)) throw new OptionError(`compare.${i}`, `${source}: 'compare.${i}': no setting named '${n}' (settings: ${names.join(', ')})`);
  });
  return {
    name,
    title: s.title ?? name,
    paper: s.paper ?? null,
    source,
    base: s.base,
    set: s.set,
    settings,
    seeds: s.seeds,
    results: s.results,
    runs: s.runs ?? `runs/studies/${name}`,
    metric: s.metric ?? null,
    higherIsBetter: s.higher_is_better ?? null,
    reference,
    referenceScope: s.reference_scope,
    compare: s.compare,
  };
}

/** Read and validate a study file (YAML). */
export function readStudy(path: string): Study {
  const raw = readConfigFile(path);
  if (raw === null) throw new FileFormatError(path, 'empty study file');
  return parseStudy(raw, path);
}
