/**
 * MongoDB wire-protocol stand-in server for tests.
 *
 * The real `mongodb` driver talks to this over TCP exactly as it would to a standalone mongod
 * (it reports itself as MongoDB 7.0.0, wire version 21, standalone, not a replica set).
 *
 * SUPPORTED
 * - Wire: OP_MSG (kind 0 body + kind 1 document sequences, checksum flag, moreToCome = no reply),
 *   OP_QUERY on `<db>.$cmd` (legacy handshake) answered with OP_REPLY, OP_COMPRESSED with the
 *   noop or zlib compressor (we never advertise compression, so the driver does not send it).
 *   Messages are framed by messageLength, so partial TCP reads are fine. Many connections.
 * - Commands: hello / isMaster / ismaster, ping, buildInfo, getParameter, endSessions, killCursors,
 *   insert, find, getMore, update, delete, findAndModify, count, aggregate, distinct, createIndexes,
 *   listIndexes, dropIndexes (alias deleteIndexes), listCollections, create (no options), drop,
 *   dropDatabase, listDatabases. Cursors are server-wide (getMore works from any connection).
 * - Query operators: implicit equality (array elements, dotted paths, numeric array indexes),
 *   $eq $ne $gt $gte $lt $lte $in $nin $exists $and $or $nor $not $regex/$options (and regex
 *   values) $elemMatch $size $all $type $mod, top-level $comment.
 *   Comparison follows the BSON type order; numbers compare numerically across int/long/double.
 * - Update operators: $set $unset $inc $mul $min $max $rename $currentDate $setOnInsert
 *   $push ($each $position $slice $sort) $addToSet ($each) $pull $pullAll $pop, replacement
 *   documents, upsert, multi, sort (updateOne). _id is immutable.
 * - Projections (find, findAndModify, $project): inclusion, exclusion, dotted paths, field-path
 *   and simple expression values.
 * - Aggregation stages: $match $sort $skip $limit $project $addFields/$set $unset $group $count
 *   $unwind $replaceRoot/$replaceWith. $group accumulators: $sum $avg $min $max $first $last
 *   $push $addToSet $count. Expressions: field paths, $$ROOT/$$CURRENT, $literal $ifNull $cond
 *   $eq $ne $gt $gte $lt $lte $cmp $and $or $not $add $subtract $multiply $divide $mod $concat
 *   $toLower $toUpper $size $arrayElemAt $in.
 * - Indexes: ascending/descending single and compound keys, unique (enforced on insert, update,
 *   upsert, findAndModify, and when building over existing data; array values index each
 *   element), sparse, partialFilterExpression, `hint` validated against existing indexes.
 *   expireAfterSeconds is stored and reported but TTL expiry is NOT performed.
 * - Documents are deep-cloned on write and on read (callers cannot mutate the store).
 *
 * NOT SUPPORTED (answered with ok: 0 and a clear errmsg, usually code 238 NotImplemented)
 * - transactions (txnNumber / startTransaction), auth / SCRAM / x509, change streams,
 *   tailable cursors, text / geo / hashed / wildcard indexes, collations, arrayFilters and
 *   positional ($, $[], $[id]) update paths, pipeline-style updates, `let` variables, $expr,
 *   $where, $text, $jsonSchema, $lookup / $facet / $out / $merge and every stage not listed
 *   above, capped / time-series / view / validated collections, explain, any unknown command
 *   field (40415) or command (59 CommandNotFound).
 * - Single node only (no replication, no sharding), in memory only (not durable).
 * - Regexes use JavaScript RegExp semantics (the `x` flag is rejected). String comparison is
 *   binary (UTF-8 byte order). Doubles holding integral values come back as int32 (the JS BSON
 *   library does this); Decimal128 is compared by its float value.
 * - Cursors never time out while the server runs; they are dropped when their collection is.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { inflateSync } from 'node:zlib';
import type {
  BSONRegExp} from 'bson';
import {
  Long,
  ObjectId,
  Timestamp,
  UUID,
  calculateObjectSize,
  deserialize,
  serialize,
  type DeserializeOptions,
} from 'bson';

export interface MongoStandin {
  /** e.g. `mongodb://127.0.0.1:PORT/?directConnection=true` */
  uri: string;
  port: number;
  /** Destroys all open sockets and stops listening. */
  close(): Promise<void>;
  /** Number of currently open client TCP connections. */
  connectionCount(): number;
}

// ---------------------------------------------------------------------------------------------
// Constants and basic types
// ---------------------------------------------------------------------------------------------

type Doc = { [key: string]: unknown };

const OP_REPLY = 1;
const OP_QUERY = 2004;
const OP_COMPRESSED = 2012;
const OP_MSG = 2013;

const MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024;
const MAX_MESSAGE_SIZE = 48_000_000;
const MAX_WRITE_BATCH_SIZE = 100_000;
/** Replies carry a little overhead beyond the documents of a batch. */
const MAX_BATCH_BYTES = MAX_BSON_OBJECT_SIZE - 16 * 1024;
const DEFAULT_FIRST_BATCH = 101;

const DESERIALIZE_OPTIONS: DeserializeOptions = { promoteLongs: false, bsonRegExp: true };

/** Marker for a path that does not exist in a document. */
const MISSING: unique symbol = Symbol('missing');
/** Sort-key marker for an empty array (sorts before null). */
const EMPTY_ARRAY: unique symbol = Symbol('emptyArray');

class CommandError extends Error {
  readonly code: number;
  readonly codeName: string;
  readonly extra: Doc;
  constructor(code: number, codeName: string, message: string, extra: Doc = {}) {
    super(message);
    this.code = code;
    this.codeName = codeName;
    this.extra = extra;
  }
}

const badValue = (msg: string): CommandError => new CommandError(2, 'BadValue', msg);
const failedToParse = (msg: string): CommandError => new CommandError(9, 'FailedToParse', msg);
const typeMismatch = (msg: string): CommandError => new CommandError(14, 'TypeMismatch', msg);
const notSupported = (what: string): CommandError =>
  new CommandError(238, 'NotImplemented', `mongo-standin: ${what} is not supported`);

// ---------------------------------------------------------------------------------------------
// BSON value helpers
// ---------------------------------------------------------------------------------------------

function bsonTypeOf(v: unknown): string | undefined {
  if (v !== null && typeof v === 'object' && '_bsontype' in v) {
    const t = (v as { _bsontype: unknown })._bsontype;
    return typeof t === 'string' ? t : undefined;
  }
  return undefined;
}

function isPlainDoc(v: unknown): v is Doc {
  return (
    v !== null &&
    typeof v === 'object' &&
    !Array.isArray(v) &&
    !(v instanceof Date) &&
    !(v instanceof RegExp) &&
    !ArrayBuffer.isView(v) &&
    bsonTypeOf(v) === undefined
  );
}

function isNumeric(v: unknown): boolean {
  if (typeof v === 'number' || typeof v === 'bigint') return true;
  const t = bsonTypeOf(v);
  return t === 'Long' || t === 'Int32' || t === 'Double' || t === 'Decimal128';
}

function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  const t = bsonTypeOf(v);
  if (t === 'Long') return (v as Long).toNumber();
  if (t === 'Int32' || t === 'Double') return Number((v as { valueOf(): number }).valueOf());
  if (t === 'Decimal128') return Number.parseFloat(String(v));
  return Number.NaN;
}

function isLong(v: unknown): v is Long {
  return bsonTypeOf(v) === 'Long';
}

function isRegexValue(v: unknown): v is RegExp | BSONRegExp {
  return v instanceof RegExp || bsonTypeOf(v) === 'BSONRegExp';
}

function isIntegerLike(v: unknown): boolean {
  if (isLong(v)) return true;
  return typeof v === 'number' && Number.isInteger(v);
}

/** Canonical BSON type order rank (with two internal markers). */
function typeRank(v: unknown): number {
  if (v === MISSING) return 1.9;
  if (v === EMPTY_ARRAY) return 1.5;
  if (v === null || v === undefined) return 2;
  if (typeof v === 'number' || typeof v === 'bigint') return 3;
  if (typeof v === 'string') return 4;
  if (typeof v === 'boolean') return 9;
  if (Array.isArray(v)) return 6;
  if (v instanceof Date) return 10;
  if (v instanceof RegExp) return 12;
  switch (bsonTypeOf(v)) {
    case 'MinKey':
      return 1;
    case 'Long':
    case 'Int32':
    case 'Double':
    case 'Decimal128':
      return 3;
    case 'BSONSymbol':
      return 4;
    case 'DBRef':
      return 5;
    case 'Binary':
    case 'UUID':
      return 7;
    case 'ObjectId':
      return 8;
    case 'Timestamp':
      return 11;
    case 'BSONRegExp':
      return 12;
    case 'Code':
      return 13;
    case 'MaxKey':
      return 127;
    case undefined:
      return 5;
    default:
      return 14;
  }
}

function compareStrings(a: string, b: string): number {
  if (a === b) return 0;
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function compareNumbers(a: unknown, b: unknown): number {
  if (isLong(a) && isLong(b)) return a.compare(b);
  const x = toNumber(a);
  const y = toNumber(b);
  if (Number.isNaN(x) || Number.isNaN(y)) {
    if (Number.isNaN(x) && Number.isNaN(y)) return 0;
    return Number.isNaN(x) ? -1 : 1;
  }
  return x < y ? -1 : x > y ? 1 : 0;
}

function regexParts(v: RegExp | BSONRegExp): { pattern: string; flags: string } {
  if (v instanceof RegExp) return { pattern: v.source, flags: v.flags.split('').sort().join('') };
  return { pattern: v.pattern, flags: v.options.split('').sort().join('') };
}

function bytesOf(v: unknown): Buffer {
  const b = v as { buffer: Uint8Array; position?: number };
  const len = typeof b.position === 'number' ? b.position : b.buffer.length;
  return Buffer.from(b.buffer.buffer, b.buffer.byteOffset, len);
}

/** Total order over BSON values (MongoDB comparison/sort order). */
function compareBson(a: unknown, b: unknown): number {
  const ra = typeRank(a);
  const rb = typeRank(b);
  if (ra !== rb) return ra < rb ? -1 : 1;
  switch (ra) {
    case 3:
      return compareNumbers(a, b);
    case 4:
      return compareStrings(String(a), String(b));
    case 5: {
      const da = isPlainDoc(a) ? a : (JSON.parse(JSON.stringify(a)) as Doc);
      const db = isPlainDoc(b) ? b : (JSON.parse(JSON.stringify(b)) as Doc);
      const ka = Object.keys(da);
      const kb = Object.keys(db);
      for (let i = 0; i < Math.min(ka.length, kb.length); i++) {
        const fa = ka[i] as string;
        const fb = kb[i] as string;
        const va = da[fa];
        const vb = db[fb];
        const tr = typeRank(va) - typeRank(vb);
        if (tr !== 0) return tr < 0 ? -1 : 1;
        const kc = compareStrings(fa, fb);
        if (kc !== 0) return kc;
        const vc = compareBson(va, vb);
        if (vc !== 0) return vc;
      }
      return ka.length - kb.length === 0 ? 0 : ka.length < kb.length ? -1 : 1;
    }
    case 6: {
      const aa = a as unknown[];
      const ab = b as unknown[];
      for (let i = 0; i < Math.min(aa.length, ab.length); i++) {
        const c = compareBson(aa[i], ab[i]);
        if (c !== 0) return c;
      }
      return aa.length === ab.length ? 0 : aa.length < ab.length ? -1 : 1;
    }
    case 7: {
      const ba = bytesOf(a);
      const bb = bytesOf(b);
      if (ba.length !== bb.length) return ba.length < bb.length ? -1 : 1;
      const sa = (a as { sub_type: number }).sub_type;
      const sb = (b as { sub_type: number }).sub_type;
      if (sa !== sb) return sa < sb ? -1 : 1;
      return Buffer.compare(ba, bb);
    }
    case 8:
      return compareStrings((a as ObjectId).toHexString(), (b as ObjectId).toHexString());
    case 9:
      return a === b ? 0 : a === false ? -1 : 1;
    case 10: {
      const ta = (a as Date).getTime();
      const tb = (b as Date).getTime();
      return ta === tb ? 0 : ta < tb ? -1 : 1;
    }
    case 11: {
      const ta = a as Timestamp;
      const tb = b as Timestamp;
      if (ta.t !== tb.t) return ta.t < tb.t ? -1 : 1;
      return ta.i === tb.i ? 0 : ta.i < tb.i ? -1 : 1;
    }
    case 12: {
      const pa = regexParts(a as RegExp | BSONRegExp);
      const pb = regexParts(b as RegExp | BSONRegExp);
      return compareStrings(pa.pattern, pb.pattern) || compareStrings(pa.flags, pb.flags);
    }
    case 1:
    case 1.5:
    case 1.9:
    case 2:
    case 127:
      return 0;
    default:
      return compareStrings(String(a), String(b));
  }
}

function bsonEqual(a: unknown, b: unknown): boolean {
  return compareBson(a, b) === 0;
}

/** Canonical string of a value, equal for BSON-equal values (used for keys and dedupe). */
function canon(v: unknown): string {
  if (v === MISSING || v === null || v === undefined) return 'N';
  if (v === EMPTY_ARRAY) return 'U';
  if (isNumeric(v)) {
    if (isLong(v)) return `n:${v.toString()}`;
    const n = toNumber(v);
    if (Object.is(n, -0)) return 'n:0';
    return `n:${String(n)}`;
  }
  if (typeof v === 'string') return `s:${JSON.stringify(v)}`;
  if (typeof v === 'boolean') return `B:${String(v)}`;
  if (Array.isArray(v)) return `[${v.map(canon).join(',')}]`;
  if (v instanceof Date) return `d:${v.getTime()}`;
  if (isRegexValue(v)) {
    const p = regexParts(v);
    return `r:${JSON.stringify(p.pattern)}/${p.flags}`;
  }
  const t = bsonTypeOf(v);
  if (t === undefined && isPlainDoc(v)) {
    return `{${Object.entries(v)
      .map(([k, x]) => `${JSON.stringify(k)}:${canon(x)}`)
      .join(',')}}`;
  }
  if (t === 'ObjectId') return `o:${(v as ObjectId).toHexString()}`;
  if (t === 'Binary' || t === 'UUID') {
    return `b:${(v as { sub_type: number }).sub_type}:${bytesOf(v).toString('base64')}`;
  }
  if (t === 'Timestamp') return `t:${(v as Timestamp).toString()}`;
  if (t === 'MinKey' || t === 'MaxKey') return t;
  return `x:${t ?? ''}:${JSON.stringify(v)}`;
}

function cloneDoc(doc: Doc): Doc {
  return deserialize(serialize(doc), DESERIALIZE_OPTIONS);
}

function cloneValue(v: unknown): unknown {
  if (v === MISSING) return MISSING;
  return cloneDoc({ v }).v;
}

function bsonIdentical(a: Doc, b: Doc): boolean {
  return Buffer.from(serialize(a)).equals(Buffer.from(serialize(b)));
}

/** Short Mongo-shell-like rendering used in error messages. */
function formatValue(v: unknown): string {
  if (v === MISSING || v === undefined) return 'undefined';
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return `[ ${v.map(formatValue).join(', ')} ]`;
  if (v instanceof Date) return `new Date(${v.getTime()})`;
  if (isPlainDoc(v)) {
    const entries = Object.entries(v).map(([k, x]) => `${k}: ${formatValue(x)}`);
    return entries.length ? `{ ${entries.join(', ')} }` : '{}';
  }
  const t = bsonTypeOf(v);
  if (t === 'ObjectId') return `ObjectId('${(v as ObjectId).toHexString()}')`;
  if (t === 'Long') return `${(v as Long).toString()}`;
  if (isRegexValue(v)) {
    const p = regexParts(v);
    return `/${p.pattern}/${p.flags}`;
  }
  return String(v);
}

function typeName(v: unknown): string {
  if (v === MISSING) return 'missing';
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'number') {
    return Number.isInteger(v) && v >= -2147483648 && v <= 2147483647 ? 'int' : 'double';
  }
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'bool';
  if (Array.isArray(v)) return 'array';
  if (v instanceof Date) return 'date';
  if (v instanceof RegExp) return 'regex';
  switch (bsonTypeOf(v)) {
    case undefined:
      return 'object';
    case 'Long':
      return 'long';
    case 'Int32':
      return 'int';
    case 'Double':
      return 'double';
    case 'Decimal128':
      return 'decimal';
    case 'ObjectId':
      return 'objectId';
    case 'Binary':
    case 'UUID':
      return 'binData';
    case 'Timestamp':
      return 'timestamp';
    case 'BSONRegExp':
      return 'regex';
    case 'MinKey':
      return 'minKey';
    case 'MaxKey':
      return 'maxKey';
    case 'Code':
      return 'javascript';
    case 'BSONSymbol':
      return 'symbol';
    case 'DBRef':
      return 'object';
    default:
      return 'unknown';
  }
}

const TYPE_CODES: Record<number, string> = {
  1: 'double',
  2: 'string',
  3: 'object',
  4: 'array',
  5: 'binData',
  6: 'undefined',
  7: 'objectId',
  8: 'bool',
  9: 'date',
  10: 'null',
  11: 'regex',
  13: 'javascript',
  14: 'symbol',
  16: 'int',
  17: 'timestamp',
  18: 'long',
  19: 'decimal',
  [-1]: 'minKey',
  127: 'maxKey',
};

function asInt(v: unknown, field: string): number {
  if (!isNumeric(v)) throw typeMismatch(`BSON field '${field}' is the wrong type '${typeName(v)}', expected types '[long, int, decimal, double]'`);
  const n = toNumber(v);
  if (!Number.isInteger(n)) throw badValue(`BSON field '${field}' value must be an integer, got ${n}`);
  return n;
}

function asDoc(v: unknown, field: string): Doc {
  if (!isPlainDoc(v)) {
    throw typeMismatch(`BSON field '${field}' is the wrong type '${typeName(v)}', expected type 'object'`);
  }
  return v;
}

function optionalDoc(v: unknown, field: string): Doc | undefined {
  if (v === undefined || v === null) return undefined;
  return asDoc(v, field);
}

function truthy(v: unknown): boolean {
  if (v === MISSING || v === null || v === undefined || v === false) return false;
  if (isNumeric(v)) return toNumber(v) !== 0;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

function isIndexPart(part: string): boolean {
  return /^(0|[1-9][0-9]*)$/.test(part);
}

/** All values a (query) path can reach, expanding arrays of subdocuments. May contain MISSING. */
function resolvePath(value: unknown, parts: readonly string[], i = 0): unknown[] {
  if (i === parts.length) return [value];
  const part = parts[i] as string;
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    if (isIndexPart(part)) {
      const idx = Number(part);
      out.push(...(idx < value.length ? resolvePath(value[idx], parts, i + 1) : [MISSING]));
    }
    for (const el of value) {
      if (isPlainDoc(el)) out.push(...resolvePath(el, parts, i));
    }
    return out.length ? out : [MISSING];
  }
  if (isPlainDoc(value)) {
    return Object.prototype.hasOwnProperty.call(value, part) ? resolvePath(value[part], parts, i + 1) : [MISSING];
  }
  return [MISSING];
}

/** Exact path lookup (arrays only by numeric index). */
function getExact(value: unknown, parts: readonly string[]): unknown {
  let cur: unknown = value;
  for (const part of parts) {
    if (Array.isArray(cur)) {
      if (!isIndexPart(part)) return MISSING;
      const idx = Number(part);
      if (idx >= cur.length) return MISSING;
      cur = cur[idx];
    } else if (isPlainDoc(cur)) {
      if (!Object.prototype.hasOwnProperty.call(cur, part)) return MISSING;
      cur = cur[part];
    } else {
      return MISSING;
    }
  }
  return cur;
}

function splitUpdatePath(path: string): string[] {
  const parts = path.split('.');
  for (const part of parts) {
    if (part === '') throw new CommandError(56, 'EmptyFieldName', `An update path '${path}' contains an empty field name, which is not allowed.`);
    if (part === '$' || part.startsWith('$[')) throw notSupported(`positional update path '${path}'`);
  }
  return parts;
}

function setExact(doc: Doc, parts: readonly string[], value: unknown): void {
  let cur: Doc | unknown[] = doc;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as string;
    const last = i === parts.length - 1;
    if (Array.isArray(cur)) {
      if (!isIndexPart(part)) {
        throw new CommandError(28, 'PathNotViable', `Cannot create field '${part}' in element {${parts[i - 1] ?? ''}: ${formatValue(cur)}}`);
      }
      const idx = Number(part);
      while (cur.length < idx) cur.push(null);
      if (last) {
        cur[idx] = value;
        return;
      }
      let next: unknown = cur[idx];
      if (next === undefined) {
        next = {};
        cur[idx] = next;
      }
      if (!isPlainDoc(next) && !Array.isArray(next)) {
        throw new CommandError(28, 'PathNotViable', `Cannot create field '${parts[i + 1] ?? ''}' in element {${part}: ${formatValue(next)}}`);
      }
      cur = next;
    } else {
      if (last) {
        cur[part] = value;
        return;
      }
      let next: unknown = Object.prototype.hasOwnProperty.call(cur, part) ? cur[part] : MISSING;
      if (next === MISSING) {
        next = {};
        cur[part] = next;
      }
      if (!isPlainDoc(next) && !Array.isArray(next)) {
        throw new CommandError(28, 'PathNotViable', `Cannot create field '${parts[i + 1] ?? ''}' in element {${part}: ${formatValue(next)}}`);
      }
      cur = next;
    }
  }
}

function unsetExact(doc: Doc, parts: readonly string[]): boolean {
  let cur: unknown = doc;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as string;
    const last = i === parts.length - 1;
    if (Array.isArray(cur)) {
      if (!isIndexPart(part)) return false;
      const idx = Number(part);
      if (idx >= cur.length) return false;
      if (last) {
        cur[idx] = null;
        return true;
      }
      cur = cur[idx];
    } else if (isPlainDoc(cur)) {
      if (!Object.prototype.hasOwnProperty.call(cur, part)) return false;
      if (last) {
        delete cur[part];
        return true;
      }
      cur = cur[part];
    } else {
      return false;
    }
  }
  return false;
}

/** Puts _id first, as mongod stores it. */
function idFirst(doc: Doc): Doc {
  if (!('_id' in doc)) return doc;
  const keys = Object.keys(doc);
  if (keys[0] === '_id') return doc;
  const out: Doc = { _id: doc._id };
  for (const k of keys) if (k !== '_id') out[k] = doc[k];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Query matching
// ---------------------------------------------------------------------------------------------

const regexCache = new Map<string, RegExp>();

function toJsRegex(pattern: string, options: string): RegExp {
  const key = `${options}/${pattern}`;
  const cached = regexCache.get(key);
  if (cached) return cached;
  let flags = '';
  for (const ch of options) {
    if (ch === 'i' || ch === 'm' || ch === 's' || ch === 'u') {
      if (!flags.includes(ch)) flags += ch;
    } else if (ch === 'x' || ch === 'l') {
      throw notSupported(`regex option '${ch}'`);
    } else {
      throw new CommandError(51108, 'Location51108', `invalid flag in regex options: ${ch}`);
    }
  }
  let re: RegExp;
  try {
    re = new RegExp(pattern, flags);
  } catch (e) {
    throw new CommandError(51091, 'Location51091', `Regular expression is invalid: ${(e as Error).message}`);
  }
  regexCache.set(key, re);
  return re;
}

function regexFromValue(v: RegExp | BSONRegExp, optionsOverride?: string): RegExp {
  if (v instanceof RegExp) {
    if (optionsOverride === undefined) return new RegExp(v.source, v.flags.replace(/[gy]/g, ''));
    return toJsRegex(v.source, optionsOverride);
  }
  return toJsRegex(v.pattern, optionsOverride ?? v.options);
}

function regexPredicate(re: RegExp, original: RegExp | BSONRegExp | null): (c: unknown) => boolean {
  return (c) => {
    if (typeof c === 'string') return re.test(c);
    if (bsonTypeOf(c) === 'BSONSymbol') return re.test(String(c));
    if (original && isRegexValue(c)) return bsonEqual(c, original);
    return false;
  };
}

function isOperatorDoc(v: unknown): v is Doc {
  if (!isPlainDoc(v)) return false;
  const first = Object.keys(v)[0];
  return first !== undefined && first.startsWith('$');
}

function anyMatch(cands: readonly unknown[], pred: (c: unknown) => boolean): boolean {
  for (const c of cands) {
    if (pred(c)) return true;
    if (Array.isArray(c)) {
      for (const e of c) if (pred(e)) return true;
    }
  }
  return false;
}

function queryEq(c: unknown, x: unknown): boolean {
  if (c === MISSING || c === undefined) return x === null || x === undefined;
  return bsonEqual(c, x);
}

function equalityPredicate(x: unknown): (c: unknown) => boolean {
  if (isRegexValue(x)) return regexPredicate(regexFromValue(x), x);
  return (c) => queryEq(c, x);
}

function comparisonPredicate(op: string, x: unknown): (c: unknown) => boolean {
  const xr = typeRank(x === undefined ? null : x);
  return (c) => {
    const v = c === MISSING || c === undefined ? null : c;
    if (typeRank(v) !== xr) return false;
    const r = compareBson(v, x);
    switch (op) {
      case '$gt':
        return r > 0;
      case '$gte':
        return r >= 0;
      case '$lt':
        return r < 0;
      default:
        return r <= 0;
    }
  };
}

function inPredicate(list: unknown, op: string): (c: unknown) => boolean {
  if (!Array.isArray(list)) throw badValue(`${op} needs an array`);
  const preds = list.map((x) => {
    if (isOperatorDoc(x)) throw badValue(`cannot nest $ under ${op}`);
    return equalityPredicate(x);
  });
  return (c) => preds.some((p) => p(c));
}

function elemMatches(el: unknown, spec: Doc): boolean {
  const keys = Object.keys(spec);
  const valueForm =
    keys.length > 0 && keys.every((k) => k.startsWith('$') && k !== '$and' && k !== '$or' && k !== '$nor');
  if (valueForm) return evalOperators([el], spec, false);
  if (!isPlainDoc(el)) return false;
  return matchDoc(el, spec);
}

function evalOperators(cands: readonly unknown[], ops: Doc, expandArrays = true): boolean {
  const any = expandArrays ? anyMatch : (cs: readonly unknown[], p: (c: unknown) => boolean) => cs.some(p);
  for (const [op, arg] of Object.entries(ops)) {
    switch (op) {
      case '$eq':
        if (!any(cands, (c) => queryEq(c, arg))) return false;
        break;
      case '$ne':
        if (any(cands, (c) => queryEq(c, arg))) return false;
        break;
      case '$gt':
      case '$gte':
      case '$lt':
      case '$lte':
        if (!any(cands, comparisonPredicate(op, arg))) return false;
        break;
      case '$in':
        if (!any(cands, inPredicate(arg, '$in'))) return false;
        break;
      case '$nin':
        if (any(cands, inPredicate(arg, '$nin'))) return false;
        break;
      case '$exists':
        if (cands.some((c) => c !== MISSING) !== truthy(arg)) return false;
        break;
      case '$regex': {
        const options = ops.$options;
        if (options !== undefined && typeof options !== 'string') throw badValue('$options has to be a string');
        let re: RegExp;
        if (typeof arg === 'string') re = toJsRegex(arg, options ?? '');
        else if (isRegexValue(arg)) re = regexFromValue(arg, options);
        else throw badValue('$regex has to be a string');
        if (!any(cands, regexPredicate(re, null))) return false;
        break;
      }
      case '$options':
        if (!('$regex' in ops)) throw badValue('$options needs a $regex');
        break;
      case '$not': {
        if (isRegexValue(arg)) {
          if (any(cands, regexPredicate(regexFromValue(arg), arg))) return false;
        } else if (isOperatorDoc(arg)) {
          if (evalOperators(cands, arg, expandArrays)) return false;
        } else {
          throw badValue('$not needs a regex or a document');
        }
        break;
      }
      case '$size': {
        const n = asInt(arg, '$size');
        if (!cands.some((c) => Array.isArray(c) && c.length === n)) return false;
        break;
      }
      case '$all': {
        if (!Array.isArray(arg)) throw badValue('$all needs an array');
        if (arg.length === 0) return false;
        for (const x of arg) {
          if (isPlainDoc(x) && '$elemMatch' in x) {
            if (!evalOperators(cands, x, expandArrays)) return false;
          } else if (!any(cands, equalityPredicate(x))) {
            return false;
          }
        }
        break;
      }
      case '$elemMatch': {
        const spec = asDoc(arg, '$elemMatch');
        if (!cands.some((c) => Array.isArray(c) && c.some((e) => elemMatches(e, spec)))) return false;
        break;
      }
      case '$type': {
        const wanted = (Array.isArray(arg) ? arg : [arg]).map((t) => {
          if (typeof t === 'string') return t;
          if (isNumeric(t)) {
            const name = TYPE_CODES[toNumber(t)];
            if (name) return name;
          }
          throw badValue(`Invalid numerical type code: ${formatValue(t)}`);
        });
        const pred = (c: unknown): boolean => {
          if (c === MISSING) return false;
          const n = typeName(c);
          return wanted.some((w) =>
            w === 'number' ? n === 'int' || n === 'double' || n === 'long' || n === 'decimal' : w === n,
          );
        };
        if (!any(cands, pred)) return false;
        break;
      }
      case '$mod': {
        if (!Array.isArray(arg) || arg.length !== 2) throw badValue('malformed mod, needs to be an array of two numbers');
        const div = toNumber(arg[0]);
        const rem = toNumber(arg[1]);
        if (div === 0) throw badValue('divisor cannot be 0');
        const pred = (c: unknown): boolean => isNumeric(c) && Math.trunc(toNumber(c)) % Math.trunc(div) === Math.trunc(rem);
        if (!any(cands, pred)) return false;
        break;
      }
      case '$comment':
        break;
      case '$bitsAllSet':
      case '$bitsAnySet':
      case '$bitsAllClear':
      case '$bitsAnyClear':
      case '$geoWithin':
      case '$geoIntersects':
      case '$near':
      case '$nearSphere':
      case '$jsonSchema':
      case '$expr':
        throw notSupported(`query operator '${op}'`);
      default:
        throw badValue(`unknown operator: ${op}`);
    }
  }
  return true;
}

function matchField(doc: Doc, path: string, cond: unknown): boolean {
  const cands = resolvePath(doc, path.split('.'));
  if (isOperatorDoc(cond)) return evalOperators(cands, cond);
  return anyMatch(cands, equalityPredicate(cond));
}

function matchDoc(doc: Doc, filter: Doc): boolean {
  for (const [key, cond] of Object.entries(filter)) {
    if (key.startsWith('$')) {
      switch (key) {
        case '$and':
        case '$or':
        case '$nor': {
          if (!Array.isArray(cond) || cond.length === 0) throw badValue(`${key} must be a nonempty array`);
          const subs = cond.map((c) => asDoc(c, key));
          const ok =
            key === '$and'
              ? subs.every((s) => matchDoc(doc, s))
              : key === '$or'
                ? subs.some((s) => matchDoc(doc, s))
                : !subs.some((s) => matchDoc(doc, s));
          if (!ok) return false;
          break;
        }
        case '$comment':
          break;
        case '$expr':
        case '$where':
        case '$text':
        case '$jsonSchema':
        case '$sampleRate':
          throw notSupported(`query operator '${key}'`);
        default:
          throw badValue(`unknown top level operator: ${key}`);
      }
      continue;
    }
    if (!matchField(doc, key, cond)) return false;
  }
  return true;
}

function validateOperators(ops: Doc): void {
  for (const [op, arg] of Object.entries(ops)) {
    if (op === '$not') {
      if (isOperatorDoc(arg)) validateOperators(arg);
      else if (isRegexValue(arg)) regexFromValue(arg);
      else throw badValue('$not needs a regex or a document');
    } else if (op === '$elemMatch') {
      const spec = asDoc(arg, '$elemMatch');
      const keys = Object.keys(spec);
      if (keys.length > 0 && keys.every((k) => k.startsWith('$') && k !== '$and' && k !== '$or' && k !== '$nor')) {
        validateOperators(spec);
      } else {
        validateFilter(spec);
      }
    } else if (op === '$regex') {
      evalOperators([MISSING], { $regex: arg, $options: ops.$options });
    } else if (op === '$options') {
      if (!('$regex' in ops)) throw badValue('$options needs a $regex');
    } else {
      evalOperators([MISSING], { [op]: arg });
    }
  }
}

/** Walks a filter so that errors surface even when no document is examined. */
function validateFilter(filter: Doc): void {
  for (const [key, cond] of Object.entries(filter)) {
    if (key === '$and' || key === '$or' || key === '$nor') {
      if (!Array.isArray(cond) || cond.length === 0) throw badValue(`${key} must be a nonempty array`);
      for (const c of cond) validateFilter(asDoc(c, key));
    } else if (key.startsWith('$')) {
      matchDoc({}, { [key]: cond });
    } else if (isOperatorDoc(cond)) {
      validateOperators(cond);
    } else if (isRegexValue(cond)) {
      regexFromValue(cond);
    }
  }
}

function compileFilter(filter: Doc | undefined): (doc: Doc) => boolean {
  const f = filter ?? {};
  validateFilter(f);
  return (doc) => matchDoc(doc, f);
}

// ---------------------------------------------------------------------------------------------
// Sorting
// ---------------------------------------------------------------------------------------------

type SortSpec = Array<{ parts: string[]; dir: 1 | -1 }>;

function parseSort(spec: Doc | undefined, stage = false): SortSpec | undefined {
  if (!spec) return undefined;
  const out: SortSpec = [];
  for (const [path, dir] of Object.entries(spec)) {
    if (isPlainDoc(dir)) throw notSupported(`sort by ${JSON.stringify(dir)}`);
    const n = isNumeric(dir) ? toNumber(dir) : Number.NaN;
    if (n !== 1 && n !== -1) {
      throw new CommandError(15975, 'Location15975', '$sort key ordering must be 1 (for ascending) or -1 (for descending)');
    }
    out.push({ parts: path.split('.'), dir: n });
  }
  if (out.length === 0) {
    if (stage) throw new CommandError(15976, 'Location15976', '$sort stage must have at least one sort key');
    return undefined;
  }
  return out;
}

function sortKey(doc: unknown, parts: readonly string[], dir: 1 | -1): unknown {
  const flat: unknown[] = [];
  for (const c of resolvePath(doc, parts)) {
    if (Array.isArray(c)) {
      if (c.length === 0) flat.push(EMPTY_ARRAY);
      else flat.push(...c);
    } else {
      flat.push(c === MISSING ? null : c);
    }
  }
  let best = flat[0];
  for (const v of flat.slice(1)) {
    const r = compareBson(v, best);
    if ((dir === 1 && r < 0) || (dir === -1 && r > 0)) best = v;
  }
  return best;
}

function sortValues<T>(items: T[], spec: SortSpec | undefined, docOf: (item: T) => unknown): T[] {
  if (!spec) return items;
  const decorated = items.map((item) => ({ item, keys: spec.map((s) => sortKey(docOf(item), s.parts, s.dir)) }));
  decorated.sort((a, b) => {
    for (let i = 0; i < spec.length; i++) {
      const r = compareBson(a.keys[i], b.keys[i]);
      if (r !== 0) return r * (spec[i] as { dir: number }).dir;
    }
    return 0;
  });
  return decorated.map((d) => d.item);
}

// ---------------------------------------------------------------------------------------------
// Aggregation expressions
// ---------------------------------------------------------------------------------------------

function fieldPathValue(value: unknown, parts: readonly string[], i = 0): unknown {
  if (i === parts.length) return value;
  if (Array.isArray(value)) {
    return value
      .map((el) => (isPlainDoc(el) || Array.isArray(el) ? fieldPathValue(el, parts, i) : MISSING))
      .filter((x) => x !== MISSING);
  }
  if (isPlainDoc(value)) {
    const part = parts[i] as string;
    return Object.prototype.hasOwnProperty.call(value, part) ? fieldPathValue(value[part], parts, i + 1) : MISSING;
  }
  return MISSING;
}

function evalExpr(expr: unknown, root: Doc): unknown {
  if (typeof expr === 'string') {
    if (expr.startsWith('$$')) {
      const [name, ...rest] = expr.slice(2).split('.');
      if (name === 'ROOT' || name === 'CURRENT') return fieldPathValue(root, rest);
      if (name === 'REMOVE') return MISSING;
      if (name === 'NOW') return new Date();
      throw new CommandError(17276, 'Location17276', `Use of undefined variable: ${name ?? ''}`);
    }
    if (expr.startsWith('$')) {
      if (expr.length === 1) throw new CommandError(16872, 'Location16872', "'$' by itself is not a valid FieldPath");
      return fieldPathValue(root, expr.slice(1).split('.'));
    }
    return expr;
  }
  if (Array.isArray(expr)) return expr.map((e) => {
    const v = evalExpr(e, root);
    return v === MISSING ? null : v;
  });
  if (isPlainDoc(expr)) {
    const keys = Object.keys(expr);
    const first = keys[0];
    if (keys.length === 1 && first !== undefined && first.startsWith('$')) return evalOperator(first, expr[first], root);
    const out: Doc = {};
    for (const k of keys) {
      if (k.startsWith('$')) {
        throw new CommandError(16410, 'Location16410', `FieldPath field names may not start with '$'. Consider using $getField or $setField.`);
      }
      const v = evalExpr(expr[k], root);
      if (v !== MISSING) out[k] = v;
    }
    return out;
  }
  return expr;
}

const EXPRESSION_OPERATORS = new Set([
  '$literal',
  '$ifNull',
  '$cond',
  '$eq',
  '$ne',
  '$gt',
  '$gte',
  '$lt',
  '$lte',
  '$cmp',
  '$and',
  '$or',
  '$not',
  '$add',
  '$subtract',
  '$multiply',
  '$divide',
  '$mod',
  '$concat',
  '$toLower',
  '$toUpper',
  '$size',
  '$arrayElemAt',
  '$in',
]);

/** Checks operator names and variables without evaluating (so it works with no documents). */
function validateExpr(expr: unknown): void {
  if (typeof expr === 'string') {
    if (expr.startsWith('$$')) {
      const name = expr.slice(2).split('.')[0];
      if (name !== 'ROOT' && name !== 'CURRENT' && name !== 'REMOVE' && name !== 'NOW') {
        throw new CommandError(17276, 'Location17276', `Use of undefined variable: ${name ?? ''}`);
      }
    } else if (expr === '$') {
      throw new CommandError(16872, 'Location16872', "'$' by itself is not a valid FieldPath");
    }
    return;
  }
  if (Array.isArray(expr)) {
    for (const e of expr) validateExpr(e);
    return;
  }
  if (!isPlainDoc(expr)) return;
  const keys = Object.keys(expr);
  const first = keys[0];
  if (keys.length === 1 && first !== undefined && first.startsWith('$')) {
    if (!EXPRESSION_OPERATORS.has(first)) throw notSupported(`aggregation expression operator '${first}'`);
    if (first === '$literal') return;
    const arg = expr[first];
    if (first === '$cond' && isPlainDoc(arg)) {
      for (const k of Object.keys(arg)) {
        if (k !== 'if' && k !== 'then' && k !== 'else') throw badValue(`Unrecognized parameter to $cond: ${k}`);
      }
      validateExpr([arg.if, arg.then, arg.else]);
      return;
    }
    validateExpr(arg);
    return;
  }
  for (const k of keys) {
    if (k.startsWith('$')) {
      throw new CommandError(16410, 'Location16410', `FieldPath field names may not start with '$'. Consider using $getField or $setField.`);
    }
    validateExpr(expr[k]);
  }
}

function evalOperator(op: string, arg: unknown, root: Doc): unknown {
  if (op === '$literal') return arg;
  const rawArgs = Array.isArray(arg) ? arg : [arg];
  const args = (): unknown[] => rawArgs.map((a) => evalExpr(a, root));
  const isNullish = (v: unknown): boolean => v === MISSING || v === null || v === undefined;
  switch (op) {
    case '$ifNull': {
      const vals = args();
      for (let i = 0; i < vals.length - 1; i++) if (!isNullish(vals[i])) return vals[i];
      return vals[vals.length - 1];
    }
    case '$cond': {
      let parts: unknown[];
      if (Array.isArray(arg)) parts = arg;
      else if (isPlainDoc(arg)) parts = [arg.if, arg.then, arg.else];
      else throw badValue('$cond requires an array or an object');
      return truthy(evalExpr(parts[0], root)) ? evalExpr(parts[1], root) : evalExpr(parts[2], root);
    }
    case '$eq':
    case '$ne':
    case '$gt':
    case '$gte':
    case '$lt':
    case '$lte':
    case '$cmp': {
      const [a, b] = args();
      const r = compareBson(a, b);
      if (op === '$cmp') return r;
      if (op === '$eq') return r === 0;
      if (op === '$ne') return r !== 0;
      if (op === '$gt') return r > 0;
      if (op === '$gte') return r >= 0;
      if (op === '$lt') return r < 0;
      return r <= 0;
    }
    case '$and':
      return args().every(truthy);
    case '$or':
      return args().some(truthy);
    case '$not':
      return !truthy(args()[0]);
    case '$add': {
      const vals = args();
      if (vals.some(isNullish)) return null;
      let date: Date | undefined;
      let sum = 0;
      for (const v of vals) {
        if (v instanceof Date) {
          if (date) throw typeMismatch('only one date allowed in an $add expression');
          date = v;
        } else if (isNumeric(v)) sum += toNumber(v);
        else throw typeMismatch(`$add only supports numeric or date types, not ${typeName(v)}`);
      }
      return date ? new Date(date.getTime() + sum) : (sum);
    }
    case '$subtract': {
      const [a, b] = args();
      if (isNullish(a) || isNullish(b)) return null;
      if (a instanceof Date && b instanceof Date) return a.getTime() - b.getTime();
      if (a instanceof Date && isNumeric(b)) return new Date(a.getTime() - toNumber(b));
      if (isNumeric(a) && isNumeric(b)) return (toNumber(a) - toNumber(b));
      throw typeMismatch(`can't $subtract ${typeName(b)} from ${typeName(a)}`);
    }
    case '$multiply': {
      const vals = args();
      if (vals.some(isNullish)) return null;
      let p = 1;
      for (const v of vals) {
        if (!isNumeric(v)) throw typeMismatch(`$multiply only supports numeric types, not ${typeName(v)}`);
        p *= toNumber(v);
      }
      return (p);
    }
    case '$divide':
    case '$mod': {
      const [a, b] = args();
      if (isNullish(a) || isNullish(b)) return null;
      if (!isNumeric(a) || !isNumeric(b)) throw typeMismatch(`${op} only supports numeric types`);
      if (toNumber(b) === 0) throw badValue(`can't ${op} by zero`);
      return op === '$divide' ? toNumber(a) / toNumber(b) : toNumber(a) % toNumber(b);
    }
    case '$concat': {
      const vals = args();
      if (vals.some(isNullish)) return null;
      for (const v of vals) {
        if (typeof v !== 'string') throw new CommandError(16702, 'Location16702', `$concat only supports strings, not ${typeName(v)}`);
      }
      return vals.join('');
    }
    case '$toLower':
    case '$toUpper': {
      const v = args()[0];
      if (isNullish(v)) return '';
      const s = typeof v === 'string' ? v : isNumeric(v) ? String(toNumber(v)) : formatValue(v);
      return op === '$toLower' ? s.toLowerCase() : s.toUpperCase();
    }
    case '$size': {
      const v = args()[0];
      if (!Array.isArray(v)) {
        throw new CommandError(17124, 'Location17124', `The argument to $size must be an array. Type of argument: ${typeName(v)}`);
      }
      return v.length;
    }
    case '$arrayElemAt': {
      const [a, i] = args();
      if (isNullish(a) || isNullish(i)) return null;
      if (!Array.isArray(a)) throw new CommandError(28689, 'Location28689', `$arrayElemAt's first argument must be an array, but is ${typeName(a)}`);
      let idx = asInt(i, '$arrayElemAt');
      if (idx < 0) idx += a.length;
      return idx >= 0 && idx < a.length ? a[idx] : MISSING;
    }
    case '$in': {
      const [v, arr] = args();
      if (!Array.isArray(arr)) throw new CommandError(40081, 'Location40081', `$in requires an array as a second argument, found: ${typeName(arr)}`);
      return arr.some((x) => bsonEqual(x, v === MISSING ? null : v));
    }
    default:
      throw notSupported(`aggregation expression operator '${op}'`);
  }
}

// ---------------------------------------------------------------------------------------------
// Projection
// ---------------------------------------------------------------------------------------------

type ProjTree = { [key: string]: ProjTree | true };

function addToTree(tree: ProjTree, parts: readonly string[], path: string): void {
  let cur = tree;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as string;
    const existing = cur[part];
    if (i === parts.length - 1) {
      if (existing !== undefined) throw new CommandError(31250, 'Location31250', `Path collision at ${path}`);
      cur[part] = true;
      return;
    }
    if (existing === true) throw new CommandError(31249, 'Location31249', `Path collision at ${path} remaining portion ${parts.slice(i + 1).join('.')}`);
    if (existing === undefined) {
      const next: ProjTree = {};
      cur[part] = next;
      cur = next;
    } else {
      cur = existing;
    }
  }
}

function pickTree(doc: Doc, tree: ProjTree): Doc {
  const out: Doc = {};
  for (const [k, v] of Object.entries(doc)) {
    const t = tree[k];
    if (t === undefined) continue;
    if (t === true) out[k] = v;
    else if (isPlainDoc(v)) out[k] = pickTree(v, t);
    else if (Array.isArray(v)) out[k] = pickArray(v, t);
  }
  return out;
}

function pickArray(arr: unknown[], tree: ProjTree): unknown[] {
  const out: unknown[] = [];
  for (const el of arr) {
    if (isPlainDoc(el)) out.push(pickTree(el, tree));
    else if (Array.isArray(el)) out.push(pickArray(el, tree));
  }
  return out;
}

function removeTree(value: unknown, tree: ProjTree): void {
  if (Array.isArray(value)) {
    for (const el of value) removeTree(el, tree);
    return;
  }
  if (!isPlainDoc(value)) return;
  for (const [k, t] of Object.entries(tree)) {
    if (!Object.prototype.hasOwnProperty.call(value, k)) continue;
    if (t === true) delete value[k];
    else removeTree(value[k], t);
  }
}

function flattenProjection(spec: Doc, prefix: string, out: Array<[string, unknown]>): void {
  for (const [k, v] of Object.entries(spec)) {
    const path = prefix ? `${prefix}.${k}` : k;
    if (k.startsWith('$')) throw notSupported(`projection operator '${k}'`);
    if (path.endsWith('.$')) throw notSupported(`positional projection '${path}'`);
    if (isPlainDoc(v) && !isOperatorDoc(v)) {
      flattenProjection(v, path, out);
    } else {
      if (isOperatorDoc(v)) {
        const op = Object.keys(v)[0] as string;
        if (op === '$slice' || op === '$elemMatch' || op === '$meta') throw notSupported(`projection operator '${op}'`);
      }
      out.push([path, v]);
    }
  }
}

/** Returns a function producing a NEW projected document (input is not modified). */
function compileProjection(spec: Doc | undefined, idDefault = true): ((doc: Doc) => Doc) | undefined {
  if (!spec || Object.keys(spec).length === 0) return undefined;
  const entries: Array<[string, unknown]> = [];
  flattenProjection(spec, '', entries);
  const include: ProjTree = {};
  const exclude: ProjTree = {};
  const computed: Array<[string[], unknown]> = [];
  let idMode: 'default' | 'include' | 'exclude' | 'computed' = 'default';
  let hasInclude = false;
  let hasExclude = false;
  for (const [path, v] of entries) {
    const parts = path.split('.');
    const isFlag = typeof v === 'boolean' || isNumeric(v);
    if (isFlag) {
      const inc = truthy(v);
      if (path === '_id') {
        idMode = inc ? 'include' : 'exclude';
        continue;
      }
      if (inc) {
        if (hasExclude) throw new CommandError(31253, 'Location31253', `Cannot do inclusion on field ${path} in exclusion projection`);
        hasInclude = true;
        addToTree(include, parts, path);
      } else {
        if (hasInclude || computed.length) throw new CommandError(31254, 'Location31254', `Cannot do exclusion on field ${path} in inclusion projection`);
        hasExclude = true;
        addToTree(exclude, parts, path);
      }
    } else {
      if (hasExclude) throw new CommandError(31254, 'Location31254', `Cannot do computed field ${path} in exclusion projection`);
      validateExpr(v);
      if (path === '_id') idMode = 'computed';
      computed.push([parts, v]);
    }
  }
  if (hasExclude || (!hasInclude && computed.length === 0)) {
    if (idMode === 'exclude' || (idMode === 'default' && !idDefault)) addToTree(exclude, ['_id'], '_id');
    return (doc) => {
      const out = cloneDoc(doc);
      removeTree(out, exclude);
      return out;
    };
  }
  const keepId = idMode === 'include' || (idMode === 'default' && idDefault);
  return (doc) => {
    let out = pickTree(doc, include);
    if (keepId && '_id' in doc) out._id = doc._id;
    out = idFirst(out);
    for (const [parts, expr] of computed) {
      const v = evalExpr(expr, doc);
      if (v !== MISSING) setExact(out, parts, v);
    }
    return cloneDoc(idFirst(out));
  };
}

// ---------------------------------------------------------------------------------------------
// Update operators
// ---------------------------------------------------------------------------------------------

const UPDATE_OPERATORS = new Set([
  '$set',
  '$unset',
  '$inc',
  '$mul',
  '$min',
  '$max',
  '$rename',
  '$currentDate',
  '$setOnInsert',
  '$push',
  '$addToSet',
  '$pull',
  '$pullAll',
  '$pop',
]);

function isOperatorUpdate(u: Doc): boolean {
  const first = Object.keys(u)[0];
  return first !== undefined && first.startsWith('$');
}

function checkUpdateConflicts(u: Doc): void {
  const paths: string[] = [];
  for (const [op, arg] of Object.entries(u)) {
    const fields = asDoc(arg, op);
    for (const [path, v] of Object.entries(fields)) {
      paths.push(path);
      if (op === '$rename') {
        if (typeof v !== 'string') throw badValue(`The 'to' field for $rename must be a string: ${path}: ${formatValue(v)}`);
        paths.push(v);
      }
    }
  }
  for (let i = 0; i < paths.length; i++) {
    for (let j = i + 1; j < paths.length; j++) {
      const a = paths[i] as string;
      const b = paths[j] as string;
      if (a === b || a.startsWith(`${b}.`) || b.startsWith(`${a}.`)) {
        throw new CommandError(40, 'ConflictingUpdateOperators', `Updating the path '${b}' would create a conflict at '${a.length < b.length ? a : b}'`);
      }
    }
  }
}

function addNumbers(a: unknown, b: unknown, op: '$inc' | '$mul'): unknown {
  if (isLong(a) || isLong(b)) {
    if (isIntegerLike(a) && isIntegerLike(b)) {
      const la = isLong(a) ? a : Long.fromNumber(toNumber(a));
      const lb = isLong(b) ? b : Long.fromNumber(toNumber(b));
      return op === '$inc' ? la.add(lb) : la.multiply(lb);
    }
  }
  return op === '$inc' ? toNumber(a) + toNumber(b) : toNumber(a) * toNumber(b);
}

function describeDoc(doc: Doc): string {
  return `{_id: ${formatValue(doc._id)}}`;
}

function applyOperators(original: Doc, u: Doc, isInsert: boolean): Doc {
  checkUpdateConflicts(u);
  const doc = cloneDoc(original);
  for (const [op, arg] of Object.entries(u)) {
    if (!UPDATE_OPERATORS.has(op)) {
      if (op === '$bit') throw notSupported('update operator $bit');
      throw failedToParse(`Unknown modifier: ${op}. Expected a valid update modifier or pipeline-style update specified as an array`);
    }
    const fields = asDoc(arg, op);
    for (const [path, rawValue] of Object.entries(fields)) {
      const parts = splitUpdatePath(path);
      const value = cloneValue(rawValue);
      const current = getExact(doc, parts);
      switch (op) {
        case '$set':
          setExact(doc, parts, value);
          break;
        case '$setOnInsert':
          if (isInsert) setExact(doc, parts, value);
          break;
        case '$unset':
          unsetExact(doc, parts);
          break;
        case '$inc':
        case '$mul': {
          if (!isNumeric(value)) {
            throw typeMismatch(`Cannot ${op === '$inc' ? 'increment' : 'multiply'} with non-numeric argument: {${path}: ${formatValue(value)}}`);
          }
          if (current === MISSING) {
            setExact(doc, parts, op === '$inc' ? value : isLong(value) ? Long.ZERO : 0);
          } else if (!isNumeric(current)) {
            throw typeMismatch(`Cannot apply ${op} to a value of non-numeric type. ${describeDoc(doc)} has the field '${parts[parts.length - 1] ?? path}' of non-numeric type ${typeName(current)}`);
          } else {
            setExact(doc, parts, addNumbers(current, value, op));
          }
          break;
        }
        case '$min':
        case '$max': {
          const r = current === MISSING ? 0 : compareBson(value, current);
          if (current === MISSING || (op === '$min' ? r < 0 : r > 0)) setExact(doc, parts, value);
          break;
        }
        case '$rename': {
          if (current === MISSING) break;
          const target = splitUpdatePath(String(rawValue));
          unsetExact(doc, parts);
          setExact(doc, target, current);
          break;
        }
        case '$currentDate': {
          let type = 'date';
          if (isPlainDoc(value)) {
            const t = value.$type;
            if (t !== 'date' && t !== 'timestamp') {
              throw badValue("The '$type' string field is required to be 'date' or 'timestamp': {$currentDate: {field : {$type: 'date'}}}");
            }
            type = t;
          } else if (typeof value !== 'boolean') {
            throw badValue(`${path} is not valid type for $currentDate. Please use a boolean ('true') or a $type expression ({$type: 'timestamp/date'}).`);
          }
          const now = new Date();
          setExact(doc, parts, type === 'date' ? now : new Timestamp({ t: Math.floor(now.getTime() / 1000), i: 1 }));
          break;
        }
        case '$push':
        case '$addToSet': {
          let arr: unknown[];
          if (current === MISSING) arr = [];
          else if (Array.isArray(current)) arr = current;
          else {
            throw badValue(`The field '${path}' must be an array but is of type ${typeName(current)} in document ${describeDoc(doc)}`);
          }
          let items: unknown[] = [value];
          let position: number | undefined;
          let slice: number | undefined;
          let sort: unknown;
          if (isPlainDoc(value) && '$each' in value) {
            const each = value.$each;
            if (!Array.isArray(each)) throw badValue(`The argument to $each in ${op} must be an array but it was of type: ${typeName(each)}`);
            items = each;
            for (const [mod, modArg] of Object.entries(value)) {
              if (mod === '$each') continue;
              if (op === '$addToSet') throw badValue(`Found unexpected fields after $each in $addToSet: ${formatValue(value)}`);
              if (mod === '$position') position = asInt(modArg, '$position');
              else if (mod === '$slice') slice = asInt(modArg, '$slice');
              else if (mod === '$sort') sort = modArg;
              else throw badValue(`Unrecognized clause in $push: ${mod}`);
            }
          }
          if (op === '$addToSet') {
            for (const it of items) if (!arr.some((e) => bsonEqual(e, it))) arr.push(it);
          } else {
            let pos = position === undefined ? arr.length : position < 0 ? Math.max(0, arr.length + position) : Math.min(position, arr.length);
            for (const it of items) arr.splice(pos++, 0, it);
            if (sort !== undefined) {
              let sorted: unknown[];
              if (isPlainDoc(sort)) {
                sorted = sortValues(arr, parseSort(sort), (x) => x);
              } else {
                const dir = toNumber(sort);
                if (dir !== 1 && dir !== -1) throw badValue('The $sort element value must be either 1 or -1');
                sorted = [...arr].sort((a, b) => compareBson(a, b) * dir);
              }
              arr.splice(0, arr.length, ...sorted);
            }
            if (slice !== undefined) {
              const kept = slice >= 0 ? arr.slice(0, slice) : arr.slice(Math.max(0, arr.length + slice));
              arr.splice(0, arr.length, ...kept);
            }
          }
          if (current === MISSING) setExact(doc, parts, arr);
          break;
        }
        case '$pull':
        case '$pullAll': {
          if (current === MISSING) break;
          if (!Array.isArray(current)) throw badValue(`Cannot apply ${op} to a non-array value`);
          let remove: (e: unknown) => boolean;
          if (op === '$pullAll') {
            if (!Array.isArray(value)) throw badValue(`$pullAll requires an array argument but was given a ${typeName(value)}`);
            remove = (e) => value.some((x) => bsonEqual(e, x));
          } else if (isOperatorDoc(value)) {
            const cond = value;
            remove = (e) => evalOperators([e], cond);
          } else if (isPlainDoc(value)) {
            const cond = value;
            remove = (e) => isPlainDoc(e) && matchDoc(e, cond);
          } else if (isRegexValue(value)) {
            remove = regexPredicate(regexFromValue(value), value);
          } else {
            remove = (e) => bsonEqual(e, value);
          }
          const kept = current.filter((e) => !remove(e));
          current.splice(0, current.length, ...kept);
          break;
        }
        case '$pop': {
          if (current === MISSING) break;
          if (!Array.isArray(current)) throw typeMismatch(`Path '${path}' contains an element of non-array type '${typeName(current)}'`);
          const dir = toNumber(value);
          if (dir !== 1 && dir !== -1) throw failedToParse(`$pop expects 1 or -1, found: ${formatValue(value)}`);
          if (dir === 1) current.pop();
          else current.shift();
          break;
        }
      }
    }
  }
  if ('_id' in original && (!('_id' in doc) || !bsonEqual(doc._id, original._id))) {
    throw new CommandError(66, 'ImmutableField', "Performing an update on the path '_id' would modify the immutable field '_id'");
  }
  return idFirst(doc);
}

function applyReplacement(original: Doc, u: Doc): Doc {
  for (const k of Object.keys(u)) {
    if (k.startsWith('$')) {
      throw badValue(`The dollar ($) prefixed field '${k}' in '${k}' is not allowed in the context of an update's replacement document. Consider using an aggregation pipeline with $replaceWith.`);
    }
  }
  const doc = cloneDoc(u);
  if ('_id' in original) {
    if ('_id' in doc && !bsonEqual(doc._id, original._id)) {
      throw new CommandError(66, 'ImmutableField', `After applying the update, the (immutable) field '_id' was found to have been altered to _id: ${formatValue(doc._id)}`);
    }
    doc._id = original._id;
  }
  return idFirst(doc);
}

function applyUpdate(original: Doc, u: Doc, isInsert: boolean): Doc {
  return isOperatorUpdate(u) ? applyOperators(original, u, isInsert) : applyReplacement(original, u);
}

function validateUpdateDoc(u: unknown): Doc {
  if (Array.isArray(u)) throw notSupported('pipeline-style update');
  const doc = asDoc(u, 'u');
  if (isOperatorUpdate(doc)) {
    for (const k of Object.keys(doc)) {
      if (!k.startsWith('$')) {
        throw failedToParse(`Unknown modifier: ${k}. Expected a valid update modifier or pipeline-style update specified as an array`);
      }
    }
  }
  return doc;
}

/** Seed document for an upsert: equality fields of the query. */
function upsertSeed(filter: Doc, target: Doc = {}): Doc {
  for (const [k, v] of Object.entries(filter)) {
    if (k === '$and' && Array.isArray(v)) {
      for (const sub of v) if (isPlainDoc(sub)) upsertSeed(sub, target);
      continue;
    }
    if (k.startsWith('$')) continue;
    if (isOperatorDoc(v)) {
      if ('$eq' in v) setExact(target, splitUpdatePath(k), cloneValue(v.$eq));
      continue;
    }
    if (isRegexValue(v)) continue;
    setExact(target, splitUpdatePath(k), cloneValue(v));
  }
  return target;
}

// ---------------------------------------------------------------------------------------------
// Storage
// ---------------------------------------------------------------------------------------------

interface IndexDef {
  name: string;
  key: Doc;
  fields: Array<{ path: string; parts: string[] }>;
  unique: boolean;
  sparse: boolean;
  partial: Doc | undefined;
  /** What listIndexes reports. */
  spec: Doc;
  /** Unique indexes only: canonical key -> owning stored document. */
  keyMap: Map<string, Doc> | undefined;
}

interface IndexKey {
  key: string;
  values: unknown[];
}

class Collection {
  readonly docs = new Set<Doc>();
  readonly indexes: IndexDef[] = [];
  readonly uuid = new UUID();
  constructor(
    readonly db: string,
    readonly name: string,
  ) {
    this.indexes.push(makeIndexDef({ v: 2, key: { _id: 1 }, name: '_id_' }, true));
  }

  get ns(): string {
    return `${this.db}.${this.name}`;
  }

  indexKeys(def: IndexDef, doc: Doc): IndexKey[] {
    if (def.partial && !matchDoc(doc, def.partial)) return [];
    const perField: unknown[][] = [];
    let anyPresent = false;
    for (const f of def.fields) {
      const vals: unknown[] = [];
      for (const c of resolvePath(doc, f.parts)) {
        if (c !== MISSING) anyPresent = true;
        if (Array.isArray(c)) {
          if (c.length === 0) vals.push(EMPTY_ARRAY);
          else vals.push(...c);
        } else {
          vals.push(c === MISSING ? null : c);
        }
      }
      perField.push(vals);
    }
    if (def.sparse && !anyPresent) return [];
    let combos: unknown[][] = [[]];
    for (const vals of perField) {
      const next: unknown[][] = [];
      for (const combo of combos) for (const v of vals) next.push([...combo, v]);
      combos = next;
    }
    const seen = new Set<string>();
    const out: IndexKey[] = [];
    for (const values of combos) {
      const key = values.map(canon).join('|');
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({ key, values });
    }
    return out;
  }

  duplicateError(def: IndexDef, values: unknown[]): CommandError {
    const keyValue: Doc = {};
    def.fields.forEach((f, i) => {
      const v = values[i];
      keyValue[f.path] = v === EMPTY_ARRAY ? undefined : v;
    });
    const rendered = def.fields.map((f, i) => `${f.path}: ${formatValue(values[i] === EMPTY_ARRAY ? undefined : values[i])}`).join(', ');
    return new CommandError(
      11000,
      'DuplicateKey',
      `E11000 duplicate key error collection: ${this.ns} index: ${def.name} dup key: { ${rendered} }`,
      { keyPattern: cloneDoc(def.key), keyValue: cloneDoc(keyValue) },
    );
  }

  /** Throws on a unique-index conflict with any document other than `self`. */
  checkUnique(doc: Doc, self: Doc | undefined): Map<IndexDef, IndexKey[]> {
    const keys = new Map<IndexDef, IndexKey[]>();
    for (const def of this.indexes) {
      if (!def.keyMap) continue;
      const ks = this.indexKeys(def, doc);
      for (const k of ks) {
        const owner = def.keyMap.get(k.key);
        if (owner !== undefined && owner !== self) throw this.duplicateError(def, k.values);
      }
      keys.set(def, ks);
    }
    return keys;
  }

  private removeKeys(doc: Doc): void {
    for (const def of this.indexes) {
      if (!def.keyMap) continue;
      for (const k of this.indexKeys(def, doc)) if (def.keyMap.get(k.key) === doc) def.keyMap.delete(k.key);
    }
  }

  private addKeys(doc: Doc, keys: Map<IndexDef, IndexKey[]>): void {
    for (const [def, ks] of keys) for (const k of ks) def.keyMap?.set(k.key, doc);
  }

  insert(input: Doc): Doc {
    let doc = cloneDoc(input);
    if (!('_id' in doc)) doc = { _id: new ObjectId(), ...doc };
    if (Array.isArray(doc._id)) throw badValue("can't use an array for _id");
    if (isRegexValue(doc._id)) throw badValue("can't use a regex for _id");
    if (doc._id === undefined) throw badValue("can't use undefined for _id");
    doc = idFirst(doc);
    checkSize(doc);
    const keys = this.checkUnique(doc, undefined);
    this.docs.add(doc);
    this.addKeys(doc, keys);
    return doc;
  }

  /** Replaces the stored document's content in place. Returns whether anything changed. */
  replace(stored: Doc, next: Doc): boolean {
    checkSize(next);
    const keys = this.checkUnique(next, stored);
    const changed = !bsonIdentical(stored, next);
    if (!changed) return false;
    this.removeKeys(stored);
    for (const k of Object.keys(stored)) delete stored[k];
    Object.assign(stored, next);
    this.addKeys(stored, keys);
    return true;
  }

  remove(stored: Doc): void {
    this.removeKeys(stored);
    this.docs.delete(stored);
  }

  /** Stored (internal) documents matching the filter, in natural or sorted order. */
  select(filter: Doc | undefined, sort?: SortSpec): Doc[] {
    const pred = compileFilter(filter);
    const out: Doc[] = [];
    for (const d of this.docs) if (pred(d)) out.push(d);
    return sortValues(out, sort, (d) => d);
  }
}

function checkSize(doc: Doc): void {
  const size = calculateObjectSize(doc);
  if (size > MAX_BSON_OBJECT_SIZE) {
    throw new CommandError(10334, 'BSONObjectTooLarge', `object to insert too large. size in bytes: ${size}, max size: ${MAX_BSON_OBJECT_SIZE}`);
  }
}

const INDEX_SPEC_FIELDS = new Set([
  'key',
  'name',
  'unique',
  'sparse',
  'partialFilterExpression',
  'expireAfterSeconds',
  'background',
  'hidden',
  'v',
  'ns',
]);

function makeIndexDef(spec: Doc, isIdIndex = false): IndexDef {
  for (const k of Object.keys(spec)) {
    if (k === 'collation' || k === 'weights' || k === 'default_language' || k === 'language_override' || k === 'textIndexVersion' || k === '2dsphereIndexVersion' || k === 'bits' || k === 'min' || k === 'max' || k === 'wildcardProjection' || k === 'storageEngine' || k === 'clustered') {
      throw notSupported(`index option '${k}'`);
    }
    if (!INDEX_SPEC_FIELDS.has(k)) {
      throw new CommandError(197, 'InvalidIndexSpecificationOption', `The field '${k}' is not valid for an index specification. Specification: ${formatValue(spec)}`);
    }
  }
  const key = asDoc(spec.key, 'key');
  const name = spec.name;
  if (typeof name !== 'string' || name === '') throw failedToParse("The 'name' field is a required property of an index specification");
  const fields: IndexDef['fields'] = [];
  for (const [path, dir] of Object.entries(key)) {
    if (typeof dir === 'string') throw notSupported(`index type '${dir}' (${path})`);
    if (path.includes('$**')) throw notSupported('wildcard indexes');
    if (!isNumeric(dir) || toNumber(dir) === 0) {
      throw new CommandError(67, 'CannotCreateIndex', `Values in the index key pattern can't be 0 or non-numeric: ${formatValue(key)}`);
    }
    fields.push({ path, parts: path.split('.') });
  }
  if (fields.length === 0) throw new CommandError(67, 'CannotCreateIndex', 'Index keys cannot be an empty field.');
  const unique = isIdIndex || truthy(spec.unique);
  const partial = optionalDoc(spec.partialFilterExpression, 'partialFilterExpression');
  if (partial) compileFilter(partial);
  const listed: Doc = { v: 2, key: cloneDoc(key), name };
  if (!isIdIndex && truthy(spec.unique)) listed.unique = true;
  if (truthy(spec.sparse)) listed.sparse = true;
  if (partial) listed.partialFilterExpression = cloneDoc(partial);
  if (spec.expireAfterSeconds !== undefined) listed.expireAfterSeconds = spec.expireAfterSeconds;
  if (truthy(spec.hidden)) listed.hidden = true;
  return {
    name,
    key: cloneDoc(key),
    fields,
    unique,
    sparse: truthy(spec.sparse),
    partial,
    spec: listed,
    keyMap: unique ? new Map() : undefined,
  };
}

function sameIndexOptions(a: IndexDef, b: IndexDef): boolean {
  return (
    a.unique === b.unique &&
    a.sparse === b.sparse &&
    canon(a.partial ?? null) === canon(b.partial ?? null) &&
    canon(a.spec.expireAfterSeconds ?? null) === canon(b.spec.expireAfterSeconds ?? null)
  );
}

// ---------------------------------------------------------------------------------------------
// Command dispatch
// ---------------------------------------------------------------------------------------------

const GENERIC_FIELDS = new Set([
  '$db',
  'lsid',
  '$clusterTime',
  '$readPreference',
  'apiVersion',
  'apiStrict',
  'apiDeprecationErrors',
  'writeConcern',
  'readConcern',
  'maxTimeMS',
  'comment',
  '$audit',
  '$client',
  '$configServerState',
  'mayBypassWriteBlocking',
  'clientOperationKey',
  '$queryOptions',
  'txnNumber',
  'autocommit',
  'startTransaction',
  'stmtId',
]);

function checkFields(cmd: string, body: Doc, allowed: readonly string[], unsupported: readonly string[] = []): void {
  for (const [k, v] of Object.entries(body)) {
    if (k === cmd || GENERIC_FIELDS.has(k) || allowed.includes(k)) continue;
    if (unsupported.includes(k) || k === 'rawData' || k === 'let') {
      if (v === undefined || v === false || v === null) continue;
      throw notSupported(`'${k}' on ${cmd}`);
    }
    throw new CommandError(40415, 'Location40415', `BSON field '${cmd}.${k}' is an unknown field.`);
  }
}

interface CursorState {
  ns: string;
  docs: Doc[];
}

interface ConnState {
  id: number;
}

function collectionName(body: Doc, cmd: string): string {
  const name = body[cmd];
  if (typeof name !== 'string') {
    throw new CommandError(73, 'InvalidNamespace', `collection name has invalid type ${typeName(name)}`);
  }
  if (name === '' || name.includes('\0') || name.includes('$')) {
    throw new CommandError(73, 'InvalidNamespace', `Invalid namespace specified '${name}'`);
  }
  return name;
}

function takeBatch(docs: Doc[], n: number): Doc[] {
  const batch: Doc[] = [];
  let bytes = 0;
  while (batch.length < n && docs.length > 0) {
    const next = docs[0] as Doc;
    const size = calculateObjectSize(next);
    if (batch.length > 0 && bytes + size > MAX_BATCH_BYTES) break;
    batch.push(next);
    bytes += size;
    docs.shift();
  }
  return batch;
}

function writeErrorFrom(index: number, e: unknown): Doc {
  if (e instanceof CommandError) return { index, code: e.code, codeName: e.codeName, ...e.extra, errmsg: e.message };
  return { index, code: 1, codeName: 'InternalError', errmsg: `mongo-standin internal error: ${(e as Error).message}` };
}

class Engine {
  private readonly dbs = new Map<string, Map<string, Collection>>();
  private readonly cursors = new Map<string, CursorState>();
  private cursorCounter = 0n;
  private readonly cursorBase = (BigInt(`0x${randomBytes(6).toString('hex')}`) << 12n) + 1n;

  private getColl(db: string, name: string): Collection | undefined {
    return this.dbs.get(db)?.get(name);
  }

  private ensureColl(db: string, name: string): Collection {
    let colls = this.dbs.get(db);
    if (!colls) {
      colls = new Map();
      this.dbs.set(db, colls);
    }
    let coll = colls.get(name);
    if (!coll) {
      coll = new Collection(db, name);
      colls.set(name, coll);
    }
    return coll;
  }

  private dropColl(db: string, name: string): void {
    const colls = this.dbs.get(db);
    if (!colls) return;
    colls.delete(name);
    if (colls.size === 0) this.dbs.delete(db);
    const ns = `${db}.${name}`;
    for (const [id, c] of this.cursors) if (c.ns === ns) this.cursors.delete(id);
  }

  private cursorReply(ns: string, docs: Doc[], batchSize: number | undefined, singleBatch: boolean): Doc {
    const firstBatch = takeBatch(docs, batchSize ?? DEFAULT_FIRST_BATCH);
    let id = Long.ZERO;
    if (docs.length > 0 && !singleBatch) {
      id = Long.fromBigInt(this.cursorBase + this.cursorCounter++);
      this.cursors.set(id.toString(), { ns, docs });
    }
    return { cursor: { firstBatch, id, ns }, ok: 1 };
  }

  private cursorBatchSize(body: Doc): number | undefined {
    const cursor = optionalDoc(body.cursor, 'cursor');
    if (!cursor) return undefined;
    for (const k of Object.keys(cursor)) {
      if (k !== 'batchSize') throw new CommandError(40415, 'Location40415', `BSON field 'cursor.${k}' is an unknown field.`);
    }
    if (cursor.batchSize === undefined) return undefined;
    const n = asInt(cursor.batchSize, 'cursor.batchSize');
    if (n < 0) throw badValue(`BatchSize value must be non-negative, but received: ${n}`);
    return n;
  }

  private validateHint(coll: Collection | undefined, hint: unknown): void {
    if (hint === undefined || hint === null || !coll) return;
    if (typeof hint === 'string') {
      if (!coll.indexes.some((i) => i.name === hint)) throw badValue('hint provided does not correspond to an existing index');
      return;
    }
    const h = asDoc(hint, 'hint');
    if ('$natural' in h) return;
    if (!coll.indexes.some((i) => canon(i.key) === canon(h))) throw badValue('hint provided does not correspond to an existing index');
  }

  run(body: Doc, conn: ConnState): Doc {
    try {
      return this.dispatch(body, conn);
    } catch (e) {
      if (e instanceof CommandError) return { ok: 0, errmsg: e.message, code: e.code, codeName: e.codeName, ...e.extra };
      return { ok: 0, errmsg: `mongo-standin internal error: ${(e as Error).message}`, code: 1, codeName: 'InternalError' };
    }
  }

  private dispatch(body: Doc, conn: ConnState): Doc {
    const cmd = Object.keys(body)[0];
    if (cmd === undefined) throw failedToParse('Empty command object');
    const db = body.$db;
    if (typeof db !== 'string' || db === '') {
      throw new CommandError(40571, 'Location40571', 'OP_MSG requests require a $db argument');
    }
    if (body.txnNumber !== undefined || body.startTransaction !== undefined || cmd === 'commitTransaction' || cmd === 'abortTransaction') {
      throw new CommandError(20, 'IllegalOperation', 'Transaction numbers are only allowed on a replica set member or mongos');
    }
    switch (cmd) {
      case 'hello':
      case 'isMaster':
      case 'ismaster':
        return this.hello(conn);
      case 'ping':
        return { ok: 1 };
      case 'buildInfo':
      case 'buildinfo':
        return {
          version: '7.0.0',
          gitVersion: 'mongo-standin',
          versionArray: [7, 0, 0, 0],
          bits: 64,
          debug: false,
          maxBsonObjectSize: MAX_BSON_OBJECT_SIZE,
          storageEngines: ['ephemeralForTest'],
          javascriptEngine: 'none',
          modules: [],
          ok: 1,
        };
      case 'getParameter':
        return this.getParameter(body);
      case 'endSessions':
        return { ok: 1 };
      case 'killCursors':
        return this.killCursors(body, db);
      case 'insert':
        return this.insert(body, db);
      case 'find':
        return this.find(body, db);
      case 'getMore':
        return this.getMore(body, db);
      case 'update':
        return this.update(body, db);
      case 'delete':
        return this.delete(body, db);
      case 'findAndModify':
      case 'findandmodify':
        return this.findAndModify(body, db, cmd);
      case 'count':
        return this.count(body, db);
      case 'aggregate':
        return this.aggregate(body, db);
      case 'distinct':
        return this.distinct(body, db);
      case 'createIndexes':
        return this.createIndexes(body, db);
      case 'listIndexes':
        return this.listIndexes(body, db);
      case 'dropIndexes':
      case 'deleteIndexes':
        return this.dropIndexes(body, db, cmd);
      case 'listCollections':
        return this.listCollections(body, db);
      case 'create':
        return this.create(body, db);
      case 'drop':
        return this.drop(body, db);
      case 'dropDatabase':
        checkFields(cmd, body, []);
        this.dropDatabase(db);
        return { dropped: db, ok: 1 };
      case 'listDatabases':
        return this.listDatabases(body, db);
      case 'saslStart':
      case 'saslContinue':
      case 'authenticate':
      case 'logout':
        throw notSupported(`authentication ('${cmd}')`);
      case 'explain':
        throw notSupported('explain');
      default:
        throw new CommandError(59, 'CommandNotFound', `no such command: '${cmd}'`);
    }
  }

  private hello(conn: ConnState): Doc {
    return {
      helloOk: true,
      ismaster: true,
      isWritablePrimary: true,
      maxBsonObjectSize: MAX_BSON_OBJECT_SIZE,
      maxMessageSizeBytes: MAX_MESSAGE_SIZE,
      maxWriteBatchSize: MAX_WRITE_BATCH_SIZE,
      localTime: new Date(),
      logicalSessionTimeoutMinutes: 30,
      connectionId: conn.id,
      minWireVersion: 0,
      maxWireVersion: 21,
      readOnly: false,
      ok: 1,
    };
  }

  private getParameter(body: Doc): Doc {
    const known: Doc = {
      featureCompatibilityVersion: { version: '7.0' },
      authenticationMechanisms: [],
      maxBSONObjectSize: MAX_BSON_OBJECT_SIZE,
    };
    if (body.getParameter === '*') return { ...known, ok: 1 };
    const out: Doc = {};
    for (const k of Object.keys(body)) {
      if (k === 'getParameter' || GENERIC_FIELDS.has(k)) continue;
      if (!(k in known)) throw new CommandError(72, 'InvalidOptions', `no option found to get: ${k}`);
      out[k] = known[k];
    }
    if (Object.keys(out).length === 0) throw new CommandError(72, 'InvalidOptions', 'no option found to get');
    return { ...out, ok: 1 };
  }

  private killCursors(body: Doc, db: string): Doc {
    checkFields('killCursors', body, ['cursors']);
    const name = collectionName(body, 'killCursors');
    const ids = body.cursors;
    if (!Array.isArray(ids)) throw typeMismatch("BSON field 'killCursors.cursors' is missing or not an array");
    const killed: Long[] = [];
    const notFound: Long[] = [];
    for (const raw of ids) {
      const id = isLong(raw) ? raw : Long.fromNumber(toNumber(raw));
      const c = this.cursors.get(id.toString());
      if (c && c.ns === `${db}.${name}`) {
        this.cursors.delete(id.toString());
        killed.push(id);
      } else {
        notFound.push(id);
      }
    }
    return { cursorsKilled: killed, cursorsNotFound: notFound, cursorsAlive: [], cursorsUnknown: [], ok: 1 };
  }

  private insert(body: Doc, db: string): Doc {
    checkFields('insert', body, ['documents', 'ordered', 'bypassDocumentValidation']);
    const name = collectionName(body, 'insert');
    const docs = body.documents;
    if (!Array.isArray(docs)) throw typeMismatch("BSON field 'insert.documents' is missing or is not an array");
    const ordered = body.ordered !== false;
    const coll = this.ensureColl(db, name);
    const writeErrors: Doc[] = [];
    let n = 0;
    docs.forEach((d, i) => {
      if (ordered && writeErrors.length) return;
      try {
        coll.insert(asDoc(d, `documents.${i}`));
        n++;
      } catch (e) {
        writeErrors.push(writeErrorFrom(i, e));
      }
    });
    return writeErrors.length ? { n, writeErrors, ok: 1 } : { n, ok: 1 };
  }

  private find(body: Doc, db: string): Doc {
    checkFields(
      'find',
      body,
      ['filter', 'sort', 'projection', 'hint', 'skip', 'limit', 'batchSize', 'singleBatch', 'noCursorTimeout', 'allowPartialResults', 'allowDiskUse', 'returnKey', 'showRecordId'],
      ['max', 'min', 'tailable', 'awaitData', 'oplogReplay', 'collation', 'readOnce', 'ntoreturn'],
    );
    if (truthy(body.returnKey)) throw notSupported("'returnKey' on find");
    if (truthy(body.showRecordId)) throw notSupported("'showRecordId' on find");
    const name = collectionName(body, 'find');
    const filter = optionalDoc(body.filter, 'filter');
    const sort = parseSort(optionalDoc(body.sort, 'sort'));
    const projection = compileProjection(optionalDoc(body.projection, 'projection'));
    const skip = body.skip === undefined ? 0 : asInt(body.skip, 'skip');
    if (skip < 0) throw badValue(`Skip value must be non-negative, but received: ${skip}`);
    let limit = body.limit === undefined ? 0 : asInt(body.limit, 'limit');
    let singleBatch = truthy(body.singleBatch);
    if (limit < 0) {
      limit = -limit;
      singleBatch = true;
    }
    let batchSize = body.batchSize === undefined ? undefined : asInt(body.batchSize, 'batchSize');
    if (batchSize !== undefined && batchSize < 0) throw badValue(`BatchSize value must be non-negative, but received: ${batchSize}`);
    const coll = this.getColl(db, name);
    this.validateHint(coll, body.hint);
    compileFilter(filter);
    let docs = coll ? coll.select(filter, sort) : [];
    docs = docs.slice(skip, limit > 0 ? skip + limit : undefined);
    const out = docs.map((d) => (projection ? projection(d) : cloneDoc(d)));
    if (batchSize === undefined && limit > 0) batchSize = Math.min(limit, DEFAULT_FIRST_BATCH);
    return this.cursorReply(`${db}.${name}`, out, batchSize, singleBatch);
  }

  private getMore(body: Doc, db: string): Doc {
    checkFields('getMore', body, ['collection', 'batchSize', 'term', 'lastKnownCommittedOpTime']);
    const raw = body.getMore;
    if (!isLong(raw) && typeof raw !== 'number') {
      throw typeMismatch(`BSON field 'getMore.getMore' is the wrong type '${typeName(raw)}', expected type 'long'`);
    }
    const id = isLong(raw) ? raw : Long.fromNumber(raw);
    const collection = body.collection;
    if (typeof collection !== 'string') throw typeMismatch("BSON field 'getMore.collection' is missing or not a string");
    const cursor = this.cursors.get(id.toString());
    if (!cursor) throw new CommandError(43, 'CursorNotFound', `cursor id ${id.toString()} not found`);
    const ns = `${db}.${collection}`;
    if (cursor.ns !== ns && !(cursor.ns === `${db}.$cmd.listCollections` && collection === '$cmd.listCollections')) {
      throw new CommandError(13, 'Unauthorized', `Requested getMore on namespace '${ns}', but cursor belongs to a different namespace ${cursor.ns}`);
    }
    const batchSize = body.batchSize === undefined ? Number.MAX_SAFE_INTEGER : asInt(body.batchSize, 'batchSize');
    const nextBatch = takeBatch(cursor.docs, batchSize <= 0 ? Number.MAX_SAFE_INTEGER : batchSize);
    let outId = id;
    if (cursor.docs.length === 0) {
      this.cursors.delete(id.toString());
      outId = Long.ZERO;
    }
    return { cursor: { nextBatch, id: outId, ns: cursor.ns }, ok: 1 };
  }

  private upsertInsert(coll: Collection, q: Doc, u: Doc): Doc {
    const seed = upsertSeed(q);
    let doc: Doc;
    if (isOperatorUpdate(u)) {
      doc = applyOperators(seed, u, true);
      if ('_id' in seed && !bsonEqual(seed._id, doc._id)) {
        throw new CommandError(66, 'ImmutableField', "Performing an update on the path '_id' would modify the immutable field '_id'");
      }
    } else {
      doc = applyReplacement({}, u);
      if ('_id' in seed && !('_id' in doc)) doc = { _id: seed._id, ...doc };
    }
    return coll.insert(doc);
  }

  private update(body: Doc, db: string): Doc {
    checkFields('update', body, ['updates', 'ordered', 'bypassDocumentValidation']);
    const name = collectionName(body, 'update');
    const updates = body.updates;
    if (!Array.isArray(updates)) throw typeMismatch("BSON field 'update.updates' is missing or is not an array");
    const ordered = body.ordered !== false;
    let n = 0;
    let nModified = 0;
    const upserted: Doc[] = [];
    const writeErrors: Doc[] = [];
    for (let i = 0; i < updates.length; i++) {
      if (ordered && writeErrors.length) break;
      try {
        const st = asDoc(updates[i], `updates.${i}`);
        for (const [k, v] of Object.entries(st)) {
          if (['q', 'u', 'multi', 'upsert', 'hint', 'sort', 'upsertSupplied'].includes(k)) continue;
          if (['arrayFilters', 'collation', 'c'].includes(k)) {
            if (v === undefined || v === null) continue;
            throw notSupported(`'${k}' in update statements`);
          }
          throw new CommandError(40415, 'Location40415', `BSON field 'update.updates.${k}' is an unknown field.`);
        }
        const q = optionalDoc(st.q, 'q') ?? {};
        const u = validateUpdateDoc(st.u);
        const multi = truthy(st.multi);
        if (multi && !isOperatorUpdate(u) && Object.keys(u).length > 0) {
          throw failedToParse('multi update is not supported for replacement-style update');
        }
        if (multi && st.sort !== undefined) throw failedToParse('Cannot specify sort with multi=true');
        const sort = parseSort(optionalDoc(st.sort, 'sort'));
        const existing = this.getColl(db, name);
        this.validateHint(existing, st.hint);
        compileFilter(q);
        const matched = existing ? existing.select(q, sort) : [];
        const targets = multi ? matched : matched.slice(0, 1);
        if (targets.length === 0) {
          if (truthy(st.upsert)) {
            const coll = this.ensureColl(db, name);
            const doc = this.upsertInsert(coll, q, u);
            upserted.push({ index: i, _id: cloneValue(doc._id) });
            n++;
          }
          continue;
        }
        const coll = existing as Collection;
        for (const stored of targets) {
          const next = applyUpdate(stored, u, false);
          n++;
          if (coll.replace(stored, next)) nModified++;
        }
      } catch (e) {
        writeErrors.push(writeErrorFrom(i, e));
      }
    }
    const reply: Doc = { n, nModified };
    if (upserted.length) reply.upserted = upserted;
    if (writeErrors.length) reply.writeErrors = writeErrors;
    reply.ok = 1;
    return reply;
  }

  private delete(body: Doc, db: string): Doc {
    checkFields('delete', body, ['deletes', 'ordered']);
    const name = collectionName(body, 'delete');
    const deletes = body.deletes;
    if (!Array.isArray(deletes)) throw typeMismatch("BSON field 'delete.deletes' is missing or is not an array");
    const ordered = body.ordered !== false;
    let n = 0;
    const writeErrors: Doc[] = [];
    for (let i = 0; i < deletes.length; i++) {
      if (ordered && writeErrors.length) break;
      try {
        const st = asDoc(deletes[i], `deletes.${i}`);
        for (const [k, v] of Object.entries(st)) {
          if (['q', 'limit', 'hint'].includes(k)) continue;
          if (k === 'collation') {
            if (v === undefined || v === null) continue;
            throw notSupported("'collation' in delete statements");
          }
          throw new CommandError(40415, 'Location40415', `BSON field 'delete.deletes.${k}' is an unknown field.`);
        }
        const q = optionalDoc(st.q, 'q') ?? {};
        const limit = st.limit === undefined ? 0 : asInt(st.limit, 'limit');
        if (limit !== 0 && limit !== 1) throw failedToParse(`The limit field in delete objects must be 0 or 1. Got ${limit}`);
        const coll = this.getColl(db, name);
        this.validateHint(coll, st.hint);
        compileFilter(q);
        if (!coll) continue;
        const matched = coll.select(q);
        const targets = limit === 1 ? matched.slice(0, 1) : matched;
        for (const d of targets) coll.remove(d);
        n += targets.length;
      } catch (e) {
        writeErrors.push(writeErrorFrom(i, e));
      }
    }
    return writeErrors.length ? { n, writeErrors, ok: 1 } : { n, ok: 1 };
  }

  private findAndModify(body: Doc, db: string, cmd: string): Doc {
    checkFields(cmd, body, ['query', 'sort', 'remove', 'update', 'new', 'fields', 'upsert', 'bypassDocumentValidation', 'hint'], ['collation', 'arrayFilters']);
    const name = collectionName(body, cmd);
    const query = optionalDoc(body.query, 'query') ?? {};
    const sort = parseSort(optionalDoc(body.sort, 'sort'));
    const projection = compileProjection(optionalDoc(body.fields, 'fields'));
    const remove = truthy(body.remove);
    const returnNew = truthy(body.new);
    const upsert = truthy(body.upsert);
    const hasUpdate = body.update !== undefined && body.update !== null;
    if (remove && hasUpdate) throw failedToParse('Cannot specify both an update and remove=true');
    if (!remove && !hasUpdate) throw failedToParse('Either an update or remove=true must be specified');
    if (remove && returnNew) throw failedToParse('Cannot specify both new=true and remove=true; \'remove\' always returns the deleted document');
    if (remove && upsert) throw failedToParse('Cannot specify both upsert=true and remove=true');
    const u = hasUpdate ? validateUpdateDoc(body.update) : undefined;
    const existing = this.getColl(db, name);
    this.validateHint(existing, body.hint);
    compileFilter(query);
    const target = existing?.select(query, sort)[0];
    const out = (d: Doc | undefined): Doc | null => (d ? (projection ? projection(d) : cloneDoc(d)) : null);
    if (remove) {
      if (target && existing) existing.remove(target);
      return { lastErrorObject: { n: target ? 1 : 0 }, value: out(target), ok: 1 };
    }
    const update = u as Doc;
    if (target && existing) {
      const before = cloneDoc(target);
      const next = applyUpdate(target, update, false);
      existing.replace(target, next);
      return { lastErrorObject: { n: 1, updatedExisting: true }, value: out(returnNew ? target : before), ok: 1 };
    }
    if (upsert) {
      const coll = this.ensureColl(db, name);
      const doc = this.upsertInsert(coll, query, update);
      return {
        lastErrorObject: { n: 1, updatedExisting: false, upserted: cloneValue(doc._id) },
        value: returnNew ? out(doc) : null,
        ok: 1,
      };
    }
    return { lastErrorObject: { n: 0, updatedExisting: false }, value: null, ok: 1 };
  }

  private count(body: Doc, db: string): Doc {
    checkFields('count', body, ['query', 'limit', 'skip', 'hint'], ['collation']);
    const name = collectionName(body, 'count');
    const query = optionalDoc(body.query, 'query');
    const skip = body.skip === undefined ? 0 : asInt(body.skip, 'skip');
    if (skip < 0) throw badValue(`Skip value must be non-negative, but received: ${skip}`);
    const limit = body.limit === undefined ? 0 : Math.abs(asInt(body.limit, 'limit'));
    const coll = this.getColl(db, name);
    this.validateHint(coll, body.hint);
    compileFilter(query);
    let n = coll ? coll.select(query).length : 0;
    n = Math.max(0, n - skip);
    if (limit > 0) n = Math.min(n, limit);
    return { n, ok: 1 };
  }

  private distinct(body: Doc, db: string): Doc {
    checkFields('distinct', body, ['key', 'query', 'hint'], ['collation']);
    const name = collectionName(body, 'distinct');
    const key = body.key;
    if (typeof key !== 'string') throw typeMismatch("BSON field 'distinct.key' is missing or not a string");
    const query = optionalDoc(body.query, 'query');
    const coll = this.getColl(db, name);
    this.validateHint(coll, body.hint);
    compileFilter(query);
    const seen = new Set<string>();
    const values: unknown[] = [];
    for (const d of coll ? coll.select(query) : []) {
      for (const c of resolvePath(d, key.split('.'))) {
        const items = Array.isArray(c) ? c : [c];
        for (const v of items) {
          if (v === MISSING) continue;
          const k = canon(v);
          if (seen.has(k)) continue;
          seen.add(k);
          values.push(cloneValue(v));
        }
      }
    }
    return { values, ok: 1 };
  }

  private aggregate(body: Doc, db: string): Doc {
    checkFields('aggregate', body, ['pipeline', 'cursor', 'allowDiskUse', 'bypassDocumentValidation', 'hint'], ['explain', 'collation', 'exchange']);
    const rawName = body.aggregate;
    if (typeof rawName !== 'string') throw notSupported('database-level aggregate ({aggregate: 1})');
    const name = collectionName(body, 'aggregate');
    const pipeline = body.pipeline;
    if (!Array.isArray(pipeline)) throw typeMismatch("BSON field 'aggregate.pipeline' is missing or not an array");
    if (body.cursor === undefined) {
      throw failedToParse("The 'cursor' option is required, except for aggregate with the explain argument");
    }
    const batchSize = this.cursorBatchSize(body);
    const coll = this.getColl(db, name);
    this.validateHint(coll, body.hint);
    const stages = pipeline.map((s, i) => {
      const stage = asDoc(s, `pipeline.${i}`);
      const keys = Object.keys(stage);
      if (keys.length !== 1) {
        throw new CommandError(40323, 'Location40323', 'A pipeline stage specification object must contain exactly one field.');
      }
      const op = keys[0] as string;
      return { op, arg: stage[op] };
    });
    // Validate every stage up front so errors are reported even for empty collections.
    const compiled = stages.map(({ op, arg }) => compileStage(op, arg));
    let docs: Doc[];
    const first = stages[0];
    if (coll && first && first.op === '$match') {
      docs = coll.select(asDoc(first.arg, '$match')).map(cloneDoc);
      compiled.shift();
    } else {
      docs = coll ? [...coll.docs].map(cloneDoc) : [];
    }
    for (const stage of compiled) docs = stage(docs);
    return this.cursorReply(`${db}.${name}`, docs, batchSize, false);
  }

  private createIndexes(body: Doc, db: string): Doc {
    checkFields('createIndexes', body, ['indexes', 'commitQuorum', 'ignoreUnknownIndexOptions']);
    const name = collectionName(body, 'createIndexes');
    const specs = body.indexes;
    if (!Array.isArray(specs) || specs.length === 0) throw badValue('Must specify at least one index to create');
    const defs = specs.map((s, i) => makeIndexDef(asDoc(s, `indexes.${i}`)));
    const createdCollection = this.getColl(db, name) === undefined;
    const coll = this.ensureColl(db, name);
    const before = coll.indexes.length;
    const toAdd: IndexDef[] = [];
    try {
      for (const def of defs) {
        const all = [...coll.indexes, ...toAdd];
        const sameName = all.find((i) => i.name === def.name);
        const sameKey = all.find((i) => canon(i.key) === canon(def.key));
        if (sameName) {
          if (canon(sameName.key) === canon(def.key) && sameIndexOptions(sameName, def)) continue;
          throw new CommandError(
            86,
            'IndexKeySpecsConflict',
            `An existing index has the same name as the requested index. When index names are not specified, they are auto generated and can cause conflicts. Please refer to our documentation. Requested index: ${formatValue(def.spec)}, existing index: ${formatValue(sameName.spec)}`,
          );
        }
        if (sameKey) {
          if (sameIndexOptions(sameKey, def)) {
            throw new CommandError(85, 'IndexOptionsConflict', `Index already exists with a different name: ${sameKey.name}`);
          }
          throw new CommandError(85, 'IndexOptionsConflict', `An equivalent index already exists with the same name but different options. Requested index: ${formatValue(def.spec)}, existing index: ${formatValue(sameKey.spec)}`);
        }
        if (def.keyMap) {
          for (const d of coll.docs) {
            for (const k of coll.indexKeys(def, d)) {
              const owner = def.keyMap.get(k.key);
              if (owner !== undefined && owner !== d) {
                const e = coll.duplicateError(def, k.values);
                throw new CommandError(11000, 'DuplicateKey', `Index build failed: ${e.message}`, e.extra);
              }
              def.keyMap.set(k.key, d);
            }
          }
        }
        toAdd.push(def);
      }
    } catch (e) {
      if (createdCollection) this.dropColl(db, name);
      throw e;
    }
    coll.indexes.push(...toAdd);
    const reply: Doc = {
      numIndexesBefore: before,
      numIndexesAfter: coll.indexes.length,
      createdCollectionAutomatically: createdCollection,
    };
    if (toAdd.length === 0) reply.note = 'all indexes already exist';
    reply.ok = 1;
    return reply;
  }

  private listIndexes(body: Doc, db: string): Doc {
    checkFields('listIndexes', body, ['cursor', 'includeBuildUUIDs', 'includeIndexBuildInfo']);
    const name = collectionName(body, 'listIndexes');
    const batchSize = this.cursorBatchSize(body);
    const coll = this.getColl(db, name);
    if (!coll) throw new CommandError(26, 'NamespaceNotFound', `ns does not exist: ${db}.${name}`);
    return this.cursorReply(coll.ns, coll.indexes.map((i) => cloneDoc(i.spec)), batchSize, false);
  }

  private dropIndexes(body: Doc, db: string, cmd: string): Doc {
    checkFields(cmd, body, ['index']);
    const name = collectionName(body, cmd);
    const coll = this.getColl(db, name);
    if (!coll) throw new CommandError(26, 'NamespaceNotFound', `ns not found ${db}.${name}`);
    const was = coll.indexes.length;
    const spec = body.index;
    const findIdx = (s: unknown): IndexDef => {
      let def: IndexDef | undefined;
      if (typeof s === 'string') def = coll.indexes.find((i) => i.name === s);
      else if (isPlainDoc(s)) def = coll.indexes.find((i) => canon(i.key) === canon(s));
      else throw typeMismatch(`BSON field '${cmd}.index' is the wrong type '${typeName(s)}'`);
      if (!def) {
        throw new CommandError(27, 'IndexNotFound', typeof s === 'string' ? `index not found with name [${s}]` : `can't find index with key: ${formatValue(s)}`);
      }
      if (def.name === '_id_') throw new CommandError(72, 'InvalidOptions', 'cannot drop _id index');
      return def;
    };
    let victims: IndexDef[];
    if (spec === '*') victims = coll.indexes.filter((i) => i.name !== '_id_');
    else if (Array.isArray(spec)) victims = spec.map(findIdx);
    else victims = [findIdx(spec)];
    for (const v of victims) {
      const idx = coll.indexes.indexOf(v);
      if (idx >= 0) coll.indexes.splice(idx, 1);
    }
    return { nIndexesWas: was, ok: 1 };
  }

  private listCollections(body: Doc, db: string): Doc {
    checkFields('listCollections', body, ['filter', 'nameOnly', 'authorizedCollections', 'cursor', 'includePendingDrops']);
    const filter = optionalDoc(body.filter, 'filter');
    const pred = compileFilter(filter);
    const batchSize = this.cursorBatchSize(body);
    const nameOnly = truthy(body.nameOnly);
    const out: Doc[] = [];
    for (const coll of this.dbs.get(db)?.values() ?? []) {
      const full: Doc = {
        name: coll.name,
        type: 'collection',
        options: {},
        info: { readOnly: false, uuid: coll.uuid },
        idIndex: { v: 2, key: { _id: 1 }, name: '_id_' },
      };
      if (!pred(full)) continue;
      out.push(cloneDoc(nameOnly ? { name: coll.name, type: 'collection' } : full));
    }
    return this.cursorReply(`${db}.$cmd.listCollections`, out, batchSize, false);
  }

  private create(body: Doc, db: string): Doc {
    for (const [k, v] of Object.entries(body)) {
      if (k === 'create' || GENERIC_FIELDS.has(k)) continue;
      if (v === undefined || v === null || v === false) continue;
      throw notSupported(`collection option '${k}'`);
    }
    const name = collectionName(body, 'create');
    if (this.getColl(db, name)) throw new CommandError(48, 'NamespaceExists', `Collection ${db}.${name} already exists.`);
    this.ensureColl(db, name);
    return { ok: 1 };
  }

  private drop(body: Doc, db: string): Doc {
    checkFields('drop', body, []);
    const name = collectionName(body, 'drop');
    const coll = this.getColl(db, name);
    if (!coll) return { ok: 1 };
    const nIndexesWas = coll.indexes.length;
    this.dropColl(db, name);
    return { nIndexesWas, ns: `${db}.${name}`, ok: 1 };
  }

  private dropDatabase(db: string): void {
    for (const name of [...(this.dbs.get(db)?.keys() ?? [])]) this.dropColl(db, name);
    this.dbs.delete(db);
  }

  private listDatabases(body: Doc, db: string): Doc {
    checkFields('listDatabases', body, ['filter', 'nameOnly', 'authorizedDatabases']);
    if (db !== 'admin') throw new CommandError(13, 'Unauthorized', 'listDatabases may only be run against the admin database.');
    const pred = compileFilter(optionalDoc(body.filter, 'filter'));
    const nameOnly = truthy(body.nameOnly);
    const databases: Doc[] = [];
    let totalSize = 0;
    for (const [name, colls] of this.dbs) {
      let size = 0;
      for (const c of colls.values()) for (const d of c.docs) size += calculateObjectSize(d);
      const entry: Doc = nameOnly ? { name } : { name, sizeOnDisk: size, empty: size === 0 };
      if (!pred(entry)) continue;
      totalSize += size;
      databases.push(entry);
    }
    return nameOnly ? { databases, ok: 1 } : { databases, totalSize, totalSizeMb: Math.floor(totalSize / (1024 * 1024)), ok: 1 };
  }

  clear(): void {
    this.dbs.clear();
    this.cursors.clear();
  }
}

// ---------------------------------------------------------------------------------------------
// Aggregation stages
// ---------------------------------------------------------------------------------------------

type Stage = (docs: Doc[]) => Doc[];

function compileStage(op: string, arg: unknown): Stage {
  switch (op) {
    case '$match': {
      const pred = compileFilter(asDoc(arg, '$match'));
      return (docs) => docs.filter(pred);
    }
    case '$sort': {
      const spec = parseSort(asDoc(arg, '$sort'), true);
      return (docs) => sortValues(docs, spec, (d) => d);
    }
    case '$skip': {
      const n = asInt(arg, '$skip');
      if (n < 0) throw new CommandError(15956, 'Location15956', 'invalid argument to $skip stage: Expected a non-negative number');
      return (docs) => docs.slice(n);
    }
    case '$limit': {
      const n = asInt(arg, '$limit');
      if (n <= 0) throw new CommandError(15958, 'Location15958', 'the limit must be positive');
      return (docs) => docs.slice(0, n);
    }
    case '$project': {
      const spec = asDoc(arg, '$project');
      if (Object.keys(spec).length === 0) {
        throw new CommandError(51272, 'Location51272', '$project requires at least one output field');
      }
      const proj = compileProjection(spec) as (doc: Doc) => Doc;
      return (docs) => docs.map(proj);
    }
    case '$unset': {
      const fields = typeof arg === 'string' ? [arg] : arg;
      if (!Array.isArray(fields) || fields.some((f) => typeof f !== 'string')) {
        throw new CommandError(31002, 'Location31002', '$unset specification must be a string or an array containing only string values');
      }
      const spec: Doc = {};
      for (const f of fields) spec[f as string] = 0;
      const proj = compileProjection(spec) as (doc: Doc) => Doc;
      return (docs) => docs.map(proj);
    }
    case '$addFields':
    case '$set': {
      const spec = asDoc(arg, op);
      const entries: Array<[string, unknown]> = [];
      const flatten = (d: Doc, prefix: string): void => {
        for (const [k, v] of Object.entries(d)) {
          const path = prefix ? `${prefix}.${k}` : k;
          if (isPlainDoc(v) && !isOperatorDoc(v) && Object.keys(v).length > 0) flatten(v, path);
          else entries.push([path, v]);
        }
      };
      flatten(spec, '');
      for (const [, v] of entries) validateExpr(v);
      return (docs) =>
        docs.map((d) => {
          const out = cloneDoc(d);
          for (const [path, expr] of entries) {
            const v = evalExpr(expr, d);
            const parts = path.split('.');
            if (v === MISSING) unsetExact(out, parts);
            else setExact(out, parts, cloneValue(v));
          }
          return out;
        });
    }
    case '$replaceRoot':
    case '$replaceWith': {
      const expr = op === '$replaceRoot' ? asDoc(arg, op).newRoot : arg;
      return (docs) =>
        docs.map((d) => {
          const v = evalExpr(expr, d);
          if (!isPlainDoc(v)) {
            throw new CommandError(40228, 'Location40228', `'newRoot' expression must evaluate to an object, but resulting value was: ${formatValue(v)}. Type of resulting value: '${typeName(v)}'.`);
          }
          return cloneDoc(v);
        });
    }
    case '$count': {
      if (typeof arg !== 'string' || arg === '' || arg.startsWith('$') || arg.includes('.')) {
        throw new CommandError(40156, 'Location40156', 'the count field must be a non-empty string');
      }
      return (docs) => (docs.length ? [{ [arg]: docs.length }] : []);
    }
    case '$unwind': {
      let path: unknown = arg;
      let preserve = false;
      let indexField: string | undefined;
      if (isPlainDoc(arg)) {
        path = arg.path;
        preserve = truthy(arg.preserveNullAndEmptyArrays);
        if (arg.includeArrayIndex !== undefined) {
          if (typeof arg.includeArrayIndex !== 'string') throw badValue('includeArrayIndex must be a string');
          indexField = arg.includeArrayIndex;
        }
      }
      if (typeof path !== 'string' || !path.startsWith('$')) {
        throw new CommandError(28818, 'Location28818', "path option to $unwind stage should be prefixed with a '$'");
      }
      const parts = path.slice(1).split('.');
      return (docs) => {
        const out: Doc[] = [];
        for (const d of docs) {
          const v = getExact(d, parts);
          if (Array.isArray(v) && v.length > 0) {
            v.forEach((el, i) => {
              const copy = cloneDoc(d);
              setExact(copy, parts, cloneValue(el));
              if (indexField) setExact(copy, indexField.split('.'), i);
              out.push(copy);
            });
          } else if (Array.isArray(v) || v === MISSING || v === null) {
            if (preserve) {
              const copy = cloneDoc(d);
              if (Array.isArray(v)) unsetExact(copy, parts);
              if (indexField) setExact(copy, indexField.split('.'), null);
              out.push(copy);
            }
          } else {
            const copy = cloneDoc(d);
            if (indexField) setExact(copy, indexField.split('.'), null);
            out.push(copy);
          }
        }
        return out;
      };
    }
    case '$group':
      return compileGroup(asDoc(arg, '$group'));
    default:
      throw notSupported(`aggregation stage '${op}'`);
  }
}

interface Accumulator {
  field: string;
  op: string;
  expr: unknown;
}

function compileGroup(spec: Doc): Stage {
  if (!('_id' in spec)) throw new CommandError(15955, 'Location15955', 'a group specification must include an _id');
  const idExpr = spec._id;
  validateExpr(idExpr);
  const accs: Accumulator[] = [];
  for (const [field, acc] of Object.entries(spec)) {
    if (field === '_id') continue;
    if (field.includes('.')) throw new CommandError(40235, 'Location40235', `The field name '${field}' cannot contain '.'`);
    const a = asDoc(acc, field);
    const keys = Object.keys(a);
    if (keys.length !== 1) throw new CommandError(40238, 'Location40238', `The field '${field}' must specify one accumulator`);
    const op = keys[0] as string;
    if (!['$sum', '$avg', '$min', '$max', '$first', '$last', '$push', '$addToSet', '$count'].includes(op)) {
      if (op.startsWith('$')) throw notSupported(`$group accumulator '${op}'`);
      throw new CommandError(15952, 'Location15952', `unknown group operator '${op}'`);
    }
    if (op !== '$count') validateExpr(a[op]);
    accs.push({ field, op, expr: a[op] });
  }
  return (docs) => {
    interface Group {
      id: unknown;
      state: Array<{ sum: number; count: number; values: unknown[]; seen: Set<string>; value: unknown; set: boolean }>;
    }
    const groups = new Map<string, Group>();
    for (const d of docs) {
      let id = evalExpr(idExpr, d);
      if (id === MISSING) id = null;
      const key = canon(id);
      let g = groups.get(key);
      if (!g) {
        g = {
          id,
          state: accs.map(() => ({ sum: 0, count: 0, values: [], seen: new Set<string>(), value: null, set: false })),
        };
        groups.set(key, g);
      }
      accs.forEach((acc, i) => {
        const st = g.state[i];
        if (!st) return;
        const v = acc.op === '$count' ? 1 : evalExpr(acc.expr, d);
        switch (acc.op) {
          case '$sum':
          case '$count':
          case '$avg':
            if (isNumeric(v)) {
              st.sum += toNumber(v);
              st.count++;
            }
            break;
          case '$min':
          case '$max':
            if (v === MISSING || v === null || v === undefined) break;
            if (!st.set || (acc.op === '$min' ? compareBson(v, st.value) < 0 : compareBson(v, st.value) > 0)) {
              st.value = v;
              st.set = true;
            }
            break;
          case '$first':
            if (!st.set) {
              st.value = v === MISSING ? null : v;
              st.set = true;
            }
            break;
          case '$last':
            st.value = v === MISSING ? null : v;
            st.set = true;
            break;
          case '$push':
            if (v !== MISSING) st.values.push(v);
            break;
          case '$addToSet': {
            if (v === MISSING) break;
            const k = canon(v);
            if (!st.seen.has(k)) {
              st.seen.add(k);
              st.values.push(v);
            }
            break;
          }
        }
      });
    }
    const out: Doc[] = [];
    for (const g of groups.values()) {
      const doc: Doc = { _id: g.id };
      accs.forEach((acc, i) => {
        const st = g.state[i];
        if (!st) return;
        switch (acc.op) {
          case '$sum':
          case '$count':
            doc[acc.field] = st.sum;
            break;
          case '$avg':
            doc[acc.field] = st.count ? st.sum / st.count : null;
            break;
          case '$push':
          case '$addToSet':
            doc[acc.field] = st.values;
            break;
          default:
            doc[acc.field] = st.value;
        }
      });
      out.push(cloneDoc(doc));
    }
    return out;
  };
}

// ---------------------------------------------------------------------------------------------
// Wire protocol
// ---------------------------------------------------------------------------------------------

let nextRequestId = 1;

function header(length: number, responseTo: number, opCode: number): Buffer {
  const h = Buffer.alloc(16);
  h.writeInt32LE(length, 0);
  h.writeInt32LE(nextRequestId++ & 0x7fffffff, 4);
  h.writeInt32LE(responseTo, 8);
  h.writeInt32LE(opCode, 12);
  return h;
}

function opMsgReply(responseTo: number, doc: Doc): Buffer {
  const body = Buffer.from(serialize(doc));
  const len = 16 + 4 + 1 + body.length;
  const flagsAndKind = Buffer.alloc(5); // flagBits 0, section kind 0
  return Buffer.concat([header(len, responseTo, OP_MSG), flagsAndKind, body], len);
}

function opReply(responseTo: number, doc: Doc, responseFlags = 0): Buffer {
  const body = Buffer.from(serialize(doc));
  const fixed = Buffer.alloc(20);
  fixed.writeInt32LE(responseFlags, 0); // responseFlags
  // cursorID (int64) = 0 at offset 4, startingFrom = 0 at offset 12
  fixed.writeInt32LE(1, 16); // numberReturned
  const len = 16 + fixed.length + body.length;
  return Buffer.concat([header(len, responseTo, OP_REPLY), fixed, body], len);
}

function readBsonAt(buf: Buffer, pos: number, end: number): { doc: Doc; next: number } {
  if (pos + 4 > end) throw failedToParse('truncated BSON document in message');
  const size = buf.readInt32LE(pos);
  if (size < 5 || pos + size > end) throw failedToParse('invalid BSON document length in message');
  return { doc: deserialize(buf.subarray(pos, pos + size), DESERIALIZE_OPTIONS), next: pos + size };
}

function parseOpMsg(msg: Buffer): { body: Doc; moreToCome: boolean } {
  const flags = msg.readUInt32LE(16);
  const checksumPresent = (flags & 1) !== 0;
  const moreToCome = (flags & 2) !== 0;
  const end = msg.length - (checksumPresent ? 4 : 0);
  let pos = 20;
  let body: Doc | undefined;
  const sequences: Array<[string, Doc[]]> = [];
  while (pos < end) {
    const kind = msg[pos];
    pos += 1;
    if (kind === 0) {
      if (body) throw failedToParse('OP_MSG contains more than one kind 0 section');
      const r = readBsonAt(msg, pos, end);
      body = r.doc;
      pos = r.next;
    } else if (kind === 1) {
      const size = msg.readInt32LE(pos);
      const sectionEnd = pos + size;
      if (size < 5 || sectionEnd > end) throw failedToParse('invalid OP_MSG document sequence length');
      let p = pos + 4;
      const nul = msg.indexOf(0, p);
      if (nul < 0 || nul >= sectionEnd) throw failedToParse('invalid OP_MSG document sequence identifier');
      const identifier = msg.toString('utf8', p, nul);
      p = nul + 1;
      const docs: Doc[] = [];
      while (p < sectionEnd) {
        const r = readBsonAt(msg, p, sectionEnd);
        docs.push(r.doc);
        p = r.next;
      }
      sequences.push([identifier, docs]);
      pos = sectionEnd;
    } else {
      throw failedToParse(`Unknown section kind ${String(kind)}`);
    }
  }
  if (!body) throw failedToParse('OP_MSG does not contain a body section');
  for (const [identifier, docs] of sequences) {
    if (identifier in body) throw failedToParse(`Duplicate field name for document sequence: '${identifier}'`);
    body[identifier] = docs;
  }
  return { body, moreToCome };
}

function parseOpQuery(msg: Buffer): { fullCollectionName: string; query: Doc } {
  let pos = 20; // skip flags
  const nul = msg.indexOf(0, pos);
  if (nul < 0) throw failedToParse('invalid OP_QUERY collection name');
  const fullCollectionName = msg.toString('utf8', pos, nul);
  pos = nul + 1 + 8; // numberToSkip, numberToReturn
  const { doc } = readBsonAt(msg, pos, msg.length);
  return { fullCollectionName, query: doc };
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

export async function startMongoStandin(): Promise<MongoStandin> {
  const engine = new Engine();
  const sockets = new Set<net.Socket>();
  let nextConnectionId = 1;

  /** Returns reply bytes, `null` for no reply, or 'close' to drop the connection. */
  const handleMessage = (msg: Buffer, conn: ConnState): Buffer | null | 'close' => {
    const requestId = msg.readInt32LE(4);
    const opCode = msg.readInt32LE(12);
    if (opCode === OP_MSG) {
      let parsed: { body: Doc; moreToCome: boolean };
      try {
        parsed = parseOpMsg(msg);
      } catch (e) {
        const err = e instanceof CommandError ? e : failedToParse(String(e));
        return opMsgReply(requestId, { ok: 0, errmsg: err.message, code: err.code, codeName: err.codeName });
      }
      const reply = engine.run(parsed.body, conn);
      return parsed.moreToCome ? null : opMsgReply(requestId, reply);
    }
    if (opCode === OP_QUERY) {
      let parsed: { fullCollectionName: string; query: Doc };
      try {
        parsed = parseOpQuery(msg);
      } catch (e) {
        return opReply(requestId, { $err: String((e as Error).message), code: 9, ok: 0 }, 2);
      }
      const { fullCollectionName, query } = parsed;
      if (!fullCollectionName.endsWith('.$cmd')) {
        return opReply(requestId, { $err: 'mongo-standin: legacy OP_QUERY find is not supported', code: 238, ok: 0 }, 2);
      }
      const db = fullCollectionName.slice(0, -'.$cmd'.length);
      const inner = '$query' in query && isPlainDoc(query.$query) ? query.$query : query;
      return opReply(requestId, engine.run({ ...inner, $db: db }, conn));
    }
    if (opCode === OP_COMPRESSED) {
      const originalOpcode = msg.readInt32LE(16);
      const compressorId = msg[24];
      const data = msg.subarray(25);
      let payload: Buffer | undefined;
      if (compressorId === 0) payload = data;
      else if (compressorId === 2) {
        try {
          payload = inflateSync(data);
        } catch {
          payload = undefined;
        }
      }
      if (!payload) {
        const err = { ok: 0, errmsg: `mongo-standin: compressor id ${String(compressorId)} is not supported`, code: 238, codeName: 'NotImplemented' };
        return originalOpcode === OP_QUERY ? opReply(requestId, err) : opMsgReply(requestId, err);
      }
      const rebuilt = Buffer.concat([Buffer.alloc(16), payload]);
      rebuilt.writeInt32LE(rebuilt.length, 0);
      rebuilt.writeInt32LE(requestId, 4);
      rebuilt.writeInt32LE(0, 8);
      rebuilt.writeInt32LE(originalOpcode, 12);
      return handleMessage(rebuilt, conn);
    }
    // Removed legacy opcodes (OP_INSERT, OP_UPDATE, OP_GET_MORE, ...): mongod 6+ closes the connection.
    return 'close';
  };

  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    const conn: ConnState = { id: nextConnectionId++ };
    let pending: Buffer[] = [];
    let pendingLength = 0;
    socket.on('data', (chunk: Buffer) => {
      pending.push(chunk);
      pendingLength += chunk.length;
      while (pendingLength >= 4) {
        if ((pending[0] as Buffer).length < 4) pending = [Buffer.concat(pending, pendingLength)];
        const messageLength = (pending[0] as Buffer).readInt32LE(0);
        if (messageLength < 16 || messageLength > MAX_MESSAGE_SIZE) {
          socket.destroy();
          return;
        }
        if (pendingLength < messageLength) break;
        const all = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending, pendingLength);
        const msg = all.subarray(0, messageLength);
        const rest = all.subarray(messageLength);
        pending = rest.length ? [rest] : [];
        pendingLength = rest.length;
        let reply: Buffer | null | 'close';
        try {
          reply = handleMessage(msg, conn);
        } catch {
          reply = 'close';
        }
        if (reply === 'close') {
          socket.destroy();
          return;
        }
        if (reply) socket.write(reply);
      }
    });
    socket.on('error', () => {
      // Client went away; 'close' follows.
    });
    socket.on('close', () => {
      sockets.delete(socket);
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('mongo-standin: unexpected server address');
  const port = address.port;
  let closed = false;

  return {
    uri: `mongodb://127.0.0.1:${port}/?directConnection=true`,
    port,
    connectionCount: () => sockets.size,
    close: async () => {
      if (closed) return;
      closed = true;
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      sockets.clear();
      await done;
      engine.clear();
    },
  };
}
