import {
  Field,
  Float64,
  LargeList,
  makeData,
  makeVector,
  Table,
  Uint32,
  Utf8View,
  vectorFromArray,
} from 'apache-arrow';
import { describe, expect, it } from 'vitest';
import { FeatureStoreError } from '../errors.js';
import { columnsOf, rowsToTable, tableFromColumns, tableToRows } from './columns.js';

describe('rowsToTable', () => {
  it('reads a column of 64-bit integers, numbers where they fit and bigints beyond 2^53, as int64', () => {
    const rows = [{ n: 1 }, { n: 2n ** 60n }, { n: null }, { n: -(2 ** 40) }];
    const table = rowsToTable(rows);
    expect(columnsOf(table)).toEqual([{ name: 'n', type: 'int64' }]);
    expect(tableToRows(table)).toEqual(rows);
  });

  it('still refuses a column mixing fractional numbers and bigints', () => {
    expect(() => rowsToTable([{ n: 1.5 }, { n: 2n ** 60n }])).toThrow(/mixes number and bigint/);
  });
});

describe('rowsToTable integer columns', () => {
  it('keeps -2^31 in an int32 column, and -0 in a float64 one (an int32 has no -0)', () => {
    const edges = rowsToTable([{ n: -(2 ** 31) }, { n: 2 ** 31 - 1 }]);
    expect(columnsOf(edges)).toEqual([{ name: 'n', type: 'int32' }]);
    expect(tableToRows(edges)).toEqual([{ n: -(2 ** 31) }, { n: 2 ** 31 - 1 }]);
    expect(columnsOf(rowsToTable([{ n: 2 ** 31 }]))).toEqual([{ name: 'n', type: 'float64' }]);
    const zero = rowsToTable([{ n: -0 }, { n: 1 }]);
    expect(columnsOf(zero)).toEqual([{ name: 'n', type: 'float64' }]);
    expect(Object.is(tableToRows(zero)[0]!.n, -0)).toBe(true);
  });
});

describe('tableFromColumns', () => {
  it('refuses int64 values beyond 64 bits, naming the column, instead of wrapping them', () => {
    const attempt = () => tableFromColumns([{ name: 'big', type: 'int64' }], [[2n ** 64n - 1n]]);
    expect(attempt).toThrow(FeatureStoreError);
    expect(attempt).toThrow(/column "big" holds the bigint 18446744073709551615/);
  });

  it('takes timestamps given as fractional milliseconds at the millisecond below, before 1970 too', () => {
    const table = tableFromColumns([{ name: 't', type: 'timestamp' }], [[-1.5, 1.5, -0.001]]);
    expect(tableToRows(table).map((r) => (r.t as Date).getTime())).toEqual([-2, 1, -1]);
  });
});

describe('columnsOf and tableToRows', () => {
  it('take the Arrow types polars and other writers produce: uint32, Utf8View, LargeList<Float64>', () => {
    const item = new Field('item', new Float64(), true);
    const list = makeData({
      type: new LargeList(item),
      length: 2,
      nullCount: 0,
      valueOffsets: BigInt64Array.from([0n, 2n, 3n]),
      child: vectorFromArray([0.5, 1.5, 2.5], new Float64()).data[0]!,
    });
    const table = new Table({
      u: vectorFromArray([4_000_000_000, 1], new Uint32()),
      s: vectorFromArray(['a string longer than twelve bytes', 'é'], new Utf8View()),
      l: makeVector(list),
    });
    expect(columnsOf(table)).toEqual([
      { name: 'u', type: 'int64' },
      { name: 's', type: 'string' },
      { name: 'l', type: 'float64[]' },
    ]);
    expect(tableToRows(table)).toEqual([
      { u: 4_000_000_000, s: 'a string longer than twelve bytes', l: [0.5, 1.5] },
      { u: 1, s: 'é', l: [2.5] },
    ]);
  });
});

describe('hostile rows', () => {
  const refusal = (f: () => unknown) => {
    try {
      f();
    } catch (error) {
      expect(error).toBeInstanceOf(FeatureStoreError);
      return error as FeatureStoreError;
    }
    throw new Error('accepted');
  };

  it('keep __proto__ and constructor as column names through Arrow and back', () => {
    const rows = [JSON.parse('{"__proto__": 1, "constructor": "c", "id": "k"}') as Record<string, unknown>];
    const table = rowsToTable(rows);
    expect(columnsOf(table).map((c) => c.name)).toEqual(['__proto__', 'constructor', 'id']);
    const [row] = tableToRows(table);
    expect(Object.keys(row!)).toEqual(['__proto__', 'constructor', 'id']);
    expect(Object.getOwnPropertyDescriptor(row, '__proto__')?.value).toBe(1);
    expect(Object.getPrototypeOf(row)).toBe(Object.prototype);
  });

  it('refuse column names with NUL, lone surrogates, over 63 bytes or empty, naming them', () => {
    for (const [name, pattern] of [
      ['a\0b', /column name "a\\u0000b" holds a NUL character/],
      ['x\udfff', /column name "x\\udfff" holds a lone UTF-16 surrogate \(\\udfff\) at position 1/],
      ['é'.repeat(32), /takes 64 bytes in UTF-8; at most 63/],
      ['', /column name "" is empty/],
    ] as const) {
      const error = refusal(() => columnsOf(rowsToTable([{ [name]: 1 }]), 'f.x'));
      expect(error.code).toBe('UNSUPPORTED_RESULT');
      expect(error.message).toMatch(pattern);
    }
  });

  it('refuse string values with NUL or lone surrogates instead of changing them', () => {
    const nul = refusal(() => rowsToTable([{ id: 'a\0b' }], 'f.x'));
    expect(nul.code).toBe('INVALID_VALUE');
    expect(nul.message).toMatch(
      /column "id": the string "a\\u0000b" holds a NUL character \(\\0\) at position 1/,
    );
    const lone = refusal(() => rowsToTable([{ id: 'ok' }, { id: '\ud800z' }]));
    expect(lone.message).toMatch(/lone UTF-16 surrogate \(\\ud800\) at position 0/);
    // A BOM and paired surrogates are text.
    expect(tableToRows(rowsToTable([{ id: '\ufeff😀' }]))).toEqual([{ id: '\ufeff😀' }]);
  });

  it('refuse an invalid Date naming the column, not with a BigInt error', () => {
    const error = refusal(() => rowsToTable([{ at: new Date(Number.NaN) }]));
    expect(error.code).toBe('INVALID_VALUE');
    expect(error.message).toMatch(/column "at" holds an invalid Date/);
  });
});
