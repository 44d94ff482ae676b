export * from './optimizer.js';
export * from './param-groups.js';
export * from './clip.js';
export * from './schedule.js';
export * from './accumulate.js';
