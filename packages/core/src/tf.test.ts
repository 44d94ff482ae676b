/**
 * Node resolves @tensorflow/tfjs-core to a CommonJS build that registers no gradients; masksub
 * must get an engine with gradients both under vitest and in a plain Node process.
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tf } from './tf.js';

const ops = (x: tf.Tensor) =>
  tf.sum(tf.mul(tf.erf(tf.matMul(tf.gather(x, [0, 1, 1]), x, false, true)), tf.softmax(tf.matMul(x, x, true, false).reshape([1, -1]).tile([3, 1]).slice([0, 0], [3, 3]))));

describe('the tf instance masksub uses', () => {
  it('has gradients for the ops the models use (in this process)', () => {
    const x = tf.tensor2d([[0.1, 0.2, 0.3], [0.4, -0.5, 0.6], [0.7, 0.8, -0.9]]);
    const g = tf.grad(ops)(x);
    expect(g.shape).toEqual([3, 3]);
    expect(Math.max(...Array.from(tf.abs(g).dataSync()))).toBeGreaterThan(0);
  });

  it('has gradients in a plain Node process too (no bundler, no vitest)', () => {
    const script = `import('@tensorflow/tfjs').then(async (tf) => { await tf.setBackend('cpu'); tf.env().set('PROD', true);
      const g = tf.grad((x) => tf.sum(tf.erf(tf.gather(x, [0, 0]))))(tf.tensor1d([0.5, 1]));
      console.log(JSON.stringify(Array.from(g.dataSync()))); })`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: join(dirname(fileURLToPath(import.meta.url)), '..'), encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const g = JSON.parse(r.stdout.trim().split('\n').pop()!) as number[];
    expect(g[0]).toBeCloseTo(2 * (2 / Math.sqrt(Math.PI)) * Math.exp(-0.25), 5);
    expect(g[1]).toBe(0);
  });
});
