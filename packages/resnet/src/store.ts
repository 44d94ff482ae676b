/**
 * A ParameterStore for networks of conv + batch-norm units that can also hold the BN-folded form
 * (conv with bias, no norm). Exported ONNX files carry only the folded form; rather than inventing
 * batch-norm parameters, `load` recognises such a file and switches the model to the folded
 * variant before loading, so the same model class reproduces the exporter's logits and can be
 * fine-tuned (without batch norm). `foldBatchNorm()` does the exporter's folding in place.
 */
import { ParameterStore, toFloat32, type ParamSpec, type Rng, type TensorMap } from '@masksub/core';
import { convUnitSpecs, foldBatchNormHost, type ConvUnit } from './layers.js';

export class ConvBnParameterStore extends ParameterStore {
  private foldedForm = false;

  constructor(
    readonly units: readonly ConvUnit[],
    /** Every parameter that is not part of a conv unit (e.g. the classifier). */
    private readonly otherSpecs: readonly ParamSpec[],
    rng: Rng | null,
  ) {
    super([...convUnitSpecs(units, false), ...otherSpecs], rng);
  }

  /** True once batch norms are folded into conv biases (loaded from a folded file, or foldBatchNorm()). */
  get folded(): boolean {
    return this.foldedForm;
  }

  /**
   * True when `tensors` are the folded form: every unit's conv has a bias and no unit has a batch
   * norm. A mix of both is left to `load` to report as missing/unexpected tensors.
   */
  isFoldedCheckpoint(tensors: TensorMap): boolean {
    return (
      this.units.length > 0 &&
      this.units.every((u) => tensors.has(`${u.conv}.bias`)) &&
      this.units.every((u) => !tensors.has(`${u.norm}.weight`) && !tensors.has(`${u.norm}.running_mean`))
    );
  }

  override load(
    tensors: TensorMap,
    source: string,
    ignore: (name: string) => boolean = () => false,
    reinitialise: (name: string) => boolean = () => false,
  ): { loaded: string[]; created: string[] } {
    if (!this.foldedForm && this.isFoldedCheckpoint(tensors)) {
      // The values are about to be overwritten by the file's: fold identity statistics.
      this.replaceWithFolded(() => undefined);
    }
    return super.load(tensors, source, ignore, reinitialise);
  }

  /** Fold every batch norm into its conv (W' = W * s, b = beta - mu * s): same eval-mode outputs, no BN left. */
  foldBatchNorm(): void {
    if (this.foldedForm) return;
    const current = this.export();
    const folded = foldBatchNormHost(this.units, (name) => toFloat32(current.get(name)!));
    this.replaceWithFolded((name) => folded.get(name)?.data);
  }

  /** Swap the unit specs and variables for the folded ones; `value` gives checkpoint-layout values (else zeros). */
  private replaceWithFolded(value: (name: string) => Float32Array | undefined): void {
    this.replaceSpecs([...convUnitSpecs(this.units, true), ...this.otherSpecs], value);
    this.foldedForm = true;
  }
}
