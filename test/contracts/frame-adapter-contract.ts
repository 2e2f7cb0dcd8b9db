// Frames of every kind are compared, DuckDB results included: register its adapter as featurefn/duckdb does.
import 'featurefn/duckdb';
import {
  Int32,
  makeData,
  makeVector,
  Table,
  TimestampMicrosecond,
  TimestampNanosecond,
  vectorFromArray,
} from 'apache-arrow';
import type { FrameAdapter } from 'featurefn';
// Every adapter is checked against DuckDB frames too: register that adapter, as featurefn/duckdb does.
import 'featurefn/duckdb';
import { beforeAll, describe, expect, it } from 'vitest';
import { adapterByKind, adapterFor } from '../../src/frame/adapters.js';
import {
  type ColumnSpec,
  type ColumnType,
  columnsOf,
  tableFromColumns,
  tableToRows,
} from '../../src/frame/columns.js';
import { type Seeded, seeded } from '../support/seeded.js';

/** Every case of the suite, by name: a skip names one of these. */
export const FRAME_ADAPTER_CASES = [
  'canAdapt recognises its own frames',
  'canAdapt refuses values that are not frames',
  "canAdapt refuses other adapters' frames",
  'the registry picks this adapter for its frames',
  'round trip: integers',
  'round trip: floats',
  'round trip: strings',
  'round trip: booleans',
  'round trip: timestamps',
  'sub-millisecond timestamps round down to the millisecond',
  'round trip: dates',
  'round trip: json',
  'round trip: float64[]',
  'round trip: nulls in every column',
  'round trip: every column type together',
  'fromArrow then toArrow keeps the column types',
  'toBatches concatenate to toArrow',
  'an empty frame keeps its columns',
] as const;

/** A case name of {@link describeFrameAdapter}. */
export type FrameAdapterCase = (typeof FRAME_ADAPTER_CASES)[number];

/** What an adapter's test file provides. */
export interface FrameAdapterContract<T> {
  readonly adapter: FrameAdapter<T>;
  /** A frame of the adapter's kind holding the table's rows, built the way user code would. */
  make(table: Table): Promise<unknown> | unknown;
  /** Cases this adapter cannot pass, by name, each with the reason. */
  readonly skip?: Partial<Record<FrameAdapterCase, string>>;
  /**
   * Column types the adapter's frames cannot hold, each with the reason: left out of the mixed
   * tables, and their own round trip case is skipped with that reason.
   */
  readonly unsupported?: Partial<Record<ColumnType, string>>;
}

/** Kinds whose frames every adapter must refuse unless they are its own. */
const FOREIGN_KINDS = ['rows', 'arrow', 'duckdb', 'polars', 'polars-lazy'] as const;

const SEED = 20_240_911;
const ROWS = 40;

/**
 * The behaviour every frame adapter must have: it recognises its own frames and only those, and
 * a frame survives frame → Arrow → frame → Arrow with every value intact, compared as row objects.
 * Test data is synthetic and seeded, so a failure replays identically.
 */
export function describeFrameAdapter<T>(name: string, contract: FrameAdapterContract<T>): void {
  const { adapter, make } = contract;
  const unsupported = contract.unsupported ?? {};
  const types = ALL_TYPES.filter((t) => unsupported[t] === undefined);
  const skip: Partial<Record<FrameAdapterCase, string>> = { ...contract.skip };
  for (const [title, caseTypes] of Object.entries(TYPE_CASES) as [FrameAdapterCase, ColumnType[]][]) {
    const reasons = caseTypes.map((t) => unsupported[t]);
    if (reasons.every((r) => r !== undefined)) skip[title] ??= reasons.join('; ');
  }
  for (const key of Object.keys(skip)) {
    if (!(FRAME_ADAPTER_CASES as readonly string[]).includes(key)) {
      throw new Error(`describeFrameAdapter(${name}): unknown case "${key}" in skip`);
    }
  }
  if (adapter.toBatches === undefined && skip['toBatches concatenate to toArrow'] === undefined) {
    throw new Error(
      `describeFrameAdapter(${name}): the adapter has no toBatches; list that case in skip with a reason`,
    );
  }

  const test = (title: FrameAdapterCase, body: () => Promise<void>) => {
    const reason = skip[title];
    if (reason === undefined) it(title, body);
    else it.skip(`${title} (skipped: ${reason})`, body);
  };

  /** make → toArrow → fromArrow → toArrow, each Arrow table compared with the original as rows. */
  const roundTrip = async (table: Table) => {
    const frame = await make(table);
    expect(adapter.canAdapt(frame)).toBe(true);
    const expected = tableToRows(table);
    const first = await adapter.toArrow(frame as T);
    expect(first.schema.fields.map((f) => f.name)).toEqual(table.schema.fields.map((f) => f.name));
    expect(tableToRows(first)).toEqual(expected);
    const back = await adapter.fromArrow(first);
    expect(adapter.canAdapt(back)).toBe(true);
    const second = await adapter.toArrow(back);
    expect(tableToRows(second)).toEqual(expected);
  };

  describe(`frame adapter contract: ${name}`, () => {
    let foreign: { kind: string; frame: unknown }[] = [];

    beforeAll(async () => {
      const small = sampleTable(['int32', 'string'], 3, SEED);
      foreign = await Promise.all(
        FOREIGN_KINDS.filter((kind) => kind !== adapter.kind).map(async (kind) => ({
          kind,
          frame: await adapterByKind(kind).fromArrow(small),
        })),
      );
    });

    test('canAdapt recognises its own frames', async () => {
      const table = sampleTable(types, 5, SEED);
      expect(adapter.canAdapt(await make(table))).toBe(true);
      expect(adapter.canAdapt(await adapter.fromArrow(table))).toBe(true);
      expect(adapter.canAdapt(await make(emptyOf(table)))).toBe(true);
    });

    test('canAdapt refuses values that are not frames', async () => {
      const notFrames: unknown[] = [
        null,
        undefined,
        'origin,departures\nSFO,3',
        '',
        42,
        10n,
        true,
        new Date(0),
        {},
        { origin: 'SFO', departures: 3 },
        { schema: {}, numRows: 1 },
        [1, 2, 3],
        ['SFO', 'LAX'],
        [new Date(0)],
        () => [],
      ];
      for (const value of notFrames)
        expect(adapter.canAdapt(value), `canAdapt(${String(value)})`).toBe(false);
    });

    test("canAdapt refuses other adapters' frames", async () => {
      expect(foreign.length).toBeGreaterThan(0);
      for (const { kind, frame } of foreign) expect(adapter.canAdapt(frame), `a ${kind} frame`).toBe(false);
    });

    test('the registry picks this adapter for its frames', async () => {
      const table = sampleTable(types, 5, SEED);
      expect(adapterFor(await make(table)).kind).toBe(adapter.kind);
      expect(adapterFor(await adapter.fromArrow(table)).kind).toBe(adapter.kind);
    });

    Object.entries(TYPE_CASES).forEach(([title, caseTypes], i) => {
      const supported = caseTypes.filter((t) => unsupported[t] === undefined);
      test(title as FrameAdapterCase, () => roundTrip(sampleTable(supported, ROWS, SEED + 1 + i)));
    });

    test('sub-millisecond timestamps round down to the millisecond', async () => {
      // 1.5 ms before 1970 is at millisecond -2, as DuckDB's own casts have it, not -1.
      const micros = [-1500n, -1n, 1500n, 999n, -86_400_000_001n, null];
      const nanos = [-1_500_000n, -1n, 1_999_999n, 0n, null, 5n];
      const table = new Table({
        id: vectorFromArray([0, 1, 2, 3, 4, 5], new Int32()),
        us: makeVector(timestamps(new TimestampMicrosecond(), micros)),
        ns: makeVector(timestamps(new TimestampNanosecond(), nanos)),
      });
      const at = (ms: number | null) => (ms === null ? null : new Date(ms));
      const usMs = [-2, -1, 1, 0, -86_400_001, null];
      const nsMs = [-2, -1, 1, 0, null, 0];
      const expected = usMs.map((ms, id) => ({ id, us: at(ms), ns: at(nsMs[id]!) }));
      const frame = await make(table);
      const first = await adapter.toArrow(frame as T);
      expect(tableToRows(first)).toEqual(expected);
      const second = await adapter.toArrow(await adapter.fromArrow(first));
      expect(tableToRows(second)).toEqual(expected);
    });

    test('round trip: nulls in every column', async () => {
      const table = sampleTable(types, ROWS, SEED + 9, { nulls: 0.5, allNullColumns: true });
      const rows = tableToRows(table);
      for (const field of table.schema.fields.slice(1))
        expect(
          rows.some((row) => row[field.name] === null),
          field.name,
        ).toBe(true);
      await roundTrip(table);
    });

    test('round trip: every column type together', () => roundTrip(sampleTable(types, ROWS, SEED + 10)));

    test('fromArrow then toArrow keeps the column types', async () => {
      const table = sampleTable(types, ROWS, SEED + 11);
      const back = await adapter.toArrow(await adapter.fromArrow(table));
      expect(columnsOf(back)).toEqual(columnsOf(table));
    });

    test('toBatches concatenate to toArrow', async () => {
      const table = sampleTable(types, ROWS, SEED + 12);
      const frame = (await make(table)) as T;
      const batches = [];
      for await (const batch of adapter.toBatches!(frame)) batches.push(batch);
      expect(batches.length).toBeGreaterThan(0);
      const whole = await adapter.toArrow(frame);
      for (const batch of batches) expect(columnsOf(new Table(batch.schema))).toEqual(columnsOf(whole));
      expect(tableToRows(new Table(batches))).toEqual(tableToRows(whole));
      expect(tableToRows(whole)).toEqual(tableToRows(table));
    });

    test('an empty frame keeps its columns', async () => {
      const empty = emptyOf(sampleTable(types, 1, SEED + 13));
      for (const frame of [await make(empty), await adapter.fromArrow(empty)]) {
        const table = await adapter.toArrow(frame as T);
        expect(table.numRows).toBe(0);
        expect(columnsOf(table)).toEqual(columnsOf(empty));
      }
    });
  });
}

/** The round trip case of each group of column types. */
const TYPE_CASES: Partial<Record<FrameAdapterCase, ColumnType[]>> = {
  'round trip: integers': ['int8', 'int16', 'int32', 'int64'],
  'round trip: floats': ['float32', 'float64'],
  'round trip: strings': ['string'],
  'round trip: booleans': ['boolean'],
  'round trip: timestamps': ['timestamp'],
  'round trip: dates': ['date'],
  'round trip: json': ['json'],
  'round trip: float64[]': ['float64[]'],
};

/** Every featurefn column type. */
export const ALL_TYPES: readonly ColumnType[] = [
  'boolean',
  'int8',
  'int16',
  'int32',
  'int64',
  'float32',
  'float64',
  'string',
  'timestamp',
  'date',
  'json',
  'float64[]',
];

const DAY = 86_400_000;

/** Edge values first, then seeded ones; `null` is added by the caller. */
const GENERATORS: Record<ColumnType, { edges: readonly unknown[]; random(rng: Seeded): unknown }> = {
  boolean: { edges: [true, false], random: (rng) => rng.chance(0.5) },
  int8: { edges: [-128, 127, 0], random: (rng) => rng.int(-128, 127) },
  int16: { edges: [-32_768, 32_767, -1], random: (rng) => rng.int(-32_768, 32_767) },
  int32: { edges: [-(2 ** 31), 2 ** 31 - 1, 1], random: (rng) => rng.int(-(2 ** 31), 2 ** 31 - 1) },
  int64: {
    // Beyond 2^31, beyond 2^53 (as bigint), and both ends of the 64-bit range.
    edges: [2 ** 31, -(2 ** 31) - 1, 2 ** 53 - 1, 2n ** 53n + 1n, -(2n ** 63n), 2n ** 63n - 1n, 0],
    random: (rng) =>
      rng.chance(0.5)
        ? rng.int(-(2 ** 40), 2 ** 40)
        : BigInt(rng.int(-(2 ** 20), 2 ** 20)) * 2n ** 40n + BigInt(rng.int(0, 2 ** 30)),
  },
  float32: {
    edges: [Math.fround(0.1), Math.fround(-3.4e38), Math.fround(1e-30)],
    random: (rng) => Math.fround(rng.float(-1e6, 1e6)),
  },
  float64: {
    edges: [0.1 + 0.2, -1.7976931348623157e308, 5e-324, 1e21],
    random: (rng) => rng.float(-1e9, 1e9),
  },
  string: {
    edges: [
      '',
      'héllo wörld',
      '日本語のテキスト',
      '🌍✈️ emoji',
      'say "hi"',
      "O'Hare",
      'back\\slash',
      'two\nlines\ttab',
      ' ',
    ],
    random: (rng) =>
      Array.from({ length: rng.int(1, 12) }, () => String.fromCharCode(rng.int(32, 126))).join(''),
  },
  timestamp: {
    // Millisecond precision on both sides of 1970.
    edges: [
      new Date(0),
      new Date(-1),
      new Date(1),
      new Date(Date.UTC(1969, 6, 20, 20, 17, 40, 123)),
      new Date(Date.UTC(2038, 0, 19, 3, 14, 8, 999)),
    ],
    random: (rng) => new Date(rng.int(-2_208_988_800_000, 4_102_444_800_000)),
  },
  date: {
    edges: [new Date(0), new Date(-DAY), new Date(Date.UTC(1900, 0, 1)), new Date(Date.UTC(2100, 11, 31))],
    random: (rng) => new Date(rng.int(-25_000, 50_000) * DAY),
  },
  json: {
    edges: [
      {},
      [],
      { a: 1, b: [true, null, 'x'], c: { d: { e: [1.5, { f: 'é"\'' }] } } },
      [1, 'two', { three: [3] }, [[]]],
      { 'unicode ключ': '值', empty: '', nested: [{}, []] },
    ],
    random: (rng) => randomJson(rng, 3),
  },
  'float64[]': {
    edges: [[], [0.5], [1e-300, -1e300, 3]],
    random: (rng) => Array.from({ length: rng.int(0, 8) }, () => rng.float(-1, 1)),
  },
};

function randomJson(rng: Seeded, depth: number): unknown {
  const leaf = (): unknown =>
    rng.pick([
      () => rng.int(-1000, 1000),
      () => rng.float(-1, 1),
      () => rng.chance(0.5),
      () => null,
      () => `s${rng.int(0, 99)}`,
    ])();
  const value = (d: number): unknown =>
    d === 0 || rng.chance(0.3) ? leaf() : rng.chance(0.5) ? array(d - 1) : object(d - 1);
  const array = (d: number) => Array.from({ length: rng.int(0, 3) }, () => value(d));
  const object = (d: number) =>
    Object.fromEntries(Array.from({ length: rng.int(0, 3) }, (_, i) => [`k${i}_${rng.int(0, 9)}`, value(d)]));
  // Top-level JSON values are objects or arrays: a JSON column holds structured values.
  return rng.chance(0.6) ? object(depth) : array(depth);
}

/**
 * A seeded table with an `id` column and one column per requested type (`c0_int8`, …). Each
 * column starts with its edge values; about `nulls` of the other cells are null.
 */
export function sampleTable(
  types: readonly ColumnType[],
  rows: number,
  seed: number,
  options: { nulls?: number; allNullColumns?: boolean } = {},
): Table {
  const rng = seeded(seed);
  const nulls = options.nulls ?? 0.15;
  const columns: ColumnSpec[] = [{ name: 'id', type: 'int32' }];
  const values: unknown[][] = [Array.from({ length: rows }, (_, i) => i)];
  types.forEach((type, c) => {
    const { edges, random } = GENERATORS[type];
    columns.push({ name: `c${c}_${type}`, type });
    values.push(
      Array.from({ length: rows }, (_, r) =>
        r < edges.length ? edges[r] : rng.chance(nulls) ? null : random(rng),
      ),
    );
    if (options.allNullColumns) {
      columns.push({ name: `c${c}_${type}_nulls`, type });
      values.push(Array.from({ length: rows }, () => null));
    }
  });
  if (options.nulls !== undefined && rows > 1) {
    // The last row is null everywhere but its id.
    for (const column of values.slice(1)) column[rows - 1] = null;
  }
  return tableFromColumns(columns, values);
}

/** Arrow data of a timestamp type from raw values in its unit. */
function timestamps<T extends TimestampMicrosecond | TimestampNanosecond>(
  type: T,
  values: readonly (bigint | null)[],
) {
  const nullBitmap = new Uint8Array(Math.ceil(values.length / 8));
  values.forEach((v, i) => {
    if (v !== null) nullBitmap[i >> 3]! |= 1 << (i & 7);
  });
  return makeData({
    type,
    length: values.length,
    nullCount: values.filter((v) => v === null).length,
    nullBitmap,
    data: BigInt64Array.from(values, (v) => v ?? 0n),
  });
}

/** A table with the same columns and no rows. */
export function emptyOf(table: Table): Table {
  const columns = columnsOf(table);
  return tableFromColumns(
    columns,
    columns.map(() => []),
  );
}
