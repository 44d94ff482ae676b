/**
 * The real-size workloads of `pnpm bench --arch vit-b16,bert-base` (issue 12, target 4): ViT-B/16
 * at 224 (86 M parameters, random init) and BERT-base, each as the PyTorch twin in
 * ../shared/bench runs it. Shared by the parent (bench/arch/big.ts) and each case's child
 * process (bench/arch/big-case.ts).
 */
import { benchScript, sharedScript } from './torch.js';
import { Rng, tf, type AdapterModel, type Batch, type MaskSubOptions, type OptimizerSpec } from '@masksub/core';
import { makeBertModelAndBatch } from './bert.js';
import { ViTModel } from '@masksub/vit';

export interface BigWorkload {
  model: AdapterModel;
  /** The whole effective batch (the child slices it into micro-batches). */
  batch: Batch;
  dispose(): void;
}

export interface BigArchSpec {
  workload: string;
  /** Effective batches (examples per optimizer update), full and --quick. */
  batches(quick: boolean): number[];
  make(batch: number): BigWorkload;
  optimizer: OptimizerSpec;
  lr: number;
  masksub: Partial<MaskSubOptions>;
  torchScript: string;
  /** Files the PyTorch script reads besides itself (the shared script a twin loads its model from). */
  torchReads?: string[];
  /** Arguments of the PyTorch run at the full batch: it prints its standard and two-pass MaskSub step. */
  torchArgs(batch: number, steps: number): string[];
  /** How that run times its steps (results.json's pytorch_note). */
  torchNote: string;
  /** Why the two parameter counts may differ by a known, named amount (null: they must be equal). */
  parameterNote?: (masksub: number, pytorch: number) => string | null;
}

/** One child's JSON line. */
export interface BigCaseResult {
  status: 'ok' | 'does-not-fit' | 'failed';
  arch: string;
  batch: number;
  variant: 'standard' | 'masksub';
  parameters: number | null;
  micro_batch: number | null;
  accum_steps: number | null;
  /** planMicroBatch's estimate of the step's peak at the chosen micro-batch. */
  planned_step_mib: number | null;
  limit_mib: number | null;
  ms_per_update: number | null;
  ms_per_update_all: number[];
  /** Peak RSS growth over the child's pre-model RSS (sampled after every micro-batch, as compare.ts). */
  peak_rss_mib: number | null;
  /** Size of the wasm heap at the end (it only grows: its high-water mark). */
  heap_high_water_mib: number | null;
  /** Peak of tf.memory().numBytes sampled after every micro-batch (counts views over one buffer once each). */
  peak_tensor_mib: number | null;
  /** MaskSub case: the standard update timed before each MaskSub update, in the same process. */
  paired_standard_ms?: number[];
  /** MaskSub case: the median over those pairs of MaskSub / standard. */
  masksub_ratio_paired?: number;
  message?: string;
}


export const VIT_B16 = { image: 224, patch: 16, hidden: 768, layers: 12, heads: 12, inter: 3072, classes: 1000, keep: 98 };
export const BERT_BASE = { seq: 128, hidden: 768, layers: 12, heads: 12, inter: 3072, vocab: 30522 };

export const BIG_ARCHS: Record<string, BigArchSpec> = {
  'vit-b16': {
    workload: `ViT-B/16 at 224 (random init), 1000 classes, Adam lr 1e-3; MaskSub token removal 50 % (keep ${VIT_B16.keep} of 196)`,
    batches: (quick) => (quick ? [2, 4] : [8, 16]),
    make(batch) {
      const v = VIT_B16;
      const model = new ViTModel({
        model_type: 'vit',
        image_size: v.image,
        patch_size: v.patch,
        num_channels: 3,
        hidden_size: v.hidden,
        num_hidden_layers: v.layers,
        num_attention_heads: v.heads,
        intermediate_size: v.inter,
        hidden_act: 'gelu',
        layer_norm_eps: 1e-6,
        num_labels: v.classes,
      });
      const x = tf.randomNormal([batch, 3, v.image, v.image], 0, 1, 'float32', 1) as tf.Tensor4D;
      const labels = tf.tensor1d(Array.from({ length: batch }, (_, i) => (i * 7) % v.classes), 'int32');
      return { model, batch: { inputs: { pixel_values: x }, targets: { labels } }, dispose: () => (model.dispose(), tf.dispose([x, labels])) };
    },
    optimizer: { kind: 'adamw', weightDecay: 0, eps: 1e-8 },
    lr: 1e-3,
    masksub: { drop: 'token-removal', ratio: 0.5 },
    // The shared script's model, standard and two-pass MaskSub steps in interleaved pairs (as the small ViT bench).
    torchScript: benchScript('vit_masksub_torch.py'),
    torchReads: [sharedScript('vit_step_torch.py')],
    torchNote: "vit_step_torch.py's model; standard and two-pass MaskSub steps in interleaved pairs (bench/torch/vit_masksub_torch.py); RSS is the peak of both",
    torchArgs: (batch, steps) => {
      const v = VIT_B16;
      const sizes = ['--img', String(v.image), '--patch', String(v.patch), '--dim', String(v.hidden), '--depth', String(v.layers), '--heads', String(v.heads), '--classes', String(v.classes)];
      return ['--script', sharedScript('vit_step_torch.py'), ...sizes, '--keep', String(v.keep), '--batch', String(batch), '--warmup', '2', '--steps', String(steps)];
    },
    // HF's ViT gives the CLS token a position embedding and holds a mask token (used by the
    // mask-token drop kind only; token removal never reads it); vit_step_torch.py has neither.
    parameterNote: (ours, theirs) =>
      ours - theirs === 2 * VIT_B16.hidden ? `masksub has ${2 * VIT_B16.hidden} more: the CLS token's position embedding and the mask token (HF layout), which vit_step_torch.py omits; the arithmetic is the same` : null,
  },
  'bert-base': {
    workload: 'BERT-base (hidden 768, 12 layers, 12 heads, inter 3072, random init), seq 128, 2 labels, AdamW lr 1e-4 wd 0.01; MaskSub token masking 15 %',
    // 8 and 16 sequences of 128 tokens: 16 is the low end of BERT's fine-tuning batches ({16, 32} in
    // the BERT paper), 8 is the same effective batch as the ViT case; 32 would double an already
    // minutes-long bench on 2 cores for no new information (it is two micro-batches of 16).
    batches: (quick) => (quick ? [2, 4] : [8, 16]),
    make(batch) {
      const w = makeBertModelAndBatch(BERT_BASE, batch, BERT_BASE.seq);
      return { model: w.model, batch: w.batch, dispose: () => (w.model.dispose(), tf.dispose(w.tensors)) };
    },
    optimizer: { kind: 'adamw', weightDecay: 0.01 },
    lr: 1e-4,
    masksub: { drop: 'token-masking', ratio: 0.15 },
    // The shared script's own step, timed in interleaved pairs (bench/torch/shared_pairs.py).
    torchScript: benchScript('shared_pairs.py'),
    torchReads: [sharedScript('bert_step_torch.py')],
    torchNote: "bert_step_torch.py's step, standard and two-pass MaskSub in interleaved pairs (bench/torch/shared_pairs.py); RSS is the peak of both",
    torchArgs: (batch, steps) => ['--script', sharedScript('bert_step_torch.py'), '--hidden', String(BERT_BASE.hidden), '--layers', String(BERT_BASE.layers), '--heads', String(BERT_BASE.heads), '--inter', String(BERT_BASE.inter), '--seq', String(BERT_BASE.seq), '--batch', String(batch), '--steps', String(steps)],
  },
};
