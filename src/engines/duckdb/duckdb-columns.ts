import { FeatureStoreError } from '../../errors.js';
import type { ColumnSpec, ColumnType } from '../../frame/columns.js';

/**
 * The part of a `@duckdb/node-api` result featurefn reads: `DuckDBResultReader` (from
 * `runAndReadAll`) and `DuckDBMaterializedResult` (from `run`) both have it. Declared by shape so
 * the core never imports the driver.
 */
export interface DuckDBResultLike {
  columnNames(): string[];
  columnTypes(): readonly {
    readonly typeId: number;
    readonly alias?: string | undefined;
    readonly valueType?: unknown;
  }[];
  getColumns(): unknown[][] | Promise<unknown[][]>;
}

/** DuckDB type ids (from `DuckDBTypeId`) that featurefn maps. @internal */
export const T = {
  BOOLEAN: 1,
  TINYINT: 2,
  SMALLINT: 3,
  INTEGER: 4,
  BIGINT: 5,
  UTINYINT: 6,
  USMALLINT: 7,
  UINTEGER: 8,
  UBIGINT: 9,
  FLOAT: 10,
  DOUBLE: 11,
  TIMESTAMP: 12,
  DATE: 13,
  HUGEINT: 16,
  VARCHAR: 17,
  DECIMAL: 19,
  TIMESTAMP_S: 20,
  TIMESTAMP_MS: 21,
  TIMESTAMP_NS: 22,
  ENUM: 23,
  LIST: 24,
  ARRAY: 33,
  TIMESTAMP_TZ: 31,
  SQLNULL: 36,
} as const;

type Convert = (value: unknown) => unknown;

interface Mapping {
  readonly type: ColumnType;
  readonly convert: Convert | undefined;
}

/** `a / b` rounded down, so instants before 1970 keep their millisecond (bigint division truncates). */
const floorDiv = (a: bigint, b: bigint): bigint => (a % b < 0n ? a / b - 1n : a / b);

const toNumber: Convert = (v) => (v === null ? null : Number(v));
const int64: Convert = (v) =>
  v === null
    ? null
    : typeof v === 'bigint' && (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER))
      ? v
      : Number(v);

/** How a DuckDB column type is stored and its driver values converted. @internal */
export function duckdbMapping(type: {
  typeId: number;
  alias?: string | undefined;
  valueType?: unknown;
}): { readonly type: ColumnType; readonly convert: ((value: unknown) => unknown) | undefined } | undefined {
  return mappingOf(type);
}

function mappingOf(type: {
  typeId: number;
  alias?: string | undefined;
  valueType?: unknown;
}): Mapping | undefined {
  switch (type.typeId) {
    case T.BOOLEAN:
      return { type: 'boolean', convert: undefined };
    case T.TINYINT:
      return { type: 'int8', convert: undefined };
    case T.SMALLINT:
    case T.UTINYINT:
      return { type: 'int16', convert: undefined };
    case T.INTEGER:
    case T.USMALLINT:
      return { type: 'int32', convert: undefined };
    case T.BIGINT:
    case T.UINTEGER:
    case T.UBIGINT:
    case T.HUGEINT:
      return { type: 'int64', convert: int64 };
    case T.FLOAT:
      return { type: 'float32', convert: undefined };
    case T.DOUBLE:
      return { type: 'float64', convert: undefined };
    case T.DECIMAL:
      return {
        type: 'float64',
        convert: (v) =>
          v === null ? null : Number((v as { value: bigint }).value) / 10 ** (v as { scale: number }).scale,
      };
    case T.TIMESTAMP:
    case T.TIMESTAMP_TZ:
      return {
        type: 'timestamp',
        convert: (v) =>
          v === null ? null : new Date(Number(floorDiv((v as { micros: bigint }).micros, 1000n))),
      };
    case T.TIMESTAMP_S:
      return {
        type: 'timestamp',
        convert: (v) => (v === null ? null : new Date(Number((v as { seconds: bigint }).seconds) * 1000)),
      };
    case T.TIMESTAMP_MS:
      return {
        type: 'timestamp',
        convert: (v) => (v === null ? null : new Date(Number((v as { millis: bigint }).millis))),
      };
    case T.TIMESTAMP_NS:
      return {
        type: 'timestamp',
        convert: (v) =>
          v === null ? null : new Date(Number(floorDiv((v as { nanos: bigint }).nanos, 1_000_000n))),
      };
    case T.DATE:
      return {
        type: 'date',
        convert: (v) => (v === null ? null : new Date((v as { days: number }).days * 86_400_000)),
      };
    case T.VARCHAR:
      return type.alias === 'JSON'
        ? { type: 'json', convert: (v) => (v === null ? null : JSON.parse(v as string)) }
        : { type: 'string', convert: undefined };
    case T.ENUM:
      return { type: 'string', convert: undefined };
    case T.SQLNULL:
      return { type: 'string', convert: undefined };
    case T.LIST:
    case T.ARRAY: {
      const item = (type.valueType as { typeId: number } | undefined)?.typeId;
      if (item !== T.DOUBLE && item !== T.FLOAT && item !== T.INTEGER && item !== T.BIGINT) return undefined;
      return {
        type: 'float64[]',
        convert: (v) => (v === null ? null : (v as { items: unknown[] }).items.map(toNumber)),
      };
    }
    default:
      return undefined;
  }
}

/** featurefn column specs of a DuckDB result, refusing types it cannot store. @internal */
export function duckdbColumnSpecs(
  result: Pick<DuckDBResultLike, 'columnNames' | 'columnTypes'>,
  feature?: string,
): ColumnSpec[] {
  const names = result.columnNames();
  return result.columnTypes().map((type, i) => {
    const mapping = mappingOf(type);
    if (mapping === undefined) {
      throw new FeatureStoreError(
        'UNSUPPORTED_COLUMN_TYPE',
        `column "${names[i]}" has DuckDB type ${String(type)}, which featurefn cannot store. ` +
          'Cast it in the query (for example to DOUBLE, VARCHAR, TIMESTAMP or JSON).',
        { feature, details: { column: names[i], typeId: type.typeId } },
      );
    }
    return { name: names[i]!, type: mapping.type };
  });
}

/**
 * Reads a DuckDB result column by column into row-object values (Dates, numbers, parsed JSON).
 * @internal
 */
export async function readDuckDBColumns(
  result: DuckDBResultLike,
  feature?: string,
): Promise<{ columns: ColumnSpec[]; values: unknown[][] }> {
  const maybeReader = result as { done?: boolean; readAll?: () => Promise<void> };
  if (maybeReader.done === false && typeof maybeReader.readAll === 'function') await maybeReader.readAll();
  const columns = duckdbColumnSpecs(result, feature);
  const converts = result.columnTypes().map((type) => mappingOf(type)?.convert);
  const raw = await result.getColumns();
  const values = raw.map((column, i) => {
    const convert = converts[i];
    if (convert === undefined) return column;
    const out = new Array(column.length);
    for (let r = 0; r < column.length; r++) out[r] = convert(column[r]);
    return out;
  });
  return { columns, values };
}

/** True when `value` looks like a `@duckdb/node-api` result. @internal */
export function isDuckDBResult(value: unknown): value is DuckDBResultLike {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as DuckDBResultLike).columnNames === 'function' &&
    typeof (value as DuckDBResultLike).columnTypes === 'function' &&
    typeof (value as DuckDBResultLike).getColumns === 'function'
  );
}
