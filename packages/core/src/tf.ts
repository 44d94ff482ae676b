/**
 * The one TensorFlow.js instance every masksub package uses.
 *
 * Why the umbrella package: Node resolves `@tensorflow/tfjs-core` to its CommonJS build, which
 * registers no gradients; `@tensorflow/tfjs` registers them (and brings the cpu backend and
 * layers). Importing tf from here keeps all packages on one engine and one kernel registry.
 */
import * as tf from '@tensorflow/tfjs';

// Production mode: no "install tfjs-node" banner on the cpu backend (masksub picks its backend
// itself and logs the choice) and no deprecation chatter.
tf.env().set('PROD', true);

export { tf };
export type Tensor = tf.Tensor;
export type Rank = tf.Rank;
