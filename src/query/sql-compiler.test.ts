import { describe, expect, it } from 'vitest';
import type { ColumnType } from '../frame/columns.js';
import { evaluateRead } from './evaluate.js';
import { bindSources, type FilterConditions, gt, predicatesOf, type QueryTree, treeOf } from './nodes.js';
import { compileRead, rebindRead, type SqlDialect, sameShape } from './sql-compiler.js';

const dialect: SqlDialect = {
  quote: (id) => `"${id.replaceAll('"', '""')}"`,
  placeholder: (i) => `$${i}`,
  sqlType: (type) => type.toUpperCase(),
};
const airports = {
  feature: 'f.departures',
  key: ['origin'],
  columns: [
    { name: 'origin', type: 'string' as const },
    { name: 'departures', type: 'int32' as const },
  ],
  table: '"s"."m_1"',
};
const routes = {
  feature: 'f.routes',
  key: ['origin', 'destination'],
  columns: [
    { name: 'origin', type: 'string' as const },
    { name: 'destination', type: 'string' as const },
    { name: 'share', type: 'float64' as const },
  ],
  table: '"s"."m_2"',
};
type Source = {
  feature: string;
  key: string[];
  columns: { name: string; type: ColumnType }[];
  table: string;
};

/** Filter, then select, then limit, as the frame methods called in that order build it. */
const query = (
  sources: readonly Source[],
  conditions?: FilterConditions,
  rest: { select?: string[]; limit?: number } = {},
): QueryTree => {
  let tree = bindSources(treeOf(sources.map((s) => s.feature)), (_, i) => sources[i]!);
  if (conditions !== undefined) tree = { kind: 'filter', input: tree, predicates: predicatesOf(conditions) };
  if (rest.select !== undefined) tree = { kind: 'project', input: tree, columns: rest.select };
  if (rest.limit !== undefined) tree = { kind: 'limit', input: tree, count: rest.limit };
  return tree;
};

describe('compileRead', () => {
  it('joins on shared keys, pushes key filters into every source and binds every value once', () => {
    const { sql, params, places, strings, columns } = compileRead(
      query([airports, routes], { origin: 'SFO', share: gt(0.5) }, { limit: 10 }),
      dialect,
    );
    expect(sql).toBe(
      'SELECT t0."origin" AS "origin", t0."departures" AS "departures", t1."destination" AS "destination", t1."share" AS "share" ' +
        'FROM "s"."m_1" AS t0 LEFT JOIN "s"."m_2" AS t1 ON t1."origin" = t0."origin" AND t1."origin" = $1 ' +
        'WHERE t0."origin" = $1 AND t1."share" > $2 LIMIT $3',
    );
    expect(params.map((p) => p.value)).toEqual(['SFO', 0.5, 10]);
    expect(places).toEqual([0, 0, 1, 2]);
    expect(strings).toHaveLength(places.length + 1);
    expect(columns.map((c) => c.name)).toEqual(['origin', 'departures', 'destination', 'share']);
  });

  it('quotes hostile column names and never splices values', () => {
    const hostile = {
      ...airports,
      columns: [airports.columns[0]!, { name: 'x"; DROP TABLE t; --', type: 'string' as const }],
    };
    const { sql, params } = compileRead(
      query([hostile], { 'x"; DROP TABLE t; --': "'; DELETE FROM s; --" }),
      dialect,
    );
    expect(sql).toContain('t0."x""; DROP TABLE t; --" = $1');
    expect(sql).not.toContain('DELETE');
    expect(params[0]?.value).toBe("'; DELETE FROM s; --");
  });

  it('compiles IN with nulls, IS NULL, and empty IN lists', () => {
    expect(compileRead(query([airports], { origin: ['SFO', null] }), dialect).sql).toContain(
      '(t0."origin" IN ($1) OR t0."origin" IS NULL)',
    );
    expect(compileRead(query([airports], { origin: null }), dialect).sql).toContain('t0."origin" IS NULL');
    expect(compileRead(query([airports], { origin: [] }), dialect).sql).toContain('WHERE FALSE');
  });

  it('refuses unknown columns, values of the wrong kind, ambiguous columns and unrelated keys', () => {
    expect(() => compileRead(query([airports], { nope: 1 }), dialect)).toThrow(
      /no column "nope".*"origin", "departures"/,
    );
    expect(() => compileRead(query([airports], { departures: 'many' }), dialect)).toThrow(
      /a int32 column\) got the string "many"; pass a number/,
    );
    expect(() =>
      compileRead(query([airports, { ...airports, feature: 'f.other', table: 't' }]), dialect),
    ).toThrow(/column "departures" comes from both "f.departures" and "f.other"/);
    const unrelated = {
      feature: 'f.users',
      key: ['user_id'],
      columns: [{ name: 'user_id', type: 'int32' as const }],
      table: 'u',
    };
    expect(() => compileRead(query([airports, unrelated as unknown as Source]), dialect)).toThrow(
      /share no key column/,
    );
  });
});

describe('compileRead reads a key lookup with one probe per feature', () => {
  const delays = {
    feature: 'f.delays',
    key: ['origin'],
    columns: [
      { name: 'origin', type: 'string' as const },
      { name: 'delay', type: 'float64' as const },
      { name: 'late', type: 'int32' as const },
    ],
    table: '"s"."m_3"',
  };

  it('reads each other feature keyed by the looked-up key with scalar subqueries, not a join', () => {
    const { sql, params, columns } = compileRead(query([airports, delays], { origin: 'SFO' }), dialect);
    expect(sql).toBe(
      'SELECT t0."origin" AS "origin", t0."departures" AS "departures", ' +
        '(SELECT t1."delay" FROM "s"."m_3" AS t1 WHERE t1."origin" = $1) AS "delay", ' +
        '(SELECT t1."late" FROM "s"."m_3" AS t1 WHERE t1."origin" = $1) AS "late" ' +
        'FROM "s"."m_1" AS t0 WHERE t0."origin" = $1',
    );
    expect(params.map((p) => p.value)).toEqual(['SFO']);
    expect(columns.map((c) => c.name)).toEqual(['origin', 'departures', 'delay', 'late']);
  });

  it('keeps the join for a feature with more key columns, for IN and range filters, and for filtered values', () => {
    const join = 'LEFT JOIN "s"."m_3" AS t1';
    expect(compileRead(query([airports, delays, routes], { origin: 'SFO' }), dialect).sql).toMatch(
      /\(SELECT t1\."delay".*LEFT JOIN "s"\."m_2" AS t2 ON t2\."origin" = t0\."origin" AND t2\."origin" = \$\d+ WHERE/,
    );
    expect(compileRead(query([airports, delays], { origin: ['SFO', 'LAX'] }), dialect).sql).toContain(join);
    expect(compileRead(query([airports, delays], { origin: gt('A') }), dialect).sql).toContain(join);
    expect(compileRead(query([airports, delays], { origin: 'SFO', delay: gt(1) }), dialect).sql).toContain(
      join,
    );
    expect(compileRead(query([airports, delays]), dialect).sql).toContain(join);
  });

  it('binds partitions inside the subquery and leaves out features no column is selected from', () => {
    const tree = bindSources(treeOf([airports.feature, delays.feature]), (_, i) => ({
      ...[airports, delays][i]!,
      partition: { column: '_m', value: BigInt(40 + i) },
    }));
    const filtered: QueryTree = { kind: 'filter', input: tree, predicates: predicatesOf({ origin: 'SFO' }) };
    const { sql, params } = compileRead(
      { kind: 'project', input: filtered, columns: ['origin', 'late'] },
      dialect,
    );
    expect(sql).toBe(
      'SELECT t0."origin" AS "origin", (SELECT t1."late" FROM "s"."m_3" AS t1 WHERE t1."origin" = $1 AND t1."_m" = $2) AS "late" ' +
        'FROM "s"."m_1" AS t0 WHERE t0."_m" = $3 AND t0."origin" = $1',
    );
    expect(params.map((p) => p.value)).toEqual(['SFO', 41n, 40n]);
    const dropped = compileRead({ kind: 'project', input: filtered, columns: ['departures'] }, dialect).sql;
    expect(dropped).not.toContain('m_3');
  });
});

describe('evaluateRead (live reads) has the same semantics', () => {
  it('left-joins, filters, selects and limits like the SQL', () => {
    const sources = [
      {
        ...airports,
        rows: [
          { origin: 'SFO', departures: 3 },
          { origin: 'LAX', departures: 2 },
          { origin: 'JFK', departures: 1 },
        ],
      },
      {
        ...routes,
        rows: [
          { origin: 'SFO', destination: 'LAX', share: 0.75 },
          { origin: 'SFO', destination: 'JFK', share: 0.25 },
          { origin: 'LAX', destination: 'SFO', share: 0.9 },
        ],
      },
    ];
    expect(evaluateRead(query(sources, { origin: ['SFO', 'JFK'] }), sources).rows).toEqual([
      { origin: 'SFO', departures: 3, destination: 'LAX', share: 0.75 },
      { origin: 'SFO', departures: 3, destination: 'JFK', share: 0.25 },
      { origin: 'JFK', departures: 1, destination: null, share: null },
    ]);
    expect(
      evaluateRead(query(sources, { share: gt(0.5) }, { select: ['destination'], limit: 1 }), sources).rows,
    ).toEqual([{ destination: 'LAX' }]);
  });
});

describe('compileRead keeps the order of the calls', () => {
  it('filters the rows a limit kept in an outer SELECT, and takes the smaller of two limits', () => {
    const limited: QueryTree = { kind: 'limit', input: query([airports, routes]), count: 1 };
    const filtered: QueryTree = {
      kind: 'filter',
      input: limited,
      predicates: predicatesOf({ origin: 'SFO' }),
    };
    const { sql, params } = compileRead({ kind: 'limit', input: filtered, count: 5 }, dialect);
    expect(sql).toBe(
      'SELECT q1."origin" AS "origin", q1."departures" AS "departures", q1."destination" AS "destination", q1."share" AS "share" ' +
        'FROM (SELECT t0."origin" AS "origin", t0."departures" AS "departures", t1."destination" AS "destination", t1."share" AS "share" ' +
        'FROM "s"."m_1" AS t0 LEFT JOIN "s"."m_2" AS t1 ON t1."origin" = t0."origin" LIMIT $1) AS q1 ' +
        'WHERE q1."origin" = $2 LIMIT $3',
    );
    expect(params.map((p) => p.value)).toEqual([1, 'SFO', 5]);
    const twice: QueryTree = {
      kind: 'limit',
      input: { kind: 'limit', input: query([airports]), count: 2 },
      count: 7,
    };
    expect(compileRead(twice, dialect).params.map((p) => p.value)).toEqual([2]);
  });

  it('binds a source’s partition on that source, in WHERE for the first and in the JOIN for others', () => {
    const tree = bindSources(treeOf([airports.feature, routes.feature]), (_, i) => ({
      ...[airports, routes][i]!,
      partition: { column: '_m', value: BigInt(40 + i) },
    }));
    const { sql, params } = compileRead(
      { kind: 'filter', input: tree, predicates: predicatesOf({ origin: 'SFO' }) },
      dialect,
    );
    expect(sql).toBe(
      'SELECT t0."origin" AS "origin", t0."departures" AS "departures", t1."destination" AS "destination", t1."share" AS "share" ' +
        'FROM "s"."m_1" AS t0 LEFT JOIN "s"."m_2" AS t1 ON t1."origin" = t0."origin" AND t1."_m" = $1 AND t1."origin" = $2 ' +
        'WHERE t0."_m" = $3 AND t0."origin" = $2',
    );
    expect(params.map((p) => p.value)).toEqual([41n, 'SFO', 40n]);
  });
});

describe('key lookups of materializations in one shared table', () => {
  // Three features of one shape, stored in one table under v1, told apart by their id.
  const shared = (feature: string, column: string, id: bigint) => ({
    feature,
    key: ['origin'],
    columns: [
      { name: 'origin', type: 'string' as const },
      { name: column, type: 'float64' as const },
    ],
    table: '"s"."s_1"',
    partition: { column: '_m', value: id },
    names: new Map([[column, 'v1']]),
  });
  const sources = [shared('f.a', 'a', 7n), shared('f.b', 'b', 8n), shared('f.c', 'c', 9n)];
  const lookup = () => bindSources(treeOf(sources.map((s) => s.feature)), (_, i) => sources[i]!);
  const byOrigin = (origin: string): QueryTree => ({
    kind: 'filter',
    input: lookup(),
    predicates: predicatesOf({ origin }),
  });

  it('pick: one pass over the table for every materialization after the first, each value by its id', () => {
    const picking: SqlDialect = {
      ...dialect,
      groupedLookup: { kind: 'pick', pick: (column, id) => [`max(${column}) FILTER (WHERE ${id} = `, ')'] },
    };
    const { sql, params } = compileRead(byOrigin('SFO'), picking);
    expect(sql).toBe(
      'SELECT t0."origin" AS "origin", t0."v1" AS "a", g0."b" AS "b", g0."c" AS "c" FROM "s"."s_1" AS t0 ' +
        'CROSS JOIN (SELECT max(u0."v1") FILTER (WHERE u0."_m" = $1) AS "b", max(u0."v1") FILTER (WHERE u0."_m" = $2) AS "c" ' +
        'FROM "s"."s_1" AS u0 WHERE u0."origin" = $3 AND u0."_m" IN ($1, $2)) AS g0 WHERE t0."_m" = $4 AND t0."origin" = $3',
    );
    expect(params.map((p) => p.value)).toEqual([8n, 9n, 'SFO', 7n]);
  });

  it('apart: the table’s rows by a statement of their own, the columns they complete left out', () => {
    const { sql, params, apart, columns } = compileRead(byOrigin('SFO'), {
      ...dialect,
      groupedLookup: { kind: 'apart' },
    });
    expect(sql).toBe(
      'SELECT t0."origin" AS "origin", t0."v1" AS "a" FROM "s"."s_1" AS t0 WHERE t0."_m" = $1 AND t0."origin" = $2',
    );
    expect(columns.map((c) => c.name)).toEqual(['origin', 'a', 'b', 'c']);
    expect(apart?.params).toBe(2);
    expect(apart?.columns.map((c) => c.name)).toEqual(['origin', 'a']);
    expect(apart?.lookups).toEqual([
      {
        sql: 'SELECT u."_m", u."v1" FROM "s"."s_1" AS u WHERE u."origin" = $1 AND u."_m" IN ($2, $3)',
        params: [1, 2, 3],
        columns: [{ name: 'v1', type: 'float64' }],
        picks: [
          { name: 'b', column: 0, id: 2 },
          { name: 'c', column: 0, id: 3 },
        ],
      },
    ]);
    expect(params.map((p) => p.value)).toEqual([7n, 'SFO', 8n, 9n]);
    // Another key binds its own value in every statement.
    const again = rebindRead(
      compileRead(byOrigin('SFO'), { ...dialect, groupedLookup: { kind: 'apart' } }),
      byOrigin('LAX'),
    );
    expect(again.params.map((p) => p.value)).toEqual([7n, 'LAX', 8n, 9n]);
    // Where one statement is needed (a SQL feature embedding the read), no statement apart.
    expect(
      compileRead(byOrigin('SFO'), { ...dialect, groupedLookup: { kind: 'apart' } }, { single: true }).apart,
    ).toBeUndefined();
  });
});

describe('sameShape and rebindRead', () => {
  const shaped = (conditions: FilterConditions, rest: { select?: string[]; limit?: number } = {}) =>
    query([airports, routes], conditions, rest);

  it('tells trees that compile to the same SQL from those that do not', () => {
    expect(sameShape(shaped({ origin: 'SFO' }), shaped({ origin: 'LAX' }))).toBe(true);
    expect(
      sameShape(shaped({ origin: ['A', null] }, { limit: 1 }), shaped({ origin: ['B', null] }, { limit: 9 })),
    ).toBe(true);
    for (const [a, b] of [
      [shaped({ origin: ['A', null] }), shaped({ origin: [null, 'A'] })],
      [shaped({ origin: ['A', 'B'] }), shaped({ origin: ['A'] })],
      [shaped({ origin: 'A' }), shaped({ origin: gt('A') })],
      [shaped({ origin: 'A' }), shaped({ destination: 'A' })],
      [shaped({ origin: 'A' }), shaped({ origin: null })],
      [shaped({ origin: 'A' }, { select: ['origin'] }), shaped({ origin: 'A' }, { select: ['share'] })],
      [shaped({ origin: 'A' }), shaped({ origin: 'A' }, { limit: 1 })],
      [shaped({ origin: 'A' }), query([airports], { origin: 'A' })],
    ] as const) {
      expect(sameShape(a, b)).toBe(false);
    }
  });

  it('binds another tree of the same shape into the compiled text, as compiling it would', () => {
    const compiled = compileRead(shaped({ origin: ['A', null], share: gt(0.1) }, { limit: 3 }), dialect);
    const other = shaped({ origin: ['B', null], share: gt(0.7) }, { limit: 5 });
    const rebound = rebindRead(compiled, other);
    const direct = compileRead(other, dialect);
    expect(rebound.sql).toBe(direct.sql);
    expect(rebound.params).toEqual(direct.params);
    expect(rebound.places).toEqual(direct.places);
    expect(() => rebindRead(compiled, shaped({ origin: [1, null], share: gt(0.7) }, { limit: 5 }))).toThrow(
      /filter on "origin"/,
    );
  });
});
