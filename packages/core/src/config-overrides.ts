/**
 * config.json keys overridden before a model is built (the run config's `model_config`: e.g.
 * drop_path_rate, drop_path_rule, bn_mode, hidden_dropout_prob). The adapter's own config parser
 * validates them: the build runs on a view of the config that records which keys the adapter
 * reads, so an override it never reads (a typo, or a key of another architecture) is an error
 * naming it, and a value its parser refuses is reported under the override's name.
 */
import { MaskSubError, OptionError } from './errors.js';
import type { HFConfig } from './registry.js';

export type ConfigOverrides = Readonly<Record<string, unknown>>;

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `config` with `overrides` on top; nested maps (CLIP's vision_config, timm's model_args) merge key by key. */
export function mergeConfig(config: HFConfig, overrides: ConfigOverrides): HFConfig {
  const out: Record<string, unknown> = { ...config };
  for (const [k, v] of Object.entries(overrides)) out[k] = isPlainObject(v) && isPlainObject(out[k]) ? mergeConfig(out[k] as HFConfig, v) : v;
  return out as HFConfig;
}

/** Dotted paths of the override leaves (a nested map's keys, not the map itself). */
function leafPaths(o: ConfigOverrides, prefix = ''): string[] {
  return Object.entries(o).flatMap(([k, v]) => (isPlainObject(v) ? leafPaths(v, `${prefix}${k}.`) : [`${prefix}${k}`]));
}

/**
 * A view of `config` that records the dotted paths read through it. Copies (object spread,
 * JSON.stringify) ask for each key's descriptor before its value and are not counted as reads:
 * only what the adapter looks up by name is.
 */
function recordingView(config: Record<string, unknown>, reads: Set<string>, prefix = ''): Record<string, unknown> {
  let described: PropertyKey | null = null;
  const views = new Map<string, Record<string, unknown>>();
  return new Proxy(config, {
    getOwnPropertyDescriptor(target, key) {
      described = key;
      return Reflect.getOwnPropertyDescriptor(target, key);
    },
    has(target, key) {
      if (typeof key === 'string') reads.add(`${prefix}${key}`);
      return Reflect.has(target, key);
    },
    get(target, key, receiver) {
      const copying = described === key;
      described = null;
      const value = Reflect.get(target, key, receiver) as unknown;
      if (typeof key !== 'string') return value;
      if (!copying) reads.add(`${prefix}${key}`);
      if (!isPlainObject(value)) return value;
      let view = views.get(key);
      if (!view) views.set(key, (view = recordingView(value, reads, `${prefix}${key}.`)));
      return view;
    },
  });
}

/**
 * Builds with `overrides` merged into `config`. Each override must be read by the adapter's
 * parser (else an OptionError `<name>.<key>` listing why), and a parser error about an
 * overridden key is re-raised under that name. Without overrides this is `build(config)`.
 */
export function buildWithOverrides<T>(config: HFConfig, overrides: ConfigOverrides | undefined, build: (config: HFConfig) => T, name = 'configOverrides', adapterName = 'this'): T {
  if (!overrides || Object.keys(overrides).length === 0) return build(config);
  const paths = leafPaths(overrides);
  const reads = new Set<string>();
  const merged = mergeConfig(config, overrides);
  let model: T;
  try {
    model = build(recordingView(merged, reads) as HFConfig);
  } catch (e) {
    if (e instanceof MaskSubError) {
      const bad = paths.find((p) => e.message.includes(`'${p.split('.').pop()}'`));
      if (bad) throw new OptionError(`${name}.${bad}`, `${JSON.stringify(valueAt(overrides, bad))} is refused by the ${adapterName} model's config: ${e.message}`);
    }
    throw e;
  }
  const unread = paths.filter((p) => !reads.has(p));
  if (unread.length) {
    throw new OptionError(
      `${name}.${unread[0]}`,
      `the ${adapterName} model's config has no key${unread.length > 1 ? 's' : ''} ${unread.map((p) => `'${p}'`).join(', ')} (its parser never reads ${unread.length > 1 ? 'them' : 'it'}; check the spelling and the architecture)`,
    );
  }
  return model;
}

function valueAt(o: ConfigOverrides, path: string): unknown {
  return path.split('.').reduce<unknown>((node, k) => (isPlainObject(node) ? node[k] : undefined), o);
}
