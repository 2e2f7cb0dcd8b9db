import { execFileSync } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { callerLocation, fileStem, parseStackLine } from './caller.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SRC = join(ROOT, 'src');
const TSX = join(ROOT, 'node_modules/.bin/tsx');
const scratch = mkdtempSync(join(tmpdir(), 'featurefn-caller-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('stack line parsing', () => {
  it('reads POSIX, Windows and file URL positions', () => {
    expect(parseStackLine('    at Object.<anonymous> (/home/ana/proj/users.ts:3:14)')).toEqual({
      file: '/home/ana/proj/users.ts',
      line: 3,
    });
    expect(parseStackLine('    at /home/ana/proj/orders.js:12:1')).toEqual({
      file: '/home/ana/proj/orders.js',
      line: 12,
    });
    expect(parseStackLine('    at async count (file:///home/ana/my%20proj/users.ts:7:3)')).toEqual({
      file: '/home/ana/my proj/users.ts',
      line: 7,
    });
    expect(parseStackLine('    at Object.<anonymous> (C:\\Users\\x\\users.ts:3:14)')).toEqual({
      file: 'C:/Users/x/users.ts',
      line: 3,
    });
    expect(parseStackLine('    at C:\\Users\\x\\orders.ts:5:2')).toEqual({
      file: 'C:/Users/x/orders.ts',
      line: 5,
    });
    expect(parseStackLine('    at file:///C:/Users/x/users.ts:3:14')).toEqual({
      file: 'C:/Users/x/users.ts',
      line: 3,
    });
    expect(
      parseStackLine('    at ModuleJob.run (node:internal/modules/esm/module_job:234:25)'),
    ).toBeUndefined();
    expect(parseStackLine('    at new Promise (<anonymous>)')).toBeUndefined();
    expect(fileStem('C:/Users/x/users.ts')).toBe('users');
    expect(fileStem('/a/b/orders.mjs')).toBe('orders');
  });

  it('skips featurefn’s own frames, built or source-mapped', () => {
    const stack = [
      'Error',
      `    at callerLocation (${join(ROOT, 'src/feature/caller.ts')}:40:3)`,
      `    at FeatureStore.feature (${join(ROOT, 'src/feature/feature-store.ts')}:80:3)`,
      `    at feature (${pathToFileURL(join(ROOT, 'src/feature/feature-store.ts')).href}:300:3)`,
      '    at file:///C:/Users/x/users.ts:3:14',
    ].join('\n');
    expect(callerLocation(stack)).toBe('C:/Users/x/users.ts:3');
  });
});

/** Transpiles the library into a folder of the package, with source maps back to `src/`. */
function buildLibrary(outDir: string): void {
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory()
        ? walk(join(dir, e.name))
        : e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')
          ? [join(dir, e.name)]
          : [],
    );
  for (const file of walk(SRC)) {
    const out = join(outDir, relative(SRC, file)).replace(/\.ts$/, '.js');
    const { outputText, sourceMapText } = ts.transpileModule(readFileSync(file, 'utf8'), {
      fileName: file,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, sourceMap: true },
    });
    const map = JSON.parse(sourceMapText!);
    map.sources = [relative(dirname(out), join(dirname(outDir), 'src', relative(SRC, file)))];
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(
      out,
      outputText.replace(
        /\/\/# sourceMappingURL=.*$/m,
        `//# sourceMappingURL=${out.slice(dirname(out).length + 1)}.map`,
      ),
    );
    writeFileSync(`${out}.map`, JSON.stringify(map));
  }
}

/** Two files each defining `count`, and a main printing the names and where they were defined. */
function writeProject(dir: string, entry: string, ext: string): string {
  mkdirSync(dir, { recursive: true });
  const lib = pathToFileURL(entry).href;
  for (const name of ['users', 'orders']) {
    writeFileSync(
      join(dir, `${name}.${ext}`),
      `import { feature } from '${lib}';\nexport const count = feature(async function count() {\n  return [{ id: 1, n: 1 }];\n});\n`,
    );
  }
  const main = join(dir, `main.${ext}`);
  writeFileSync(
    main,
    `import { count as a } from './users.${ext === 'ts' ? 'js' : ext}';\nimport { count as b } from './orders.${ext === 'ts' ? 'js' : ext}';\nconsole.log(JSON.stringify([a.info, b.info].map((i) => [i.name, i.definedAt])));\n`,
  );
  return main;
}

describe('default names under real runners', () => {
  it('node --enable-source-maps on the built library names features after their own files', () => {
    // A package laid out as published: dist/ built with source maps into src/.
    const pkg = join(scratch, 'featurefn');
    mkdirSync(pkg);
    symlinkSync(SRC, join(pkg, 'src'));
    symlinkSync(join(ROOT, 'node_modules'), join(pkg, 'node_modules'));
    const dist = join(pkg, 'dist');
    buildLibrary(dist);
    const main = writeProject(join(scratch, 'node'), join(dist, 'index.js'), 'mjs');
    for (const flags of [['--enable-source-maps'], []]) {
      const out = JSON.parse(execFileSync(process.execPath, [...flags, main], { encoding: 'utf8' }));
      expect(out).toEqual([
        ['users.count', `${join(scratch, 'node', 'users.mjs')}:2`],
        ['orders.count', `${join(scratch, 'node', 'orders.mjs')}:2`],
      ]);
    }
  });

  it('tsx on TypeScript sources names features after their own files', () => {
    const main = writeProject(join(scratch, 'tsx'), join(SRC, 'index.ts'), 'ts');
    const out = JSON.parse(execFileSync(TSX, [main], { encoding: 'utf8' }));
    expect(out).toEqual([
      ['users.count', `${join(scratch, 'tsx', 'users.ts')}:2`],
      ['orders.count', `${join(scratch, 'tsx', 'orders.ts')}:2`],
    ]);
  });
});
