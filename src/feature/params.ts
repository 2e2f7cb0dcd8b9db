import { FeatureStoreError } from '../errors.js';
import { clip, describeValue } from '../format.js';

/** A value a feature parameter may take: what a materialization can be keyed by. */
export type ParamValue = Date | string | number | boolean;

/** The parameters of one feature call, e.g. `{ when: new Date('2001-03-01') }`. */
export type Params = Readonly<Record<string, ParamValue>>;

/** Ordered `[name, type tag, text]` triples; their JSON is the canonical key. */
type Encoded = [name: string, tag: 'd' | 's' | 'n' | 'b', text: string][];

/**
 * Canonical text of a parameter set: key order never matters, Dates compare by instant.
 * Used as the identity of a materialization. Throws `UNSUPPORTED_PARAMETER` for anything that
 * is not a Date, string, finite number or boolean.
 * @internal
 */
export function canonicalParams(params: unknown, feature?: string): string {
  return JSON.stringify(encodeParams(params, feature));
}

/** Inverse of {@link canonicalParams}. @internal */
export function decodeParams(key: string): Record<string, ParamValue> {
  const out: Record<string, ParamValue> = {};
  for (const [name, tag, text] of JSON.parse(key) as Encoded) {
    const value =
      tag === 'd' ? new Date(text) : tag === 'n' ? Number(text) : tag === 'b' ? text === 'true' : text;
    // Defined, not assigned: `out['__proto__'] = v` would set the prototype and lose the parameter.
    Object.defineProperty(out, name, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/**
 * Longest parameter name or string value, in characters. PostgreSQL indexes the canonical key
 * in a btree, whose entries stop at about 2.7 KB; one limit, below it, holds on every store.
 */
export const MAX_PARAM_STRING = 1024;
/** Longest canonical key of a parameter set, in UTF-8 bytes (see {@link MAX_PARAM_STRING}). */
const MAX_PARAMS_KEY_BYTES = 2048;

/** Checks a parameter object and returns it typed. @internal */
export function checkParams(params: unknown, feature?: string): Params {
  encodeParams(params, feature);
  return (params ?? {}) as Params;
}

function encodeParams(params: unknown, feature: string | undefined): Encoded {
  if (params === undefined || params === null) return [];
  if (typeof params !== 'object' || Array.isArray(params) || params instanceof Date) {
    throw new FeatureStoreError(
      'UNSUPPORTED_PARAMETER',
      `parameters must be one object such as { when: new Date() }, but got ${describeValue(params)}.`,
      { feature },
    );
  }
  const entries = Object.entries(params).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const encoded: Encoded = entries.map(([name, value]) => {
    const problem = textProblem(name);
    if (problem !== undefined) {
      throw new FeatureStoreError(
        'UNSUPPORTED_PARAMETER',
        `the parameter name ${JSON.stringify(clip(name))} ${problem}. Rename the parameter.`,
        { feature, details: { parameter: name } },
      );
    }
    return [name, ...encodeValue(name, value, params as Params, feature)];
  });
  const bytes = Buffer.byteLength(JSON.stringify(encoded));
  if (bytes > MAX_PARAMS_KEY_BYTES) {
    throw new FeatureStoreError(
      'UNSUPPORTED_PARAMETER',
      `the parameters take ${bytes} bytes as a key; at most ${MAX_PARAMS_KEY_BYTES} are stored. ` +
        'Pass a short id instead of long text.',
      { feature, params: params as Params, details: { bytes } },
    );
  }
  return encoded;
}

/**
 * Why a string cannot be a parameter name or value, or `undefined` when it can. No store keeps a
 * lone UTF-16 surrogate (both write U+FFFD instead) and PostgreSQL refuses NUL in text and JSON,
 * so both are refused on every store rather than changed on some.
 */
function textProblem(text: string): string | undefined {
  if (text.length > MAX_PARAM_STRING)
    return `has ${text.length} characters; at most ${MAX_PARAM_STRING} are stored`;
  return invalidText(text);
}

/**
 * Why a string cannot be stored exactly by every store (a NUL character, a lone UTF-16
 * surrogate), with its position, or `undefined` when it can. @internal
 */
export function invalidText(text: string): string | undefined {
  const nul = text.indexOf('\0');
  if (nul >= 0) return `holds a NUL character (\\0) at position ${nul}, which no store keeps`;
  const lone = LONE_SURROGATE.exec(text);
  if (lone !== null)
    return `holds a lone UTF-16 surrogate (\\u${lone[0].charCodeAt(0).toString(16)}) at position ${lone.index}, which is not text any store keeps`;
  return undefined;
}

// With the `u` flag a surrogate pair is one code point; only lone halves match.
const LONE_SURROGATE = /\p{Surrogate}/u;

function encodeValue(
  name: string,
  value: unknown,
  params: Params,
  feature: string | undefined,
): ['d' | 's' | 'n' | 'b', string] {
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw unsupported(name, 'an invalid Date', params, feature);
    return ['d', value.toISOString()];
  }
  if (typeof value === 'string') {
    const problem = textProblem(value);
    if (problem !== undefined) throw unsupported(name, `a string that ${problem}`, params, feature);
    return ['s', value];
  }
  if (typeof value === 'boolean') return ['b', String(value)];
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw unsupported(name, `the number ${value}`, params, feature);
    return ['n', String(value === 0 ? 0 : value)];
  }
  throw unsupported(name, describeValue(value), params, feature);
}

function unsupported(name: string, what: string, params: Params, feature: string | undefined) {
  return new FeatureStoreError(
    'UNSUPPORTED_PARAMETER',
    `parameter ${JSON.stringify(clip(name))} is ${what}. Parameters may be Dates, strings, finite numbers or booleans; ` +
      'convert other values (for example to an ISO string or an id) before passing them.',
    { feature, params, details: { parameter: name } },
  );
}

/** Orders two parameter values of the same type (Dates by instant). @internal */
export function compareParamValues(a: ParamValue, b: ParamValue): number {
  const x = a instanceof Date ? a.getTime() : a;
  const y = b instanceof Date ? b.getTime() : b;
  return x < y ? -1 : x > y ? 1 : 0;
}
