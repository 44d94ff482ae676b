/** Errors a user can act on: each names the file, tensor or option at fault. */
export class MaskSubError extends Error {
  override name = 'MaskSubError';
}

/** A bad option value (name and what was expected). */
export class OptionError extends MaskSubError {
  override name = 'OptionError';
  constructor(readonly option: string, message: string) {
    super(`option '${option}': ${message}`);
  }
}

/** A file that cannot be read or has the wrong contents. */
export class FileFormatError extends MaskSubError {
  override name = 'FileFormatError';
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
  }
}

/** Tensors that are missing, unexpected or of the wrong shape, all listed at once. */
export class TensorMismatchError extends MaskSubError {
  override name = 'TensorMismatchError';
  constructor(
    readonly source: string,
    readonly missing: string[],
    readonly unexpected: string[],
    readonly wrongShape: { name: string; expected: number[]; found: number[] }[],
  ) {
    const lines: string[] = [];
    for (const n of missing) lines.push(`  missing: ${n}`);
    for (const n of unexpected) lines.push(`  unexpected (cannot be placed): ${n}`);
    for (const w of wrongShape) lines.push(`  wrong shape: ${w.name} expected [${w.expected}] found [${w.found}]`);
    super(`${source}: the weights do not fit the model\n${lines.join('\n')}`);
  }
}
