/** Messages between a DataLoader and its worker thread (worker-client.ts, loader-worker.ts). */
import { FileFormatError, MaskSubError, OptionError } from '@masksub/core/base';
import type { ImageBatch, LoaderState } from './types.js';

export type ToWorker =
  /** Iterate the epoch that starts at `state`, with up to `credits` batches posted ahead. */
  | { type: 'epoch'; id: number; state: LoaderState; credits: number }
  /** The consumer took a batch: one more may be posted. */
  | { type: 'credit'; id: number }
  /** The consumer stopped early: end that iteration. */
  | { type: 'stop'; id: number };

export type FromWorker =
  | { type: 'batch'; id: number; batch: ImageBatch; state: LoaderState }
  | { type: 'end'; id: number; state: LoaderState }
  | { type: 'error'; id: number; error: WireError };

/** An error as plain data: masksub's errors keep their class and the option or file they name. */
export interface WireError {
  name: string;
  message: string;
  option?: string;
  file?: string;
}

export function wireError(e: unknown): WireError {
  if (e instanceof OptionError) return { name: e.name, message: e.message, option: e.option };
  if (e instanceof FileFormatError) return { name: e.name, message: e.message, file: e.file };
  if (e instanceof Error) return { name: e.name, message: e.message };
  return { name: 'Error', message: String(e) };
}

/** The same error class on this side of the thread, with the message as the worker wrote it. */
export function reviveError(w: WireError): Error {
  let e: Error;
  if (w.name === 'OptionError' && w.option !== undefined) e = new OptionError(w.option, '');
  else if (w.name === 'FileFormatError' && w.file !== undefined) e = new FileFormatError(w.file, '');
  else if (w.name === 'MaskSubError') e = new MaskSubError('');
  else e = new Error('');
  e.message = w.message;
  return e;
}

/** The buffers of a batch, moved to the receiving thread instead of copied. */
export function transferablesOf(batch: ImageBatch): ArrayBuffer[] {
  const buffers = [batch.images.buffer, batch.labels.buffer];
  if (batch.targets) buffers.push(batch.targets.buffer);
  return [...new Set(buffers)].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
}
