/**
 * The run configuration: one schema (zod) for the YAML file and the CLI flags. Unknown keys and
 * bad values are errors that name the key. Flags override the file; the resolved config is
 * written to the run folder as config.resolved.yaml.
 */
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { z } from 'zod';
import { BACKEND_NAMES, BCE_THRESHOLD_SCOPES, FileFormatError, LOSS_KINDS, LR_SCHEDULES, MASK_DROP_KINDS, OPTIMIZER_KINDS, OptionError, RAMPS, VARIANTS } from '@masksub/core';
import { AUGMENT_INTERPOLATIONS, parseRandAugment } from './data/randaugment.js';
import { RANDOM_ERASING_MODES } from './data/random-erasing.js';
import { applyRecipe } from './recipes.js';

/** run.model_format: how the trained model folder is written (see the schema). */
export const MODEL_FORMATS = ['safetensors', 'source'] as const;

const ratio = z.number().min(0).lt(1);
const positiveInt = z.number().int().positive();

export const runConfigSchema = z
  .object({
    /** A named recipe (packages/train/recipes/<name>.yaml) merged underneath this config; `masksub recipes` lists them. */
    recipe: z.string().min(1).optional(),
    /** Checkpoint folder (config.json + weights), or a config.json to train from scratch. */
    model: z.string().min(1),
    /** Explicit weights file (safetensors or ONNX) instead of the folder's. */
    weights: z.string().optional(),
    /**
     * config.json keys of the model overridden before it is built (e.g. drop_path_rate,
     * drop_path_rule, bn_mode, hidden_dropout_prob); the adapter's typed config validates them.
     */
    model_config: z.record(z.string(), z.unknown()).optional(),
    /** timm architecture name of a lone `.pth` without config.json (sizes from its table). */
    arch: z.string().min(1).optional(),
    /** Override the classifier size (fine-tuning to a new label set re-initialises the head). */
    num_labels: positiveInt.optional(),
    /**
     * The HF model class to build from the checkpoint when its adapter offers several, e.g.
     * CLIPForImageClassification: a CLIPModel's vision tower + a new linear head (FT-CLIP), with
     * num_labels from the data's class count when not given.
     */
    architecture: z.string().min(1).optional(),
    data: z
      .object({
        train: z.string().min(1),
        eval: z.string().optional(),
        /** Use only the first N samples (quick runs). */
        train_limit: positiveInt.optional(),
        eval_limit: positiveInt.optional(),
        /**
         * Image training data: read, decode and augment on a worker thread, overlapped with the
         * (synchronous) training step; false assembles batches between steps on the main thread.
         */
        loader_worker: z.boolean().default(true),
        /** Model input size; default: the model config's image_size. */
        image_size: positiveInt.optional(),
        /** Normalisation; default: preprocessor_config.json beside the model, else ImageNet statistics. */
        mean: z.array(z.number()).optional(),
        std: z.array(z.number()).optional(),
        num_classes: positiveInt.optional(),
        /** Text tasks: the tokenizer folder (default: the checkpoint folder). */
        tokenizer: z.string().min(1).optional(),
        /** Text tasks: longest encoded row in tokens, special tokens included (batches pad to their longest row). */
        max_length: z.number().int().min(4).default(128),
        /** Class names, one a line in label order (default: classes.txt beside the shards): zero-shot, template captions, the class count. */
        classes: z.string().min(1).optional(),
        /** Image-text tasks: caption templates over the class names, a set name (simple, cifar) or templates with '{}'. */
        templates: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
      })
      .strict(),
    augment: z
      .object({
        random_resized_crop: z.union([z.literal(false), z.object({ scale: z.tuple([z.number(), z.number()]).optional() }).strict()]).default(false),
        pad_crop: z.number().int().min(0).default(0),
        hflip: z.number().min(0).max(1).default(0),
        mixup: z.number().min(0).default(0),
        cutmix: z.number().min(0).default(0),
        mix_prob: z.number().min(0).max(1).default(1),
        switch_prob: z.number().min(0).max(1).default(0.5),
        label_smoothing: z.number().min(0).lt(1).default(0),
        /** timm RandAugment policy, e.g. 'rand-m9-mstd0.5-inc1' (null: off). */
        rand_augment: z.string().min(1).nullable().default(null),
        /** Resampling of RandAugment's geometric ops ('random': bilinear or bicubic per op, timm's default). */
        rand_augment_interpolation: z.enum(AUGMENT_INTERPOLATIONS).default('random'),
        /** DeiT-III ThreeAugment: one of grayscale / solarize / Gaussian blur per image. */
        three_augment: z.boolean().default(false),
        /** torchvision ColorJitter strength: one number for brightness, contrast and saturation, or all three (0: off). */
        color_jitter: z.union([z.number().min(0), z.tuple([z.number().min(0), z.number().min(0), z.number().min(0)])]).default(0),
        /** timm random erasing probability (0: off). */
        random_erasing: z.number().min(0).max(1).default(0),
        random_erasing_mode: z.enum(RANDOM_ERASING_MODES).default('pixel'),
        random_erasing_count: positiveInt.default(1),
        /** Repeated augmentation: copies of each image per epoch (DeiT: 3; 1: off). */
        repeated_aug: positiveInt.default(1),
        /** Epoch length rounded down to a multiple of this under repeated augmentation (timm: 256; 0: none). */
        repeated_aug_round: z.number().int().min(0).default(256),
      })
      .strict()
      .prefault({}),
    optimizer: z
      .object({
        kind: z.enum(OPTIMIZER_KINDS).default('adamw'),
        /** Unset = the task kind's default (DEFAULT_LR: a fine-tuning rate for a pretrained checkpoint, a from-scratch one for a config.json). */
        lr: z.number().positive().optional(),
        /**
         * Base lr (MAE's rule): lr = blr * batch_size * train.accum_steps / 256. Exclusive with
         * optimizer.lr.
         */
        blr: z.number().positive().optional(),
        min_lr: z.number().min(0).default(0),
        weight_decay: z.number().min(0).default(0.05),
        betas: z.tuple([z.number(), z.number()]).optional(),
        eps: z.number().positive().optional(),
        momentum: z.number().min(0).optional(),
        nesterov: z.boolean().optional(),
        clip_grad: z.number().positive().nullable().default(null),
        layer_decay: z.number().positive().max(1).nullable().default(null),
        /** Decay after the warm-up: cosine (timm, DeiT, MAE, Swin), linear (HF Trainer, run_glue) or constant. */
        schedule: z.enum(LR_SCHEDULES).default('cosine'),
        warmup_steps: z.number().int().min(0).default(0),
        /** The lr of the first warm-up step, rising linearly to the peak (timm's warmup_lr_init; 0 as MAE, BEiT and HF). */
        warmup_lr: z.number().min(0).default(0),
        /** Warm-up in epochs, as the official recipes state it: turned into steps with the run's steps per epoch (replaces warmup_steps). */
        warmup_epochs: z.number().min(0).optional(),
      })
      .strict()
      .prefault({}),
    train: z
      .object({
        batch_size: positiveInt.default(64),
        eval_batch_size: positiveInt.optional(),
        /** Length of the run: steps, or epochs (steps wins when both are given). */
        steps: positiveInt.optional(),
        epochs: z.number().positive().optional(),
        /** recipe loss: ce, or bce (DeiT-III/RSB). */
        /** Unset = the model's recipe loss: CE for images, BERT's problem_type (CE / BCE / MSE). */
        loss: z.enum(LOSS_KINDS).optional(),
        seed: z.number().int().min(0).default(0),
        /**
         * Gradient accumulation: micro-batches (of batch_size each) per optimizer update (MAE
         * accum_iter). train.steps counts updates.
         */
        accum_steps: positiveInt.default(1),
        /** Model EMA decay (timm ModelEmaV2: ema = decay * ema + (1 - decay) * w after every update); unset = off. */
        ema_decay: z.number().gt(0).lt(1).optional(),
        /** BCE only: targets > t become 1, the rest 0 (timm BinaryCrossEntropy target_threshold); unset = soft targets. */
        bce_target_thresh: z.number().min(0).lt(1).optional(),
        /**
         * Which targets the threshold binarises: 'all' (timm's loss function, so RSB's sub target
         * too) or 'main' (DeiT-III's targets.gt(0.0) on the mixed main target only).
         */
        bce_target_thresh_on: z.enum(BCE_THRESHOLD_SCOPES).default('all'),
      })
      .strict()
      .prefault({}),
    masksub: z
      .object({
        variant: z.enum(VARIANTS).default('masksub'),
        drop: z.enum(MASK_DROP_KINDS).optional(),
        /** Unset = the drop kind's paper ratio (defaultRatio: 0.5; 0.15 for BERT's token masking). */
        ratio: ratio.optional(),
        ratio_end: ratio.optional(),
        ratio_steps: positiveInt.optional(),
        ramp: z.enum(RAMPS).default('constant'),
        /**
         * Loss weights. Unset = the library's rule (defaultMainWeight): (1/2, 1/2) with a sub
         * pass, main 1 for 'none' and the single-pass variants, so a baseline is the plain recipe.
         */
        main_weight: z.number().min(0).optional(),
        sub_weight: z.number().min(0).optional(),
      })
      .strict()
      .prefault({}),
    run: z
      .object({
        dir: z.string().min(1).default('runs/run'),
        log_every: positiveInt.default(10),
        eval_every: positiveInt.nullable().default(null),
        checkpoint_every: positiveInt.default(100),
        keep_checkpoints: positiveInt.default(2),
        quiet: z.boolean().default(false),
        backend: z.enum(BACKEND_NAMES).optional(),
        /**
         * Before the first update, measure the step's memory at a quarter and a half of the batch
         * and refuse a batch that cannot fit the backend (wasm: 4 GiB) instead of crawling into it.
         */
        memory_check: z.boolean().default(true),
        /**
         * How `model/` (and `model-ema/`) is written: `safetensors` (model.safetensors + config.json,
         * the checkpoint's parameter names), or `source`: a `.pth` checkpoint (timm, torchvision,
         * the official DeiT-III `{'model': ...}`) written back as that file under its own names,
         * so timm / torchvision load the fine-tune as they loaded the original (other sources:
         * safetensors).
         */
        model_format: z.enum(MODEL_FORMATS).default('safetensors'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type RunConfig = z.infer<typeof runConfigSchema>;
export type RunConfigInput = z.input<typeof runConfigSchema>;

/**
 * Where a config value came from, for error messages: one name for the whole input (a file, or
 * 'flags'), or a name per dotted key (the CLI names the flag that set a key, else the file).
 */
export type ConfigSource = string | ((key: string) => string);

function sourceOf(source: ConfigSource, key: string): string {
  return typeof source === 'string' ? source : source(key);
}

function describeIssues(error: z.ZodError, source: ConfigSource): string {
  return error.issues
    .map((i) => {
      const path = i.path.join('.') || '(root)';
      if (i.code === 'invalid_type' && i.message.includes('received undefined')) return `${sourceOf(source, path)}: '${path}' is required (in the config file, or as a flag)`;
      if (i.code === 'unrecognized_keys') {
        const keys = i.keys.map((k) => [...i.path, k].join('.'));
        return `${sourceOf(source, keys[0])}: unknown key${keys.length > 1 ? 's' : ''} ${keys.map((k) => `'${k}'`).join(', ')}`;
      }
      return `${sourceOf(source, path)}: '${path}': ${i.message}`;
    })
    .join('\n');
}

/** Validate a config object; errors name each bad key and where its value came from. */
export function parseRunConfig(input: unknown, source: ConfigSource = 'config'): RunConfig {
  // A named recipe goes underneath: recipe < config file < flags (recipes.ts).
  const withRecipe = input !== null && typeof input === 'object' && !Array.isArray(input) ? applyRecipe(input as Record<string, unknown>) : input;
  const result = runConfigSchema.safeParse(withRecipe);
  if (!result.success) {
    const text = describeIssues(result.error, source);
    // Several issues go one per line under the option; one stays on its line.
    throw new OptionError(result.error.issues[0]?.path.join('.') || 'config', result.error.issues.length > 1 ? `\n${text}` : text);
  }
  const c = result.data;
  const at = (key: string) => sourceOf(source, key);
  if (c.train.steps === undefined && c.train.epochs === undefined) throw new OptionError('train.steps', `${at('train.steps')}: give train.steps or train.epochs`);
  if (c.masksub.ramp !== 'constant' && (c.masksub.ratio_end === undefined || c.masksub.ratio_steps === undefined)) {
    throw new OptionError('masksub.ramp', `${at('masksub.ramp')}: a ${c.masksub.ramp} ramp needs masksub.ratio_end and masksub.ratio_steps`);
  }
  if (c.optimizer.lr !== undefined && c.optimizer.blr !== undefined) {
    throw new OptionError('optimizer.blr', `${at('optimizer.blr')}: optimizer.lr and optimizer.blr are alternatives (the peak lr, or MAE's base lr scaled by batch_size * accum_steps / 256); set one`);
  }
  if (c.augment.rand_augment !== null) parseRandAugment(c.augment.rand_augment);
  if (c.augment.rand_augment !== null && c.augment.three_augment) {
    throw new OptionError('augment.three_augment', `${at('augment.three_augment')}: augment.rand_augment and augment.three_augment are alternatives (timm's RandAugment or DeiT-III's ThreeAugment); set one`);
  }
  return c;
}

/**
 * The warm-up in optimizer steps: optimizer.warmup_epochs times the run's steps per epoch when
 * set (rounded, as timm and MAE count whole iterations), else optimizer.warmup_steps. A warm-up
 * as long as the run (a recipe's epochs on a short --steps run) is cut to leave one decay step,
 * and `log` says so.
 */
export function resolveWarmupSteps(config: RunConfig, stepsPerEpoch: number | null, totalSteps: number, log: (m: string) => void = () => {}): number {
  const o = config.optimizer;
  let steps = o.warmup_steps;
  if (o.warmup_epochs !== undefined) {
    if (!stepsPerEpoch) throw new OptionError('optimizer.warmup_epochs', `cannot turn ${o.warmup_epochs} warm-up epochs into steps: the training data has no known size; give optimizer.warmup_steps`);
    steps = Math.round(o.warmup_epochs * stepsPerEpoch);
  }
  if (steps >= totalSteps) {
    const cut = Math.max(0, totalSteps - 1);
    log(`warm-up of ${steps} steps${o.warmup_epochs !== undefined ? ` (${o.warmup_epochs} epochs x ${stepsPerEpoch} steps)` : ''} is not shorter than the run's ${totalSteps} steps: warming up over ${cut}`);
    steps = cut;
  }
  return steps;
}

/** Read a YAML (or JSON) config file into a plain object. */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new FileFormatError(path, `cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let parsed: unknown;
  try {
    parsed = YAML.parse(text);
  } catch (e) {
    throw new FileFormatError(path, `not valid YAML: ${(e as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new FileFormatError(path, 'the top level must be a mapping');
  return parsed as Record<string, unknown>;
}

/** Set `a.b.c` in a nested object (flags override file values). */
export function setPath(target: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let node = target;
  for (const k of keys.slice(0, -1)) {
    const next = node[k];
    if (next === undefined || next === null || typeof next !== 'object') node[k] = {};
    node = node[k] as Record<string, unknown>;
  }
  node[keys[keys.length - 1]] = value;
}

export function configToYaml(config: RunConfig): string {
  return YAML.stringify(config);
}
