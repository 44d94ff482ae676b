/**
 * Model-zoo import/export for BERT: the same logits from model.safetensors, model.onnx
 * (anonymous transposed MatMul weights) and ONNX Runtime; quantized ONNX within quantization
 * error; save -> load round trips; pre-training checkpoints (MLM/NSP heads, position_ids,
 * TF-style gamma/beta, bare BertModel names); a new head for another label count.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadPretrained, readSafetensors, saveModel, tf, verifyModel, writeSafetensors, type HostTensor, type ModelInputs } from '@masksub/core';
import { describeShared, fixturePath } from '../../core/src/testing/shared.js';
import { expectSameTensors, maxAbsDiff, onnxRuntimeOutput, quiet, readReference, referenceTensor, referenceValues } from '../../core/src/testing/parity.js';
import './index.js';

describeShared('fixtures/hf-tiny/bert', 'BERT from the model zoo formats', () => {
  let inputs: ModelInputs;
  let refLogits: Float32Array;
  const tmp = mkdtempSync(join(tmpdir(), 'masksub-bert-'));

  beforeAll(async () => {
    await tf.setBackend('cpu');
    const ref = readReference('bert');
    inputs = {};
    for (const name of ['input_ids', 'attention_mask', 'token_type_ids']) inputs[name] = referenceTensor(ref, `input.${name}`, 'int32');
    refLogits = referenceValues(ref, 'ce.main_logits');
  });
  afterAll(() => {
    tf.dispose(Object.values(inputs));
    rmSync(tmp, { recursive: true, force: true });
  });

  const logitsOf = async (dir: string, weights?: string) => {
    const { model, format } = await loadPretrained(dir, { weights, ...quiet });
    const out = model.forward(inputs);
    const data = Float32Array.from(out.dataSync());
    out.dispose();
    model.dispose();
    return { data, format };
  };

  it('safetensors, ONNX and ONNX Runtime agree within 1e-4; quantized within 2e-2', async () => {
    const st = await logitsOf(fixturePath('bert'));
    expect(st.format).toBe('safetensors');
    expect(maxAbsDiff(st.data, refLogits)).toBeLessThan(1e-4);
    const onnx = await logitsOf(fixturePath('bert'), fixturePath('bert', 'model.onnx'));
    expect(onnx.format).toBe('onnx');
    expect(maxAbsDiff(onnx.data, st.data)).toBeLessThan(1e-4);

    // The int32 ids go to ONNX Runtime as the exporter's int64.
    const ortLogits = await onnxRuntimeOutput(fixturePath('bert', 'model.onnx'), inputs);
    expect(maxAbsDiff(onnx.data, ortLogits)).toBeLessThan(1e-4);

    const logs: string[] = [];
    const { model, format } = await loadPretrained(fixturePath('bert'), { weights: fixturePath('bert', 'model_quantized.onnx'), log: (m) => logs.push(m) });
    expect(format).toBe('onnx-quantized');
    const q = model.forward(inputs);
    expect(maxAbsDiff(q.dataSync(), refLogits)).toBeLessThan(2e-2);
    expect(maxAbsDiff(q.dataSync(), refLogits)).toBeGreaterThan(0); // really the quantized weights
    expect(logs.join('\n')).toMatch(/dequantiz/i);
    q.dispose();
    model.dispose();
  });

  it('save -> load gives identical tensors, and the saved folder verifies against the reference', async () => {
    const { model } = await loadPretrained(fixturePath('bert'), quiet);
    const out = join(tmp, 'saved');
    saveModel(model, out);
    const again = await loadPretrained(out, quiet);
    expectSameTensors(readSafetensors(join(out, 'model.safetensors')), readSafetensors(fixturePath('bert', 'model.safetensors')), { sameNames: true });
    const report = verifyModel(again.model, fixturePath('bert', 'reference.safetensors'));
    expect(report.rows.map((r) => r.quantity)).toEqual(['main logits', 'sub logits', 'loss main', 'loss sub', expect.stringMatching(/^gradients \(41,/)]);
    expect(report.ok, JSON.stringify(report.rows)).toBe(true);
    model.dispose();
    again.model.dispose();
  });

  it('loads pre-training checkpoints: MLM/NSP heads and position_ids skipped, TF gamma/beta and bare BertModel names mapped', async () => {
    const tensors = [...readSafetensors(fixturePath('bert', 'model.safetensors')).values()];
    const extra: HostTensor[] = [
      { name: 'cls.predictions.bias', dtype: 'float32', shape: [36], data: new Float32Array(36) },
      { name: 'cls.predictions.transform.dense.weight', dtype: 'float32', shape: [32, 32], data: new Float32Array(32 * 32) },
      { name: 'cls.seq_relationship.weight', dtype: 'float32', shape: [2, 32], data: new Float32Array(64) },
      { name: 'bert.embeddings.position_ids', dtype: 'int64', shape: [1, 32], data: new BigInt64Array(32) },
    ];
    const variants: Record<string, (t: HostTensor) => string> = {
      pretraining: (t) => t.name,
      tf_gamma_beta: (t) => t.name.replace(/LayerNorm\.weight$/, 'LayerNorm.gamma').replace(/LayerNorm\.bias$/, 'LayerNorm.beta'),
      bare_bertmodel: (t) => t.name.replace(/^bert\./, ''),
    };
    for (const [label, rename] of Object.entries(variants)) {
      const dir = join(tmp, label);
      mkdirSync(dir, { recursive: true });
      copyFileSync(fixturePath('bert', 'config.json'), join(dir, 'config.json'));
      const renamed = tensors.map((t) => ({ ...t, name: rename(t) }));
      if (label === 'pretraining') renamed.push(...extra);
      // The file really uses the other spelling (or, for pre-training, carries the extra heads).
      const changed = renamed.filter((t, i) => i >= tensors.length || t.name !== tensors[i].name).length;
      expect(changed, label).toBeGreaterThanOrEqual(label === 'pretraining' ? extra.length : 10);
      writeSafetensors(join(dir, 'model.safetensors'), renamed);
      const { data } = await logitsOf(dir);
      expect(maxAbsDiff(data, refLogits), label).toBeLessThan(1e-4);
    }
  });

  it('a new label count re-initialises only the head (STS-B: one regression output)', async () => {
    const { model, created } = await loadPretrained(fixturePath('bert'), { numLabels: 1, ...quiet });
    expect(created.sort()).toEqual(['classifier.bias', 'classifier.weight']);
    expect(model.numClasses).toBe(1);
    const out = model.forward(inputs);
    expect(out.shape).toEqual([4, 1]);
    out.dispose();
    model.dispose();
  });

  it('errors name the file and the tensor', async () => {
    const broken = join(tmp, 'broken');
    const { model } = await loadPretrained(fixturePath('bert'), quiet);
    saveModel(model, broken, { hidden_size: 48, num_attention_heads: 4 });
    model.dispose();
    await expect(loadPretrained(broken, quiet)).rejects.toThrow(/model\.safetensors[\s\S]*wrong shape: bert\.embeddings\.word_embeddings\.weight expected \[36,48\] found \[36,32\]/);
    const badType = join(tmp, 'badtype');
    mkdirSync(badType, { recursive: true });
    saveModel((await loadPretrained(fixturePath('bert'), quiet)).model, badType, { position_embedding_type: 'relative_key' });
    await expect(loadPretrained(badType, quiet)).rejects.toThrow(/config\.json[\s\S]*position_embedding_type 'relative_key'/);
  });
});
