/**
 * A bench workload: one model, one fixed batch, one optimizer, and a standard step and a MaskSub
 * step (the architecture's own drop kind) that share them, so the two are timed on the same
 * weights and data, as the PyTorch scripts do.
 */
import { createOptimizer, tf, withMaskSub, type Batch, type AdapterModel, type MaskSubOptions, type OptimizerSpec } from '@masksub/core';

export interface ArchStep {
  /** Trainable parameters (checked against the PyTorch twin's count: same model, same arithmetic). */
  readonly parameters: number;
  /** The model both steps train (the profiler wraps its forward to tell the main pass from the sub pass). */
  readonly model: AdapterModel;
  step(masksub: boolean, i: number): number;
  /** A standard step on another batch (the input-pipeline bench feeds real data). */
  stepOn(batch: Batch, i: number): number;
  dispose(): void;
}

export function twoStepWorkload(model: AdapterModel, batch: Batch, spec: { optimizer: OptimizerSpec; lr: number; masksub: MaskSubOptions; tensors: tf.Tensor[] }): ArchStep {
  const optimizer = createOptimizer(spec.optimizer, model.params.trainable());
  const standard = withMaskSub(model, { variant: 'none', seed: 1 });
  const masksub = withMaskSub(model, { variant: 'masksub', seed: 1, ...spec.masksub });
  return {
    parameters: model.params.countTrainable(),
    model,
    step: (ms, i) => (ms ? masksub : standard).step(batch, optimizer, spec.lr, i).loss,
    stepOn: (other, i) => standard.step(other, optimizer, spec.lr, i).loss,
    dispose() {
      optimizer.dispose();
      model.dispose();
      tf.dispose(spec.tensors);
    },
  };
}
