/**
 * A tiny plain-text table formatter for the demo: numbers rounded and right-aligned, dates as
 * `YYYY-MM-DD` (with the time only when there is one), everything else as text.
 */

/** Options of {@link formatTable}. */
export interface TableOptions {
  /** Columns to show, in this order. Default is every column of the first row. */
  columns?: readonly string[];
  /** Text shown instead of the table when there are no rows. Default is `'(no rows)'`. */
  empty?: string;
}

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** One value as table text. */
export function formatCell(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'bigint') return integer.format(value);
  if (typeof value === 'number') return formatNumber(value);
  if (value instanceof Date) return formatDate(value);
  if (typeof value === 'object')
    return JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? String(v) : v));
  return String(value);
}

/** Rows as an aligned text table with a header line. */
export function formatTable(
  rows: readonly Readonly<Record<string, unknown>>[],
  options: TableOptions = {},
): string {
  const columns = options.columns ?? Object.keys(rows[0] ?? {});
  if (rows.length === 0 || columns.length === 0) return options.empty ?? '(no rows)';
  const numeric = columns.map((column) => rows.every((row) => isNumeric(row[column])));
  // One number of decimals per column, from its largest value, so the decimal points line up.
  const digits = columns.map((column) => decimalsOf(rows.map((row) => row[column])));
  const cells = rows.map((row) =>
    columns.map((column, i) => {
      const value = row[column];
      return typeof value === 'number' && digits[i] !== undefined
        ? formatNumber(value, digits[i])
        : formatCell(value);
    }),
  );
  const widths = columns.map((column, i) => Math.max(column.length, ...cells.map((line) => line[i]!.length)));
  const pad = (text: string, i: number) => (numeric[i] ? text.padStart(widths[i]!) : text.padEnd(widths[i]!));
  const lines = [
    columns.map(pad).join('  '),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...cells.map((line) => line.map(pad).join('  ')),
  ];
  return lines.map((line) => `  ${line.trimEnd()}`).join('\n');
}

/** Prints {@link formatTable} to stdout. */
export function printTable(
  rows: readonly Readonly<Record<string, unknown>>[],
  options: TableOptions = {},
): void {
  console.log(formatTable(rows, options));
}

/** `2001-03-08` for a UTC midnight, `2001-03-08 14:05:09` otherwise. */
export function formatDate(date: Date): string {
  if (Number.isNaN(date.getTime())) return 'Invalid Date';
  const iso = date.toISOString();
  return iso.endsWith('T00:00:00.000Z') ? iso.slice(0, 10) : `${iso.slice(0, 10)} ${iso.slice(11, 19)}`;
}

/** Decimals for a magnitude: 1 from 100 up, 2 from 1 up, 3 below. */
function decimalsFor(magnitude: number): number {
  return magnitude >= 100 ? 1 : magnitude >= 1 ? 2 : 3;
}

/** Decimals for a column of numbers: 0 if all are whole, else from the largest; `undefined` if not numeric. */
function decimalsOf(values: readonly unknown[]): number | undefined {
  const numbers = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  if (numbers.length === 0 || numbers.length !== values.filter((v) => v !== null && v !== undefined).length)
    return undefined;
  if (numbers.every(Number.isInteger)) return 0;
  return decimalsFor(Math.max(...numbers.map(Math.abs)));
}

function formatNumber(value: number, digits?: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (digits === undefined && Number.isInteger(value)) return integer.format(value);
  const decimals = digits ?? decimalsFor(Math.abs(value));
  return value.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

function isNumeric(value: unknown): boolean {
  return typeof value === 'number' || typeof value === 'bigint' || value === null || value === undefined;
}
