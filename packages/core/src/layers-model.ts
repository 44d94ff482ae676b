/**
 * Any tf.LayersModel as a MaskSubModel, so MaskSub's zero-fill works on plain Keras-style image
 * models too (the drop operator only changes the input). Parameters are the layer weights,
 * keyed by their tfjs names.
 */
import { OptionError } from './errors.js';
import type { DropKind, DropOperator } from './contract/drop.js';
import { dropoutSub, dropPathSub, zeroFill } from './contract/drop.js';
import type { ForwardOptions, MaskSubModel, ModelInputs, ParamSpec } from './model.js';
import { ParameterStore } from './model.js';
import type { DropOperatorProvider } from './masksub.js';
import { tf } from './tf.js';

export interface LayersModelOptions {
  /** The input name in batches (default 'pixel_values'). */
  inputName?: string;
  /** Zero-fill square side in pixels (default 32, the paper's). */
  patch?: number;
}

/** A LayersModel whose input is NHWC images and whose output is logits [B, classes]. */
export class LayersModelAdapter implements MaskSubModel, DropOperatorProvider {
  readonly architecture = 'layers-model';
  readonly config: Readonly<Record<string, unknown>>;
  readonly params: ParameterStore;
  readonly defaultDrop: DropKind = 'zero-fill';
  private readonly inputName: string;
  private readonly patch: number;

  constructor(
    readonly model: tf.LayersModel,
    options: LayersModelOptions = {},
  ) {
    this.inputName = options.inputName ?? 'pixel_values';
    this.patch = options.patch ?? 32;
    this.config = { model_type: 'layers-model', name: model.name };
    // Reuse the layer variables themselves: the optimizer updates what the LayersModel computes with.
    const specs: ParamSpec[] = model.trainableWeights.map((w) => ({ name: w.originalName, shape: w.shape.map((d) => d ?? 0), layout: 'identity' as const, init: 'zeros' as const }));
    this.params = ParameterStore.wrap(specs, new Map(model.trainableWeights.map((w) => [w.originalName, w.read() as tf.Variable])));
  }

  get numClasses(): number {
    const shape = this.model.outputs[0].shape;
    return shape[shape.length - 1] ?? 0;
  }

  dropOperator(kind: DropKind): DropOperator {
    if (kind === 'zero-fill') return zeroFill(this.patch, this.inputName, 'NHWC');
    if (kind === 'dropout') return dropoutSub();
    if (kind === 'drop-path') return dropPathSub();
    throw new OptionError('drop', `a plain LayersModel supports zero-fill only (not '${kind}')`);
  }

  forward(inputs: ModelInputs, options: ForwardOptions = {}): tf.Tensor {
    const x = inputs[this.inputName];
    if (!x) throw new OptionError(this.inputName, `the LayersModel needs input '${this.inputName}', got [${Object.keys(inputs)}]`);
    return this.model.apply(x, { training: options.training ?? false }) as tf.Tensor;
  }

  dispose(): void {
    this.model.dispose();
  }
}

export function fromLayersModel(model: tf.LayersModel, options?: LayersModelOptions): LayersModelAdapter {
  return new LayersModelAdapter(model, options);
}

