import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { FeatureStore } from './feature-store.js';
import { docCommentAt } from './source-info.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TSX = join(ROOT, 'node_modules/.bin/tsx');
const scratch = mkdtempSync(join(tmpdir(), 'featurefn-version-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function fixture(dir: string, name: string, { factor = 10, body = 'scale(1)', options = '' } = {}): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, `${name}.ts`),
    [
      `import { feature } from '${pathToFileURL(join(ROOT, 'src/index.ts')).href}';`,
      `const FACTOR = ${factor};`,
      'function scale(x: number) {',
      '  return x * FACTOR;',
      '}',
      `export const score = feature({ entity: 'id'${options} }, async function score() {`,
      `  return [{ id: 1, v: ${body} }];`,
      '});',
      '',
    ].join('\n'),
  );
}

/** Versions of `score` in each file, read in a fresh tsx process. */
function versionsIn(dir: string, names: readonly string[]): Record<string, string> {
  const main = join(dir, 'main.ts');
  writeFileSync(
    main,
    `${names.map((n) => `import { score as ${n} } from './${n}.js';`).join('\n')}\n` +
      `console.log(JSON.stringify({ ${names.map((n) => `${n}: ${n}.info.version`).join(', ')} }));\n`,
  );
  return JSON.parse(execFileSync(TSX, [main], { encoding: 'utf8' }));
}

describe('feature versions', () => {
  it('change with the body, a reached top-level constant and the version option; stay equal across processes and folders', () => {
    const one = join(scratch, 'one');
    fixture(one, 'base');
    fixture(one, 'body', { body: 'scale(2)' });
    fixture(one, 'constant', { factor: 99 });
    fixture(one, 'option', { options: ", version: '2'" });
    const first = versionsIn(one, ['base', 'body', 'constant', 'option']);
    expect(first.base).toMatch(/^[0-9a-f]{64}$/);
    expect(new Set(Object.values(first)).size).toBe(4);

    const elsewhere = join(scratch, 'another', 'folder');
    fixture(elsewhere, 'base');
    expect(versionsIn(elsewhere, ['base']).base).toBe(first.base);
  });

  it('include the versions of the features a run called (lineage)', async () => {
    const store = new FeatureStore();
    store.config.interactive = true;
    const inner = store.feature({ module: 'm', entity: 'id' }, async function inner() {
      return [{ id: 1, v: 1 }];
    });
    const outer = store.feature({ module: 'm', entity: 'id' }, async function outer() {
      const rows = await inner();
      return rows.map((r) => ({ ...r, v: r.v * 2 }));
    });
    expect(store.versionOf(outer)).toBe(outer.info.version);
    await outer.compute();
    expect(store.lineageOf(outer)).toEqual(['m.inner']);
    const before = store.versionOf(outer);
    expect(before).not.toBe(outer.info.version);
    store.feature({ module: 'm', entity: 'id' }, async function inner() {
      return [{ id: 1, v: 1, changed: true }];
    });
    expect(store.versionOf(outer)).not.toBe(before);
  });
});

describe('metadata from the doc comment', () => {
  it('reads summary, text and every tag, merged with options (options win)', () => {
    const store = new FeatureStore();
    /**
     * How many favorites a user has made
     * up to `when`.
     *
     * Counts only favorites that were not undone.
     * @maintainer John Smith <john.smith@example.com>
     * @status production
     * @tags PII, appteam
     * @param when - the point in time
     */
    const nFavorites = store.feature({ module: 'events' }, async function nFavorites(_: { when: Date }) {
      return [];
    });
    expect(store.describeFeature(nFavorites)).toMatchObject({
      name: 'events.nFavorites',
      summary: 'How many favorites a user has made up to `when`.',
      description:
        'How many favorites a user has made\nup to `when`.\n\nCounts only favorites that were not undone.',
      maintainer: 'John Smith <john.smith@example.com>',
      status: 'production',
      tags: ['PII', 'appteam'],
      params: { when: 'the point in time' },
      version: nFavorites.info.version,
    });

    /** Old summary.
     * @status experimental
     * @tags a, b */
    const overridden = store.feature(
      { module: 'events', description: 'New summary.', status: 'deprecated', tags: ['c'] },
      async function overridden() {
        return [];
      },
    );
    expect(store.describeFeature(overridden)).toMatchObject({
      summary: 'New summary.',
      description: 'New summary.',
      status: 'deprecated',
      tags: ['c'],
      maintainer: undefined,
    });
  });

  it('falls back to options alone when there is no doc comment', () => {
    const store = new FeatureStore();
    const bare = store.feature({ module: 'events', maintainer: 'Ana' }, async function bare() {
      return [];
    });
    expect(store.describeFeature(bare)).toMatchObject({
      summary: undefined,
      description: undefined,
      maintainer: 'Ana',
      status: undefined,
      tags: [],
      params: {},
    });
  });
});

describe('doc comments of compiled code', () => {
  const source = [
    "import { feature } from 'featurefn';",
    '',
    '/**',
    ' * Departures per airport',
    ' * on the day.',
    ' * @maintainer Ana',
    ' * @tags flights',
    ' */',
    "export const departures = feature({ entity: 'origin' }, async function departures() {",
    '  return [];',
    '});',
    '',
  ].join('\n');
  const expected = {
    description: 'Departures per airport\non the day.',
    maintainer: 'Ana',
    tags: ['flights'],
  };
  /** `file:line` of the `feature(` call in compiled `js`, as a stack trace would give it. */
  const callIn = (file: string, js: string) =>
    `${file}:${js.split('\n').findIndex((l) => l.includes('feature({')) + 1}`;
  const compile = (dir: string, options: import('typescript').CompilerOptions) => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'features.ts'), source);
    const out = ts.transpileModule(source, {
      fileName: 'features.ts',
      compilerOptions: {
        module: ts.ModuleKind.ESNext,
        target: ts.ScriptTarget.ES2022,
        removeComments: true,
        ...options,
      },
    });
    writeFileSync(join(dir, 'features.js'), out.outputText);
    if (out.sourceMapText) writeFileSync(join(dir, 'features.js.map'), out.sourceMapText);
    expect(out.outputText).not.toContain('@maintainer');
    return out.outputText;
  };

  it('follows a source map file or an inline one back to the TypeScript source', () => {
    for (const [dir, options] of [
      [join(scratch, 'mapped'), { sourceMap: true }],
      [join(scratch, 'inline'), { inlineSourceMap: true }],
    ] as const) {
      const js = compile(dir, options);
      expect(docCommentAt(callIn(join(dir, 'features.js'), js))).toMatchObject(expected);
    }
  });

  it('reads the .d.ts beside compiled code that has no comments and no source map', () => {
    const bare = join(scratch, 'bare');
    const bareJs = compile(bare, {});
    rmSync(join(bare, 'features.ts'));
    expect(docCommentAt(callIn(join(bare, 'features.js'), bareJs)).description).toBeUndefined();

    const dir = join(scratch, 'declared');
    const js = compile(dir, {});
    rmSync(join(dir, 'features.ts'));
    writeFileSync(
      join(dir, 'features.d.ts'),
      ts.transpileDeclaration(source, { fileName: 'features.ts', compilerOptions: {} }).outputText,
    );
    expect(docCommentAt(callIn(join(dir, 'features.js'), js))).toMatchObject(expected);
  });
});
