/**
 * timm's SwinTransformer (`swin_*` hub folders) onto the HF Swin model: the same function, other
 * names. Served layout: timm >= 0.9 (what timm's hub weights load as): `patch_embed.proj/norm`,
 * `layers.S.blocks.B.{norm1, attn.qkv (q, k, v fused along dim 0), attn.proj,
 * attn.relative_position_bias_table, norm2, mlp.fc1, mlp.fc2}`, the PatchMerging at the START of
 * stages 1.. (`layers.S.downsample.{norm, reduction}`, S >= 1; HF has it at the end of stages
 * 0..n-2), final `norm`, `head.fc`. The relative position index and attention mask buffers are
 * recomputed (ignored in the file). Checked against the HF reference by
 * test-fixtures/check_timm_swin.py (timm's arithmetic in PyTorch on the renamed weights).
 */
import { FileFormatError, type HFConfig, type HostTensor, type TensorMap } from '@masksub/core';
import { stageDim, type SwinConfig } from './config.js';

/** timm architecture names the Swin adapter serves (swinv2_* is another model and does not match). */
export const TIMM_SWIN_ARCHITECTURES: readonly string[] = ['swin_*'];

/** Sizes by the model-size word of a timm Swin name (timm's swin_transformer.py model definitions). */
const SIZES: Readonly<Record<string, { embed_dim: number; depths: number[]; num_heads: number[] }>> = {
  tiny: { embed_dim: 96, depths: [2, 2, 6, 2], num_heads: [3, 6, 12, 24] },
  small: { embed_dim: 96, depths: [2, 2, 18, 2], num_heads: [3, 6, 12, 24] },
  base: { embed_dim: 128, depths: [2, 2, 18, 2], num_heads: [4, 8, 16, 32] },
  large: { embed_dim: 192, depths: [2, 2, 18, 2], num_heads: [6, 12, 24, 48] },
};

const SUPPORTED_ARGS = ['img_size', 'patch_size', 'window_size', 'embed_dim', 'depths', 'num_heads', 'mlp_ratio', 'qkv_bias', 'in_chans', 'num_classes', 'drop_rate', 'attn_drop_rate', 'drop_path_rate'];

/** A timm hub config of a Swin -> the HF config of the same network (sizes from model_args, then the name). */
export function timmSwinToHfConfig(raw: HFConfig, source = 'config.json'): HFConfig {
  const arch = String(raw.architecture);
  const m = /^swin_([a-z]+)_patch(\d+)_window(\d+)_(\d+)/.exec(arch);
  const args = (typeof raw.model_args === 'object' && raw.model_args !== null ? raw.model_args : {}) as Record<string, unknown>;
  for (const key of Object.keys(args)) {
    if (!SUPPORTED_ARGS.includes(key)) throw new FileFormatError(source, `model_args.${key} is not supported for '${arch}' (supported: ${SUPPORTED_ARGS.join(', ')})`);
  }
  if (args.ape === true) throw new FileFormatError(source, `'${arch}': absolute position embeddings are not supported`);
  const named = m ? SIZES[m[1] as string] : undefined;
  const pick = <T>(key: string, fromName: T | undefined): T => {
    const v = (args[key] as T | undefined) ?? fromName;
    if (v === undefined) throw new FileFormatError(source, `model_args.${key} is missing and architecture '${arch}' does not imply it (known: swin_{${Object.keys(SIZES).join(',')}}_patchP_windowW_S)`);
    return v;
  };
  const numClasses = typeof raw.num_classes === 'number' ? raw.num_classes : typeof args.num_classes === 'number' ? args.num_classes : 1000;
  const rate = (key: string, dflt: number) => (typeof args[key] === 'number' ? args[key] : dflt);
  return {
    model_type: 'swin',
    architectures: ['SwinForImageClassification'],
    image_size: pick('img_size', m ? Number(m[4]) : undefined),
    patch_size: pick('patch_size', m ? Number(m[2]) : undefined),
    window_size: pick('window_size', m ? Number(m[3]) : undefined),
    embed_dim: pick('embed_dim', named?.embed_dim),
    depths: pick('depths', named?.depths),
    num_heads: pick('num_heads', named?.num_heads),
    mlp_ratio: pick('mlp_ratio', 4),
    qkv_bias: pick('qkv_bias', true),
    num_channels: pick('in_chans', 3),
    num_labels: numClasses,
    layer_norm_eps: 1e-5,
    hidden_act: 'gelu',
    hidden_dropout_prob: rate('drop_rate', 0),
    attention_probs_dropout_prob: rate('attn_drop_rate', 0),
    // timm's default stochastic depth for Swin (HF's is 0.1)
    drop_path_rate: rate('drop_path_rate', 0.1),
    use_absolute_embeddings: false,
    timm_architecture: arch,
    ...(raw.pretrained_cfg ? { pretrained_cfg: raw.pretrained_cfg } : {}),
  };
}

/** timm names -> HF hub names, for every tensor but the fused qkv (split by splitTimmSwinQkv). */
export function timmSwinAliases(c: SwinConfig): Record<string, string> {
  const out: Record<string, string> = {};
  const both = (from: string, to: string) => {
    out[`${from}.weight`] = `${to}.weight`;
    out[`${from}.bias`] = `${to}.bias`;
  };
  both('patch_embed.proj', 'swin.embeddings.patch_embeddings.projection');
  both('patch_embed.norm', 'swin.embeddings.norm');
  c.depths.forEach((depth, s) => {
    for (let b = 0; b < depth; b++) {
      const t = `layers.${s}.blocks.${b}`;
      const h = `swin.encoder.layers.${s}.blocks.${b}`;
      both(`${t}.norm1`, `${h}.layernorm_before`);
      both(`${t}.norm2`, `${h}.layernorm_after`);
      both(`${t}.attn.proj`, `${h}.attention.output.dense`);
      both(`${t}.mlp.fc1`, `${h}.intermediate.dense`);
      both(`${t}.mlp.fc2`, `${h}.output.dense`);
      out[`${t}.attn.relative_position_bias_table`] = `${h}.attention.self.relative_position_bias_table`;
    }
    if (s > 0) {
      // timm >= 0.9 merges patches at the start of stage s; HF at the end of stage s - 1
      both(`layers.${s}.downsample.norm`, `swin.encoder.layers.${s - 1}.downsample.norm`);
      out[`layers.${s}.downsample.reduction.weight`] = `swin.encoder.layers.${s - 1}.downsample.reduction.weight`;
    }
  });
  both('norm', 'swin.layernorm');
  both('head.fc', 'classifier');
  return out;
}

/** `layers.S.blocks.B.attn.qkv.{weight,bias}` ([3C, C] / [3C]: query, key, value rows) -> HF's three projections. */
export function splitTimmSwinQkv(tensors: TensorMap, c: SwinConfig, source: string): TensorMap {
  const out: TensorMap = new Map();
  for (const [name, t] of tensors) {
    const m = /^layers\.(\d+)\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)$/.exec(name);
    if (!m) {
      out.set(name, t);
      continue;
    }
    const [s, b, kind] = [Number(m[1]), Number(m[2]), m[3] as string];
    const dim = s < c.depths.length ? stageDim(c, s) : -1;
    const want = kind === 'weight' ? [3 * dim, dim] : [3 * dim];
    if (dim < 0 || t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      throw new FileFormatError(source, `tensor '${name}': shape [${t.shape}], expected [${want}] (query, key and value of stage ${s} fused)`);
    }
    const rows = t.data.length / 3;
    ['query', 'key', 'value'].forEach((proj, j) => {
      const hub = `swin.encoder.layers.${s}.blocks.${b}.attention.self.${proj}.${kind}`;
      const data = (t.data as Float32Array).slice(j * rows, (j + 1) * rows);
      out.set(hub, { name: hub, dtype: t.dtype, shape: kind === 'weight' ? [dim, dim] : [dim], data } as HostTensor);
    });
  }
  return out;
}
