/** Plain-words formatting of values, parameters and rows for messages and tables. @internal */

/** `{ when: 2001-03-01T00:00:00.000Z, app: "x" }`: parameters as a person reads them. @internal */
export function formatParams(params: Readonly<Record<string, unknown>>): string {
  const parts = Object.entries(params).map(([name, value]) => `${clip(name)}: ${formatParamValue(value)}`);
  return parts.length === 0 ? '{}' : `{ ${parts.join(', ')} }`;
}

/** One parameter value for messages and tables. @internal */
export function formatParamValue(value: unknown): string {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'Invalid Date' : value.toISOString();
  if (typeof value === 'string') return JSON.stringify(clip(value));
  if (value !== null && typeof value === 'object') return describeValue(value);
  return String(value);
}

/** Short human description of a JS value for error messages. @internal */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return `an array of ${value.length} item(s)`;
  if (value instanceof Date) return `the Date ${value.toISOString()}`;
  if (typeof value === 'object') {
    const name = value.constructor?.name;
    return name && name !== 'Object' ? `a ${name} object` : 'a plain object';
  }
  if (typeof value === 'string') return `the string ${JSON.stringify(clip(value))}`;
  return `the ${typeof value} ${String(value)}`;
}

/** Longest text of one value a message shows: an error must not echo kilobytes of input. */
const SHOWN = 80;

/** `text`, cut to {@link SHOWN} characters with its length said when longer. @internal */
export function clip(text: string): string {
  return text.length <= SHOWN ? text : `${text.slice(0, SHOWN)}… (${text.length} characters)`;
}
