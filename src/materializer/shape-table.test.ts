import { describe, expect, it } from 'vitest';
import { isShapeTable, partitionColumnOf, shapeTableName } from './shape-table.js';

describe('shape tables', () => {
  const columns = [
    { name: 'origin', type: 'string' },
    { name: 'n', type: 'int32' },
  ] as const;

  it('are named after the feature, key and columns with their types', () => {
    const name = shapeTableName('flights.departures', ['origin'], columns);
    expect(name).toMatch(/^f_[0-9a-f]{16}$/);
    expect(isShapeTable(name)).toBe(true);
    expect(shapeTableName('flights.departures', ['origin'], columns)).toBe(name);
    expect(shapeTableName('flights.arrivals', ['origin'], columns)).not.toBe(name);
    expect(
      shapeTableName('flights.departures', ['origin'], [columns[0], { name: 'n', type: 'int64' }]),
    ).not.toBe(name);
    expect(shapeTableName('flights.departures', ['origin', 'n'], columns)).not.toBe(name);
    expect(isShapeTable('m_12')).toBe(false);
  });

  it('hold the materialization id in a column no user column is named', () => {
    expect(partitionColumnOf(columns)).toBe('_m');
    expect(partitionColumnOf([...columns, { name: '_m', type: 'int64' }])).toBe('_m_1');
    expect(
      partitionColumnOf([
        { name: '_m_1', type: 'string' },
        { name: '_m', type: 'string' },
        { name: '_m_2', type: 'string' },
      ]),
    ).toBe('_m_3');
  });
});
