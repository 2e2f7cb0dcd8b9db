import { describe, expect, it } from 'vitest';
import { evaluateRead } from './evaluate.js';
import { EMPTY_QUERY, gt, predicatesOf, type QueryNode } from './nodes.js';
import { compileRead, type SqlDialect } from './sql-compiler.js';

const dialect: SqlDialect = { quote: (id) => `"${id.replaceAll('"', '""')}"`, placeholder: (i) => `$${i}` };
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
const query = (conditions: Parameters<typeof predicatesOf>[0], rest: Partial<QueryNode> = {}): QueryNode => ({
  ...EMPTY_QUERY,
  filters: predicatesOf(conditions),
  ...rest,
});

describe('compileRead', () => {
  it('joins on shared keys, pushes key filters into every source and binds every value', () => {
    const { sql, params, columns } = compileRead(
      [airports, routes],
      query({ origin: 'SFO', share: gt(0.5) }, { limit: 10 }),
      dialect,
    );
    expect(sql).toBe(
      'SELECT t0."origin" AS "origin", t0."departures" AS "departures", t1."destination" AS "destination", t1."share" AS "share" ' +
        'FROM "s"."m_1" AS t0 LEFT JOIN "s"."m_2" AS t1 ON t1."origin" = t0."origin" AND t1."origin" = $3 ' +
        'WHERE t0."origin" = $1 AND t1."share" > $2 LIMIT $4',
    );
    expect(params.map((p) => p.value)).toEqual(['SFO', 0.5, 'SFO', 10]);
    expect(columns.map((c) => c.name)).toEqual(['origin', 'departures', 'destination', 'share']);
  });

  it('quotes hostile column names and never splices values', () => {
    const hostile = {
      ...airports,
      columns: [airports.columns[0]!, { name: 'x"; DROP TABLE t; --', type: 'string' as const }],
    };
    const { sql, params } = compileRead(
      [hostile],
      query({ 'x"; DROP TABLE t; --': "'; DELETE FROM s; --" }),
      dialect,
    );
    expect(sql).toContain('t0."x""; DROP TABLE t; --" = $1');
    expect(sql).not.toContain('DELETE');
    expect(params[0]?.value).toBe("'; DELETE FROM s; --");
  });

  it('compiles IN with nulls, IS NULL, and empty IN lists', () => {
    expect(compileRead([airports], query({ origin: ['SFO', null] }), dialect).sql).toContain(
      '(t0."origin" IN ($1) OR t0."origin" IS NULL)',
    );
    expect(compileRead([airports], query({ origin: null }), dialect).sql).toContain('t0."origin" IS NULL');
    expect(compileRead([airports], query({ origin: [] }), dialect).sql).toContain('WHERE FALSE');
  });

  it('refuses unknown columns, values of the wrong kind, ambiguous columns and unrelated keys', () => {
    expect(() => compileRead([airports], query({ nope: 1 }), dialect)).toThrow(
      /no column "nope".*"origin", "departures"/,
    );
    expect(() => compileRead([airports], query({ departures: 'many' }), dialect)).toThrow(
      /a int32 column\) got the string "many"; pass a number/,
    );
    expect(() =>
      compileRead([airports, { ...airports, feature: 'f.other', table: 't' }], EMPTY_QUERY, dialect),
    ).toThrow(/column "departures" comes from both "f.departures" and "f.other"/);
    const unrelated = {
      feature: 'f.users',
      key: ['user_id'],
      columns: [{ name: 'user_id', type: 'int32' as const }],
      table: 'u',
    };
    expect(() => compileRead([airports, unrelated], EMPTY_QUERY, dialect)).toThrow(/share no key column/);
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
    expect(evaluateRead(sources, query({ origin: ['SFO', 'JFK'] })).rows).toEqual([
      { origin: 'SFO', departures: 3, destination: 'LAX', share: 0.75 },
      { origin: 'SFO', departures: 3, destination: 'JFK', share: 0.25 },
      { origin: 'JFK', departures: 1, destination: null, share: null },
    ]);
    expect(
      evaluateRead(sources, query({ share: gt(0.5) }, { select: ['destination'], limit: 1 })).rows,
    ).toEqual([{ destination: 'LAX' }]);
  });
});
