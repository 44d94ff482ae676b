/**
 * Checks an architecture's declared parameter groups on a built model (test helper for the
 * packages' param-groups tests): every parameter has a layer in range, every layer is used, and
 * the per-parameter lr scales an optimizer resolves follow decay^(numLayers + 1 - layer).
 */
import { expect } from 'vitest';
import type { MaskSubModel } from '../model.js';
import { createOptimizer } from '../optim/optimizer.js';
import type { ParamGroups } from '../optim/param-groups.js';

export interface GroupsReport {
  groups: ParamGroups;
  /** Layer of each parameter. */
  layers: Map<string, number>;
  /** lr scale the optimizer gives each trainable parameter at layer decay 0.5. */
  lrScale: Map<string, number>;
  /** Trainable parameters the optimizer applies no weight decay to (at a base decay of 0.05). */
  noDecay: string[];
}

export function checkParamGroups(model: MaskSubModel): GroupsReport {
  const groups = model.paramGroups?.();
  if (!groups) throw new Error(`${model.architecture} declares no paramGroups()`);
  const layers = new Map([...model.params.variables.keys()].map((n) => [n, groups.layerOf(n)]));
  for (const [name, id] of layers) expect(id, name).toBeGreaterThanOrEqual(0);
  for (const [name, id] of layers) expect(id, name).toBeLessThanOrEqual(groups.numLayers + 1);
  // Every layer from the embeddings to the head holds a parameter: no block was missed.
  expect(new Set(layers.values()).size).toBe(groups.numLayers + 2);
  const trainable = model.params.trainable();
  const opt = createOptimizer({ kind: 'adamw', weightDecay: 0.05 }, trainable, { groups, layerDecay: 0.5 });
  const lrScale = new Map([...trainable.keys()].map((n) => [n, opt.paramHyper(n).lrScale]));
  const noDecay = [...trainable.keys()].filter((n) => opt.paramHyper(n).weightDecay === 0);
  for (const [name, s] of lrScale) expect(s, name).toBe(0.5 ** (groups.numLayers + 1 - layers.get(name)!));
  opt.dispose();
  return { groups, layers, lrScale, noDecay };
}
