import { FeatureStoreError } from '../errors.js';
import { describeValue } from '../format.js';

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
    out[name] =
      tag === 'd' ? new Date(text) : tag === 'n' ? Number(text) : tag === 'b' ? text === 'true' : text;
  }
  return out;
}

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
  return entries.map(([name, value]) => [name, ...encodeValue(name, value, params as Params, feature)]);
}

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
  if (typeof value === 'string') return ['s', value];
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
    `parameter "${name}" is ${what}. Parameters may be Dates, strings, finite numbers or booleans; ` +
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
