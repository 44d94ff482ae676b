/**
 * The one TensorFlow.js instance every masksub package uses.
 *
 * Why the umbrella package: Node resolves `@tensorflow/tfjs-core` to its CommonJS build, which
 * registers no gradients; `@tensorflow/tfjs` registers them (and brings the cpu backend and
 * layers). Importing tf from here keeps all packages on one engine and one kernel registry.
 */
import * as tf from '@tensorflow/tfjs';

export { tf };
export type Tensor = tf.Tensor;
export type Rank = tf.Rank;
