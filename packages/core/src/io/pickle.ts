/**
 * A restricted pickle VM for PyTorch checkpoints. A pickle is a program: GLOBAL + REDUCE can call
 * any importable Python function (`os.system` included), so a checkpoint is untrusted input. This
 * machine implements the opcodes of protocols 0-5 that data uses, and resolves a global only
 * through the caller's allow-list (the set `torch.load(weights_only=True)` permits for a state
 * dict); any other global is refused with an error naming it, before anything is called.
 */
import { FileFormatError } from '../errors.js';

/** A Python tuple (kept distinct from a list: rebuild functions take positional tuples). */
export class PyTuple {
  constructor(readonly items: PyValue[]) {}
}

/** A Python dict / OrderedDict: insertion-ordered; keys are strings, numbers or tuples stringified. */
export class PyDict {
  readonly entries = new Map<PyKey, PyValue>();
  /** Instance attributes set by BUILD (e.g. a state dict's `_metadata`); not part of the mapping. */
  attributes?: PyValue;
  constructor(readonly ordered = false) {}
}

/** A global resolved through the allow-list, e.g. `torch FloatStorage`; called by REDUCE / NEWOBJ. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly call: ((args: PyValue[]) => PyValue) | undefined,
  ) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** What a persistent id resolves to (a storage, for PyTorch). */
export interface PyExternal {
  readonly kind: 'external';
}

export type PyKey = string | number | bigint | boolean | null;
export type PyValue = PyKey | PyValue[] | PyTuple | PyDict | PyGlobal | Uint8Array | PyExternal | { readonly kind: string };

export interface UnpickleOptions {
  /** Resolves `module.name` to a callable, or undefined to refuse it. */
  resolveGlobal(module: string, name: string): PyGlobal | undefined;
  /** Resolves a persistent id (BINPERSID / PERSID); absent: persistent ids are refused. */
  persistentLoad?(pid: PyValue): PyValue;
  /** Upper bound on the stack + memo size, against memory exhaustion by a crafted file. */
  maxItems?: number;
}


/** A global the VM refused: the error names it. */
export class ForbiddenGlobalError extends FileFormatError {
  override name = 'ForbiddenGlobalError';
  constructor(
    file: string,
    readonly global: string,
  ) {
    super(file, `the pickle calls '${global}', which a checkpoint must not (only tensor rebuild functions, storages and OrderedDict are allowed); refusing to load`);
  }
}

export function dictKey(file: string, v: PyValue): PyKey {
  if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return v;
  if (v instanceof PyTuple) return JSON.stringify(v.items.map((x) => dictKey(file, x)), (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x));
  throw new FileFormatError(file, 'pickle: unhashable dict key');
}

/** Run the pickle in `data` from `start`; returns the value and the offset after STOP. */
export function unpickle(data: Uint8Array, file: string, options: UnpickleOptions, start = 0): { value: PyValue; end: number } {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const maxItems = options.maxItems ?? 50_000_000;
  // Marks are stack heights, not stack items: the stack holds values only.
  const stack: PyValue[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PyValue>();
  let pos = start;
  const fail = (msg: string): never => {
    throw new FileFormatError(file, `pickle at byte ${pos}: ${msg}`);
  };
  const need = (n: number): void => {
    if (n < 0 || pos + n > data.length) fail(`truncated (needs ${n} more bytes)`);
  };
  const u8 = (): number => {
    need(1);
    return data[pos++] as number;
  };
  const u16 = (): number => {
    need(2);
    const v = view.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = (): number => {
    need(4);
    const v = view.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const i32 = (): number => {
    need(4);
    const v = view.getInt32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = (): number => {
    need(8);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail('length too large');
    return Number(v);
  };
  const bytes = (n: number): Uint8Array => {
    need(n);
    const out = data.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const latin1 = new TextDecoder('latin1');
  const text = (n: number): string => {
    try {
      return utf8.decode(bytes(n));
    } catch {
      return fail('string is not valid UTF-8');
    }
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) fail('unterminated text argument');
    const s = latin1.decode(data.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const push = (v: PyValue): void => {
    if (stack.length + memo.size >= maxItems) fail(`more than ${maxItems} objects`);
    stack.push(v);
  };
  const pop = (): PyValue => {
    if (stack.length === 0 || (marks.length > 0 && stack.length <= (marks[marks.length - 1] as number))) fail('stack underflow');
    return stack.pop() as PyValue;
  };
  const top = (): PyValue => {
    if (stack.length === 0) fail('stack underflow');
    if (marks.length > 0 && stack.length <= (marks[marks.length - 1] as number)) fail('unexpected mark');
    return stack[stack.length - 1] as PyValue;
  };
  const popMark = (): PyValue[] => {
    const m = marks.pop();
    if (m === undefined) fail('no mark on the stack');
    return stack.splice(m as number);
  };
  const memoGet = (i: number): PyValue => {
    if (!memo.has(i)) fail(`memo ${i} is not set`);
    return memo.get(i) as PyValue;
  };
  const memoPut = (i: number): void => {
    if (memo.size >= maxItems) fail(`more than ${maxItems} memo entries`);
    memo.set(i, top());
  };
  const global = (module: string, name: string): PyGlobal => {
    const g = options.resolveGlobal(module, name);
    if (!g) throw new ForbiddenGlobalError(file, `${module}.${name}`);
    return g;
  };
  const call = (fn: PyValue, args: PyValue): PyValue => {
    if (!(fn instanceof PyGlobal)) return fail('REDUCE on something that is not a global');
    if (!(args instanceof PyTuple)) return fail(`arguments of ${fn.qualified} are not a tuple`);
    if (!fn.call) return fail(`'${fn.qualified}' is not callable here`);
    return fn.call(args.items);
  };
  const setItems = (target: PyValue, items: PyValue[]): void => {
    if (!(target instanceof PyDict)) fail('SETITEM on something that is not a dict');
    if (items.length % 2) fail('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) (target as PyDict).entries.set(dictKey(file, items[i] as PyValue), items[i + 1] as PyValue);
  };
  const append = (target: PyValue, items: PyValue[]): void => {
    if (!Array.isArray(target)) fail('APPEND on something that is not a list');
    for (const it of items) {
      if ((target as PyValue[]).length >= maxItems) fail(`list longer than ${maxItems}`);
      (target as PyValue[]).push(it);
    }
  };
  const persistent = (pid: PyValue): PyValue => {
    if (!options.persistentLoad) return fail('persistent ids are not allowed here');
    return options.persistentLoad(pid);
  };
  const decodeLong = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i] as number);
    if ((b[b.length - 1] as number) & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const parseIntText = (s: string): number | bigint | boolean => {
    const t = s.trim().replace(/L$/, '');
    if (t === '00') return false;
    if (t === '01') return true;
    if (!/^[-+]?\d+$/.test(t)) fail(`bad integer literal ${JSON.stringify(s)}`);
    const b = BigInt(t);
    return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
  };

  for (;;) {
    const opPos = pos;
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail('unsupported pickle protocol');
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: {
        // STOP
        const v = pop();
        return { value: v, end: pos };
      }
      case 0x28: // MARK
        if (marks.length >= maxItems) fail(`more than ${maxItems} marks`);
        marks.push(stack.length);
        break;
      case 0x30: // POP
        if (marks.length > 0 && stack.length === marks[marks.length - 1]) marks.pop();
        else pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;
      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      case 0x4a: // BININT
        push(i32());
        break;
      case 0x4b: // BININT1
        push(u8());
        break;
      case 0x4d: // BININT2
        push(u16());
        break;
      case 0x8a: // LONG1
        push(decodeLong(bytes(u8())));
        break;
      case 0x8b: {
        // LONG4
        const n = i32();
        if (n < 0) fail('negative LONG4 length');
        push(decodeLong(bytes(n)));
        break;
      }
      case 0x49: // INT
        push(parseIntText(line()));
        break;
      case 0x4c: // LONG
        push(parseIntText(line()));
        break;
      case 0x47: {
        // BINFLOAT (big-endian)
        need(8);
        push(view.getFloat64(pos, false));
        pos += 8;
        break;
      }
      case 0x46: {
        // FLOAT
        const f = Number(line());
        if (Number.isNaN(f)) fail('bad float literal');
        push(f);
        break;
      }
      case 0x58: // BINUNICODE
        push(text(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(text(u8()));
        break;
      case 0x8d: // BINUNICODE8
        push(text(u64()));
        break;
      case 0x54: // BINSTRING (py2 str)
        push(latin1.decode(bytes(i32())));
        break;
      case 0x55: // SHORT_BINSTRING
        push(latin1.decode(bytes(u8())));
        break;
      case 0x42: // BINBYTES
        push(bytes(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        push(bytes(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
        push(bytes(u64()).slice());
        break;
      case 0x96: // BYTEARRAY8
        push(bytes(u64()).slice());
        break;
      case 0x53: {
        // STRING: a quoted repr; PyTorch never writes it, but keys may come as py2 strings
        const s = line().trim();
        if (s.length < 2 || (s[0] !== "'" && s[0] !== '"') || s[s.length - 1] !== s[0]) fail('bad STRING literal');
        push(s.slice(1, -1));
        break;
      }
      case 0x56: // UNICODE (raw-unicode-escape; plain text is enough for names)
        push(line());
        break;
      case 0x5d: // EMPTY_LIST
        push([]);
        break;
      case 0x7d: // EMPTY_DICT
        push(new PyDict());
        break;
      case 0x29: // EMPTY_TUPLE
        push(new PyTuple([]));
        break;
      case 0x8f: // EMPTY_SET: only frozen data, kept as a list
        push([]);
        break;
      case 0x6c: // LIST
        push(popMark());
        break;
      case 0x74: // TUPLE
        push(new PyTuple(popMark()));
        break;
      case 0x85: // TUPLE1
        push(new PyTuple([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        const a = pop();
        push(new PyTuple([a, b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        push(new PyTuple([a, b, c]));
        break;
      }
      case 0x91: // FROZENSET
        push(popMark());
        break;
      case 0x64: {
        // DICT
        const d = new PyDict();
        setItems(d, popMark());
        push(d);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        append(top(), [v]);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        append(top(), items);
        break;
      }
      case 0x90: {
        // ADDITEMS (set)
        const items = popMark();
        append(top(), items);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x70: // PUT
        memoPut(Number(parseIntText(line())));
        break;
      case 0x71: // BINPUT
        memoPut(u8());
        break;
      case 0x72: // LONG_BINPUT
        memoPut(u32());
        break;
      case 0x94: // MEMOIZE
        memoPut(memo.size);
        break;
      case 0x67: // GET
        push(memoGet(Number(parseIntText(line()))));
        break;
      case 0x68: // BINGET
        push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        push(memoGet(u32()));
        break;
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        const name = line();
        push(global(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        push(global(module as string, name as string));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        push(call(fn, args));
        break;
      }
      case 0x81: {
        // NEWOBJ cls.__new__(cls, *args)
        const args = pop();
        const cls = pop();
        push(call(cls, args));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        pop(); // kwargs
        const args = pop();
        const cls = pop();
        push(call(cls, args));
        break;
      }
      case 0x62: {
        // BUILD: instance state; only dicts take it (a state dict's `_metadata`)
        const state = pop();
        const obj = top();
        if (obj instanceof PyDict) obj.attributes = state;
        else if (!(typeof obj === 'object' && obj !== null && 'kind' in obj)) fail('BUILD on an object that takes no state');
        break;
      }
      case 0x51: // BINPERSID
        push(persistent(pop()));
        break;
      case 0x50: // PERSID
        push(persistent(line()));
        break;
      case 0x97: // NEXT_BUFFER
      case 0x98: // READONLY_BUFFER
        fail('out-of-band buffers are not supported');
        break;
      case 0x69: // INST: an arbitrary class instantiation
      case 0x6f: // OBJ
        fail(`opcode ${op === 0x69 ? 'INST' : 'OBJ'} instantiates arbitrary classes; refusing`);
        break;
      default:
        pos = opPos;
        fail(`unknown opcode 0x${op.toString(16).padStart(2, '0')}`);
    }
  }
}
