import { describe, expect, it } from 'vitest';
import { isShapeTable, partitionColumnOf, shapeLayoutAt, shapeLayoutOf } from './shape-table.js';

describe('shape tables', () => {
  const columns = [
    { name: 'origin', type: 'string' },
    { name: 'n', type: 'int32' },
  ] as const;

  it('are shared by results with the same key and column types, whatever their value columns are called', () => {
    const layout = shapeLayoutOf(['origin'], columns);
    expect(layout.table).toMatch(/^s_[0-9a-f]{16}$/);
    expect(isShapeTable(layout.table)).toBe(true);
    expect(layout.columns).toEqual([
      { name: 'origin', type: 'string' },
      { name: 'v1', type: 'int32' },
    ]);
    expect(layout.names).toEqual(new Map([['n', 'v1']]));
    expect(shapeLayoutOf(['origin'], [columns[0], { name: 'delays', type: 'int32' }]).table).toBe(
      layout.table,
    );
    expect(shapeLayoutOf(['origin'], [columns[0], { name: 'n', type: 'int64' }]).table).not.toBe(
      layout.table,
    );
    expect(shapeLayoutOf(['origin', 'n'], columns).table).not.toBe(layout.table);
    expect(shapeLayoutOf(['dest'], [{ name: 'dest', type: 'string' }, columns[1]]).table).not.toBe(
      layout.table,
    );
    expect(isShapeTable('m_12')).toBe(false);
  });

  it('never give a value column the name of a key column', () => {
    const layout = shapeLayoutOf(
      ['v1'],
      [
        { name: 'v1', type: 'string' },
        { name: 'a', type: 'int32' },
        { name: 'b', type: 'int32' },
      ],
    );
    expect(layout.columns.map((c) => c.name)).toEqual(['v1', 'v2', 'v3']);
    expect(layout.idColumn).toBe('_m');
    expect(shapeLayoutOf(['_m'], [{ name: '_m', type: 'int64' }]).idColumn).toBe('_m_1');
  });

  it('read the tables of format 3 (one per feature) under the result’s own column names', () => {
    const layout = shapeLayoutAt('f_0123456789abcdef', ['origin'], columns);
    expect(layout.columns).toBe(columns);
    expect(layout.names.size).toBe(0);
    expect(isShapeTable(layout.table)).toBe(true);
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
