/**
 * timm's VisionTransformer (vit_*, deit_*, deit3_*) under timm's own names, built from a timm hub
 * config.json (`architecture`, `model_args`, `pretrained_cfg`): fused qkv `[3D, D]`, LayerNorm
 * eps 1e-6, exact GELU, head on the class token, and for DeiT-III LayerScale (`ls1.gamma`,
 * `ls2.gamma`) and `no_embed_class` (positions on the patch tokens only). Parameters keep the
 * timm names, so a loaded model saves back as the same timm folder and gradients compare
 * name for name with timm. The official DeiT release names (`gamma_1`, `gamma_2`) are aliases.
 */
import {
  batchToken,
  FileFormatError,
  OptionError,
  ParameterStore,
  Rng,
  activation,
  dropPath,
  dropout,
  embedKeptPatches,
  layerNorm,
  layerSeed,
  leadingTokens,
  linear,
  multiHeadAttention,
  patchify,
  removeTokens,
  tf,
  type AdapterModel,
  type DropKind,
  type DropOperator,
  type ForwardOptions,
  type HFConfig,
  type ModelInputs,
  type ParamSpec,
} from '@masksub/core';
import { vitDropOperator } from './model.js';
import { timmViTParamGroups } from './param-groups.js';
import type { ParamGroups } from '@masksub/core';

/** timm architecture names this module serves (glob patterns, as registered with the adapter). */
export const TIMM_VIT_ARCHITECTURES: readonly string[] = ['vit_*', 'deit_*', 'deit3_*'];

/** The pools of timm's VisionTransformer that masksub builds. */
export const TIMM_GLOBAL_POOLS = ['token', 'avg'] as const;
export type TimmGlobalPool = (typeof TIMM_GLOBAL_POOLS)[number];

/** Sizes by the model-size word of a timm name, as timm's model definitions set them. */
const SIZES: Readonly<Record<string, { embed_dim: number; depth: number; num_heads: number }>> = {
  tiny: { embed_dim: 192, depth: 12, num_heads: 3 },
  small: { embed_dim: 384, depth: 12, num_heads: 6 },
  medium: { embed_dim: 512, depth: 12, num_heads: 8 },
  base: { embed_dim: 768, depth: 12, num_heads: 12 },
  large: { embed_dim: 1024, depth: 24, num_heads: 16 },
  huge: { embed_dim: 1280, depth: 32, num_heads: 16 },
};

export interface TimmViTConfig {
  architecture: string;
  embedDim: number;
  depth: number;
  numHeads: number;
  mlpHidden: number;
  imgSize: [number, number];
  patchSize: number;
  inChans: number;
  qkvBias: boolean;
  numClasses: number;
  /** LayerScale on both residual branches (timm init_values not null; DeiT-III). */
  layerScale: boolean;
  /** Position embedding on the patch tokens only (DeiT-III). */
  noEmbedClass: boolean;
  /**
   * What the head reads: 'token' = the class token after the final norm; 'avg' = the mean of
   * the patch tokens (class token excluded; in the sub pass the kept tokens only), as MAE's
   * fine-tuning head (`global_pool=True`, mae/models_vit.py) and timm's `global_pool='avg'`.
   */
  globalPool: TimmGlobalPool;
  /**
   * LayerNorm after pooling (`fc_norm.*`) instead of the final `norm`: timm uses it when
   * fc_norm is true, or null with an 'avg' pool (MAE's layout).
   */
  fcNorm: boolean;
  layerNormEps: number;
  dropRate: number;
  attnDropRate: number;
  dropPathRate: number;
}

/** A timm hub config -> sizes: `model_args` first, then what the architecture name implies. */
export function parseTimmViTConfig(raw: HFConfig, source = 'config.json'): TimmViTConfig {
  const arch = raw.architecture;
  if (typeof arch !== 'string') throw new FileFormatError(source, "timm config has no 'architecture'");
  const args = (typeof raw.model_args === 'object' && raw.model_args !== null ? raw.model_args : {}) as Record<string, unknown>;
  const family = /^(vit|deit3|deit)_/.exec(arch)?.[1];
  if (!family) throw new FileFormatError(source, `architecture '${arch}' is not a timm ViT (served: ${TIMM_VIT_ARCHITECTURES.join(', ')})`);
  if (/distilled/.test(arch)) throw new FileFormatError(source, `architecture '${arch}': distilled DeiT (a second head on a distillation token) is served through HF's DeiT folders, not timm's`);
  const sizeWord = /^(?:vit|deit3|deit)_([a-z]+)_/.exec(arch)?.[1] ?? '';
  const named = SIZES[sizeWord];
  const fromName = /patch(\d+)_(\d+)/.exec(arch);
  const pick = (key: string, dflt: number | undefined): number => {
    const v = args[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new FileFormatError(source, `model_args.${key} is ${JSON.stringify(v)} and architecture '${arch}' does not imply it (known sizes: ${Object.keys(SIZES).join(', ')})`);
    }
    return v;
  };
  const rate = (key: string): number => {
    const v = args[key] ?? 0;
    if (typeof v !== 'number' || !(v >= 0 && v < 1)) throw new FileFormatError(source, `model_args.${key} must be in [0, 1), got ${JSON.stringify(v)}`);
    return v;
  };
  for (const [key, ok] of [
    ['class_token', (v: unknown) => v === true],
    ['reg_tokens', (v: unknown) => v === 0],
    ['fc_norm', (v: unknown) => v === false || v === true || v === null],
    ['pre_norm', (v: unknown) => v === false],
  ] as const) {
    if (key in args && !ok(args[key])) throw new FileFormatError(source, `model_args.${key} = ${JSON.stringify(args[key])} is not supported (a class-token ViT, head on the class token or on the mean patch token)`);
  }
  // model_args wins over the top-level key timm writes beside it
  const poolKey = 'global_pool' in args ? 'model_args.global_pool' : 'global_pool';
  const pool = args.global_pool ?? raw.global_pool ?? 'token';
  if (!(TIMM_GLOBAL_POOLS as readonly unknown[]).includes(pool)) throw new FileFormatError(source, `${poolKey} ${JSON.stringify(pool)} is not supported (${TIMM_GLOBAL_POOLS.join(', ')})`);
  const globalPool = pool as TimmGlobalPool;
  // timm: use_fc_norm = global_pool in ('avg', ...) if fc_norm is None else fc_norm
  const fcNormArg = args.fc_norm ?? null;
  const fcNorm = fcNormArg === null ? globalPool === 'avg' : fcNormArg === true;
  const embedDim = pick('embed_dim', named?.embed_dim);
  const numHeads = pick('num_heads', named?.num_heads);
  if (embedDim % numHeads) throw new FileFormatError(source, `embed_dim ${embedDim} is not a multiple of num_heads ${numHeads}`);
  const img = args.img_size ?? (fromName ? Number(fromName[2]) : 224);
  const imgSize: [number, number] = Array.isArray(img) ? [Number(img[0]), Number(img[1])] : [Number(img), Number(img)];
  const patchSize = pick('patch_size', fromName ? Number(fromName[1]) : 16);
  if (!imgSize.every((d) => Number.isInteger(d) && d > 0 && d % patchSize === 0)) throw new FileFormatError(source, `img_size ${JSON.stringify(img)} is not a positive multiple of patch_size ${patchSize}`);
  const initValues = 'init_values' in args ? args.init_values : family === 'deit3' ? 1e-6 : null;
  const numClasses = typeof raw.num_classes === 'number' ? raw.num_classes : pick('num_classes', 1000);
  return {
    architecture: arch,
    embedDim,
    depth: pick('depth', named?.depth),
    numHeads,
    mlpHidden: Math.round(embedDim * pick('mlp_ratio', 4)),
    imgSize,
    patchSize,
    inChans: pick('in_chans', 3),
    qkvBias: args.qkv_bias === undefined ? true : Boolean(args.qkv_bias),
    numClasses,
    layerScale: initValues !== null && initValues !== undefined && initValues !== 0,
    noEmbedClass: 'no_embed_class' in args ? Boolean(args.no_embed_class) : family === 'deit3',
    globalPool,
    fcNorm,
    layerNormEps: 1e-6,
    dropRate: rate('drop_rate') || rate('proj_drop_rate'),
    attnDropRate: rate('attn_drop_rate'),
    dropPathRate: rate('drop_path_rate'),
  };
}

/** The parameters under timm names, PyTorch shapes. */
export function timmViTParamSpecs(c: TimmViTConfig): ParamSpec[] {
  const d = c.embedDim;
  const n = (c.imgSize[0] / c.patchSize) * (c.imgSize[1] / c.patchSize);
  const w = 0.02;
  const specs: ParamSpec[] = [
    { name: 'cls_token', shape: [1, 1, d], layout: 'identity', init: { truncNormal: w } },
    { name: 'pos_embed', shape: [1, c.noEmbedClass ? n : n + 1, d], layout: 'identity', init: { truncNormal: w } },
    // For the mask-token drop operator; classifiers have none, so it is created when absent.
    { name: 'mask_token', shape: [1, 1, d], layout: 'identity', init: { truncNormal: w }, optional: true },
    { name: 'patch_embed.proj.weight', shape: [d, c.inChans, c.patchSize, c.patchSize], layout: 'patch-linear', init: { truncNormal: w } },
    { name: 'patch_embed.proj.bias', shape: [d], layout: 'identity', init: 'zeros' },
  ];
  const lin = (name: string, out: number, inp: number, bias = true): void => {
    specs.push({ name: `${name}.weight`, shape: [out, inp], layout: 'linear', init: { truncNormal: w } });
    if (bias) specs.push({ name: `${name}.bias`, shape: [out], layout: 'identity', init: 'zeros' });
  };
  const norm = (name: string): void => {
    specs.push({ name: `${name}.weight`, shape: [d], layout: 'identity', init: 'ones' });
    specs.push({ name: `${name}.bias`, shape: [d], layout: 'identity', init: 'zeros' });
  };
  for (let i = 0; i < c.depth; i++) {
    const b = `blocks.${i}`;
    norm(`${b}.norm1`);
    lin(`${b}.attn.qkv`, 3 * d, d, c.qkvBias);
    lin(`${b}.attn.proj`, d, d);
    if (c.layerScale) specs.push({ name: `${b}.ls1.gamma`, shape: [d], layout: 'identity', init: 'ones' });
    norm(`${b}.norm2`);
    lin(`${b}.mlp.fc1`, c.mlpHidden, d);
    lin(`${b}.mlp.fc2`, d, c.mlpHidden);
    if (c.layerScale) specs.push({ name: `${b}.ls2.gamma`, shape: [d], layout: 'identity', init: 'ones' });
  }
  // timm: norm is Identity when fc_norm is used, and fc_norm Identity otherwise
  norm(c.fcNorm ? 'fc_norm' : 'norm');
  lin('head', c.numClasses, d);
  return specs;
}

/**
 * A checkpoint's head layout where the config leaves it open: `fc_norm.weight` without
 * `norm.weight` is MAE's fine-tuning head (mean patch token + fc_norm), so the config is set
 * to `global_pool: 'avg'`, `fc_norm: true` (what timm would need to load the same file).
 */
export function timmViTConfigForWeights(config: HFConfig, names: ReadonlySet<string>): HFConfig {
  const args = (typeof config.model_args === 'object' && config.model_args !== null ? config.model_args : {}) as Record<string, unknown>;
  const said = 'global_pool' in args || config.global_pool !== undefined || 'fc_norm' in args;
  if (said || !names.has('fc_norm.weight') || names.has('norm.weight')) return config;
  return { ...config, global_pool: 'avg', model_args: { ...args, global_pool: 'avg', fc_norm: true } };
}

/** The official DeiT / DeiT-III release names (`deit/models_v2.py`) -> timm names. */
export function officialDeitAliases(c: TimmViTConfig): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < c.depth; i++) {
    out[`blocks.${i}.gamma_1`] = `blocks.${i}.ls1.gamma`;
    out[`blocks.${i}.gamma_2`] = `blocks.${i}.ls2.gamma`;
  }
  return out;
}

export class TimmViTModel implements AdapterModel {
  readonly architecture = 'vit';
  readonly params: ParameterStore;
  readonly cfg: TimmViTConfig;
  readonly defaultDrop: DropKind = 'token-removal';
  private readonly act = activation('gelu');

  constructor(
    readonly config: Readonly<HFConfig>,
    options: { rng?: Rng } = {},
  ) {
    this.cfg = parseTimmViTConfig(config);
    this.params = new ParameterStore(timmViTParamSpecs(this.cfg), options.rng ?? new Rng(0));
  }

  /** Layer ids for layer-wise lr decay and the no-weight-decay parameters (see param-groups.ts). */
  paramGroups(): ParamGroups {
    return timmViTParamGroups(this.cfg.depth);
  }

  get numClasses(): number {
    return this.cfg.numClasses;
  }

  get gridSize(): [number, number] {
    return [this.cfg.imgSize[0] / this.cfg.patchSize, this.cfg.imgSize[1] / this.cfg.patchSize];
  }

  get numPatches(): number {
    const [h, w] = this.gridSize;
    return h * w;
  }

  /** The same operators as the HF ViT: token removal, 32 px mask-token blocks, 32 px zero fill. */
  dropOperator(kind: DropKind): DropOperator {
    return vitDropOperator(kind, this.gridSize, this.cfg.patchSize, this.cfg.imgSize[0]);
  }

  private p(name: string): tf.Variable {
    return this.params.get(name);
  }

  forward(inputs: ModelInputs, options: ForwardOptions = {}): tf.Tensor {
    const cfg = this.cfg;
    const x = inputs.pixel_values;
    if (!x || x.rank !== 4 || x.shape[1] !== cfg.inChans || x.shape[2] !== cfg.imgSize[0] || x.shape[3] !== cfg.imgSize[1]) {
      throw new OptionError('pixel_values', `expected [B, ${cfg.inChans}, ${cfg.imgSize[0]}, ${cfg.imgSize[1]}], got ${x ? `[${x.shape}]` : `inputs [${Object.keys(inputs)}]`}`);
    }
    return tf.tidy(() => {
      const b = x.shape[0] as number;
      const d = cfg.embedDim;
      const n = this.numPatches;
      const embed = (raw: tf.Tensor) => linear(raw, this.p('patch_embed.proj.weight'), this.p('patch_embed.proj.bias'));
      const cls = batchToken(this.p('cls_token'), b);
      const pos = this.p('pos_embed');
      // no_embed_class: the class token has no position; otherwise it takes pos_embed[0].
      const patchPos = cfg.noEmbedClass ? tf.reshape(pos, [n, d]) : tf.reshape(tf.slice(pos, [0, 1, 0], [1, n, d]), [n, d]);
      const clsTok = cfg.noEmbedClass ? cls : tf.add(cls, tf.slice(pos, [0, 0, 0], [1, 1, d]));
      let h: tf.Tensor;
      if (options.keepIndices && !options.maskedPositions) {
        // token removal before the embedding: the kept patches keep their own positions
        h = tf.concat([clsTok, embedKeptPatches(patchify(x, cfg.patchSize), options.keepIndices, embed, patchPos)], 1);
      } else {
        let patches = embed(patchify(x, cfg.patchSize));
        if (options.maskedPositions) {
          if (options.maskedPositions.shape[0] !== b || options.maskedPositions.shape[1] !== n) {
            throw new OptionError('maskedPositions', `expected [${b}, ${n}], got [${options.maskedPositions.shape}]`);
          }
          const m = tf.expandDims(options.maskedPositions, -1);
          patches = tf.add(tf.mul(patches, tf.sub(1, m)), tf.mul(this.p('mask_token'), m));
        }
        h = tf.concat([clsTok, tf.add(patches, patchPos)], 1);
        if (options.keepIndices) h = removeTokens(h, options.keepIndices, 1);
      }

      const training = options.training ?? false;
      const dropRate = options.dropoutRate ?? (training ? cfg.dropRate : 0);
      const attnDropRate = options.dropoutRate ?? (training ? cfg.attnDropRate : 0);
      const pathRate = options.dropPathRate ?? (training ? cfg.dropPathRate : 0);
      const seed = options.seed ?? 0;
      // A 'token' pool reads only the class token: the last block computes just that row (its
      // keys and values still come from every token). 'avg' reads every patch token.
      const lastQueries = cfg.globalPool === 'token' ? 1 : undefined;
      for (let i = 0; i < cfg.depth; i++) {
        const l = (name: string) => this.p(`blocks.${i}.${name}`);
        const layerPath = cfg.depth > 1 ? (pathRate * i) / (cfg.depth - 1) : pathRate;
        const queries = i === cfg.depth - 1 ? lastQueries : undefined;
        const scale = (y: tf.Tensor, which: 'ls1' | 'ls2') => (cfg.layerScale ? tf.mul(y, l(`${which}.gamma`)) : y);
        const attnIn = layerNorm(h, l('norm1.weight'), l('norm1.bias'), cfg.layerNormEps);
        // fused qkv: internal [D, 3D] (in, out) -> query, key, value column blocks
        const qkvW = l('attn.qkv.weight');
        const qkvB = cfg.qkvBias ? l('attn.qkv.bias') : undefined;
        const part = (j: number): [tf.Tensor, tf.Tensor?] => [tf.slice(qkvW, [0, j * d], [d, d]), qkvB ? tf.slice(qkvB, [j * d], [d]) : undefined];
        let attn = multiHeadAttention(attnIn, { q: part(0), k: part(1), v: part(2), out: [l('attn.proj.weight'), l('attn.proj.bias')] }, cfg.numHeads, {
          dropoutRate: attnDropRate,
          seed: layerSeed(seed, i, 0),
          queries,
        });
        attn = dropout(attn, dropRate, layerSeed(seed, i, 1));
        h = leadingTokens(h, queries);
        h = tf.add(h, dropPath(scale(attn, 'ls1'), layerPath, layerSeed(seed, i, 2)));
        const mlpIn = layerNorm(h, l('norm2.weight'), l('norm2.bias'), cfg.layerNormEps);
        let mlp = linear(dropout(this.act(linear(mlpIn, l('mlp.fc1.weight'), l('mlp.fc1.bias'))), dropRate, layerSeed(seed, i, 5)), l('mlp.fc2.weight'), l('mlp.fc2.bias'));
        mlp = dropout(mlp, dropRate, layerSeed(seed, i, 3));
        h = tf.add(h, dropPath(scale(mlp, 'ls2'), layerPath, layerSeed(seed, i, 4)));
      }
      // timm forward_head: norm (unless fc_norm), pool, fc_norm (if used), head
      if (!cfg.fcNorm) h = layerNorm(h, this.p('norm.weight'), this.p('norm.bias'), cfg.layerNormEps);
      const tokens = h.shape[1] as number;
      // 'avg': the patch tokens present (all in the main pass, the kept ones in the sub pass)
      let pooled = cfg.globalPool === 'avg' ? tf.mean(tf.slice(h, [0, 1, 0], [b, tokens - 1, d]), 1) : tf.reshape(tf.slice(h, [0, 0, 0], [b, 1, d]), [b, d]);
      if (cfg.fcNorm) pooled = layerNorm(pooled, this.p('fc_norm.weight'), this.p('fc_norm.bias'), cfg.layerNormEps);
      return linear(pooled, this.p('head.weight'), this.p('head.bias'));
    });
  }

  dispose(): void {
    this.params.dispose();
  }
}
