/**
 * The one TensorFlow.js instance every masksub package uses.
 *
 * Why the umbrella package: Node resolves `@tensorflow/tfjs-core` to its CommonJS build, which
 * registers no gradients; `@tensorflow/tfjs` registers them (and brings the cpu backend and
 * layers). Importing tf from here keeps all packages on one engine and one kernel registry.
 */
import * as tf from '@tensorflow/tfjs';
import { installLeanGradients } from './lean-gradients.js';

// Production mode: no "install tfjs-node" banner on the cpu backend (masksub picks its backend
// itself and logs the choice) and no deprecation chatter.
tf.env().set('PROD', true);
// Backward passes free each op's gradients and saved tensors as soon as the op is done
// (tfjs keeps them all to the end of the backward: the peak of a training step's memory).
installLeanGradients(tf.engine());

export { tf };
export type Tensor = tf.Tensor;
export type Rank = tf.Rank;
