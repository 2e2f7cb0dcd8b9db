import { fileURLToPath } from 'node:url';

/** A source position from one stack line. @internal */
export interface StackPosition {
  /** File path with forward slashes (`C:/Users/x/users.ts` on Windows). */
  readonly file: string;
  readonly line: number;
}

/**
 * featurefn's own folders: the one this file runs from (`src/` under tsx or vitest, `dist/` when
 * built) and the package's `src/`, which source maps (`--enable-source-maps`) show instead of
 * `dist/`.
 */
const OWN_FOLDERS = [
  toSlashes(fileURLToPath(new URL('../', import.meta.url))),
  toSlashes(fileURLToPath(new URL('../../src/', import.meta.url))),
];
const TEST_FILE = /\.(test|spec)\.[cm]?[jt]sx?$/;

/**
 * Parses one V8 stack line (`at fn (/a/b.ts:3:14)`, `at file:///C:/a/b.ts:3:14`,
 * `at C:\a\b.ts:3:14`); `undefined` for native and `node:` frames. @internal
 */
export function parseStackLine(line: string): StackPosition | undefined {
  const match = /(?:^|[\s(])((?:file:\/\/)?(?:\/|[A-Za-z]:[\\/]|\\\\)[^()]*?):(\d+):\d+\)?\s*$/.exec(line);
  if (match === null) return undefined;
  let file = match[1]!;
  if (file.startsWith('file://')) {
    // Decoded by hand: fileURLToPath would read a Windows URL as a POSIX path on POSIX.
    file = decodeURIComponent(file.slice('file://'.length));
    if (/^\/[A-Za-z]:\//.test(file)) file = file.slice(1);
  }
  return { file: toSlashes(file), line: Number(match[2]) };
}

/** Whether a file belongs to featurefn itself (its tests excepted). @internal */
export function isOwnFile(file: string): boolean {
  return OWN_FOLDERS.some((folder) => file.startsWith(folder)) && !TEST_FILE.test(file);
}

/** `file:line` of the first stack frame outside featurefn's own files, whatever the runner. @internal */
export function callerLocation(stack = new Error().stack ?? ''): string {
  const lines = stack.split('\n');
  for (let i = 1; i < lines.length; i++) {
    const position = parseStackLine(lines[i]!);
    if (position !== undefined && !isOwnFile(position.file)) return `${position.file}:${position.line}`;
  }
  return 'unknown location';
}

/** The file name without folders and extension, for any separator. @internal */
export function fileStem(file: string): string {
  const name = file.slice(Math.max(file.lastIndexOf('/'), file.lastIndexOf('\\')) + 1);
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(0, dot) : name;
}

function toSlashes(path: string): string {
  return path.replaceAll('\\', '/');
}
