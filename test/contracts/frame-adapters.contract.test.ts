import { DuckDBInstance } from '@duckdb/node-api';
import { Field, RecordBatch, Schema, Table, tableToIPC } from 'apache-arrow';
import { polarsAdapter, polarsLazyAdapter } from 'featurefn/polars';
import pl from 'nodejs-polars';
import { duckdbAdapter } from '../../src/engines/duckdb/duckdb-adapter.js';
import { columnDefinitions, quoteIdentifier } from '../../src/engines/duckdb/duckdb-dialect.js';
import { appendBatches } from '../../src/engines/duckdb/duckdb-load.js';
import { arrowAdapter } from '../../src/frame/arrow/arrow-adapter.js';
import { columnsOf, tableToRows } from '../../src/frame/columns.js';
import { rowsAdapter } from '../../src/frame/rows/rows-adapter.js';
import { describeFrameAdapter } from './frame-adapter-contract.js';

describeFrameAdapter('rows', {
  adapter: rowsAdapter,
  make: (table) => tableToRows(table),
  skip: {
    'fromArrow then toArrow keeps the column types':
      'row objects carry values, not Arrow types: int8/int16 widen to int32, float32 to float64, dates read as timestamps (every value is kept)',
    'toBatches concatenate to toArrow': 'row arrays are converted whole; the adapter has no toBatches',
    'an empty frame keeps its columns': 'an empty array of row objects has no columns to keep',
  },
});

describeFrameAdapter('arrow', {
  adapter: arrowAdapter,
  // As user code marks a JSON column: a schema with the metadata over batches built without it,
  // split in two so that toBatches has more than one batch to give.
  make: (table) => {
    const half = Math.floor(table.numRows / 2);
    const plain = new Schema(table.schema.fields.map((f) => new Field(f.name, f.type, f.nullable)));
    const batches = [...table.slice(0, half).batches, ...table.slice(half).batches].map(
      (b) => new RecordBatch(plain, b.data),
    );
    return new Table(table.schema, batches);
  },
});

describeFrameAdapter('duckdb', {
  adapter: duckdbAdapter,
  // A real query result: the table is loaded into an in-memory DuckDB and selected back.
  make: (table) => duckdbAdapter.fromArrow(table),
});

describeFrameAdapter('duckdb, materialized result of run()', {
  adapter: duckdbAdapter,
  // The table is loaded into DuckDB, then selected with `run`, which gives a DuckDBMaterializedResult.
  make: async (table) => {
    const connection = await (await DuckDBInstance.fromCache(':memory:')).connect();
    const name = `contract_${++loaded}`;
    const columns = columnsOf(table);
    const definition = columnDefinitions(columns);
    await connection.run(`CREATE TABLE ${quoteIdentifier(name)} (${definition})`);
    await appendBatches(connection, { schema: 'main', name }, columns, table.batches);
    return connection.run(`SELECT * FROM ${quoteIdentifier(name)} ORDER BY id`);
  },
});

let loaded = 0;

describeFrameAdapter('polars DataFrame', {
  adapter: polarsAdapter,
  make: (table) => polarsAdapter.fromArrow(table),
  skip: {
    'toBatches concatenate to toArrow':
      'polars frames are converted whole through Arrow IPC; the adapter has no toBatches',
  },
});

describeFrameAdapter('polars LazyFrame', {
  adapter: polarsLazyAdapter,
  make: (table) => polarsLazyAdapter.fromArrow(table),
  skip: {
    'toBatches concatenate to toArrow':
      'lazy frames are collected, then converted whole; the adapter has no toBatches',
  },
});

describeFrameAdapter('polars DataFrame built by user code', {
  adapter: polarsAdapter,
  // Not through featurefn: what a feature computing with polars from its own data returns.
  make: (table) => {
    const ipc = tableToIPC(table, 'file');
    return pl.readIPC(Buffer.from(ipc.buffer, ipc.byteOffset, ipc.byteLength));
  },
  unsupported: {
    json: 'polars has no JSON type: a frame built outside featurefn holds JSON as plain text, stored as a string column',
  },
  skip: {
    'toBatches concatenate to toArrow':
      'polars frames are converted whole through Arrow IPC; the adapter has no toBatches',
  },
});
