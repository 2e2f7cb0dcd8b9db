import { FeatureStoreError } from '../errors.js';
import type { ColumnSpec } from '../frame/columns.js';
import type { FeatureInfo } from './feature.js';
import type { Params } from './params.js';

/**
 * The key column(s) of a feature's result: the `entity` option, or else the first column.
 * Refuses a result without them, or with a key column no store can index. @internal
 */
export function keyOf(info: FeatureInfo, columns: readonly ColumnSpec[], params: Params): readonly string[] {
  const key = info.entity ?? (columns[0] === undefined ? [] : [columns[0].name]);
  const names = columns.map((c) => c.name);
  const missing = key.filter((k) => !names.includes(k));
  if (key.length === 0 || missing.length > 0) {
    throw new FeatureStoreError(
      'MISSING_KEY_COLUMN',
      `the result has no key column ${missing.map((k) => `"${k}"`).join(', ') || '(it has no columns)'}; ` +
        `its columns are ${names.map((n) => `"${n}"`).join(', ') || 'none'}. ` +
        "Return the key column(s), or set the feature's entity option to the column(s) that identify a row. Nothing was stored.",
      { feature: info.name, params, details: { missing, columns: names } },
    );
  }
  for (const k of key) {
    const type = columns.find((c) => c.name === k)!.type;
    if (type === 'json' || type === 'float64[]') {
      throw new FeatureStoreError(
        'UNSUPPORTED_COLUMN_TYPE',
        `key column "${k}" holds ${type} values; a key must be a string, number, boolean or date. Nothing was stored.`,
        { feature: info.name, params, details: { column: k, type } },
      );
    }
  }
  return key;
}
