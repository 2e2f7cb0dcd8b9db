import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire, SourceMap, type SourceMapPayload } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as TS from 'typescript';

/** What a feature's doc comment says. @internal */
export interface DocComment {
  /** The whole text before the tags. */
  readonly description: string | undefined;
  readonly maintainer: string | undefined;
  readonly status: string | undefined;
  readonly tags: readonly string[];
  /** `@param name text`, by name. */
  readonly params: Readonly<Record<string, string>>;
}

const NO_DOC: DocComment = Object.freeze({
  description: undefined,
  maintainer: undefined,
  status: undefined,
  tags: Object.freeze([]),
  params: Object.freeze({}),
});

let typescript: typeof TS | null | undefined;
/** TypeScript is an optional peer, loaded on the first metadata or version asked for, never at import. */
function loadTypeScript(): typeof TS | undefined {
  if (typescript === undefined) {
    try {
      typescript = createRequire(import.meta.url)('typescript') as typeof TS;
    } catch {
      typescript = null;
    }
  }
  return typescript ?? undefined;
}

const parsed = new Map<string, TS.SourceFile | null>();
function sourceFileOf(file: string): TS.SourceFile | undefined {
  const ts = loadTypeScript();
  if (ts === undefined) return undefined;
  let sf = parsed.get(file);
  if (sf === undefined) {
    try {
      sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
    } catch {
      sf = null; // not readable (bundled, deleted, a REPL): fall back to what the function shows
    }
    parsed.set(file, sf);
  }
  return sf ?? undefined;
}

function split(definedAt: string): { file: string; line: number } {
  const at = definedAt.lastIndexOf(':');
  return { file: definedAt.slice(0, at), line: Number(definedAt.slice(at + 1)) };
}

function lineOf(sf: TS.SourceFile, position: number): number {
  return sf.getLineAndCharacterOfPosition(position).line + 1;
}

/** The top-level statement of the `feature(...)` call made at `line`. */
function definingStatement(ts: typeof TS, sf: TS.SourceFile, line: number): TS.Node | undefined {
  let call: TS.CallExpression | undefined;
  const visit = (node: TS.Node): void => {
    if (call !== undefined) return;
    if (ts.isCallExpression(node) && lineOf(sf, node.expression.getEnd()) === line) call = node;
    else ts.forEachChild(node, visit);
  };
  visit(sf);
  let node: TS.Node | undefined = call;
  while (
    node !== undefined &&
    !(ts.isVariableStatement(node) || ts.isExpressionStatement(node) || ts.isExportAssignment(node))
  )
    node = node.parent;
  return node;
}

/**
 * The doc comment above the feature defined at `definedAt` (`file:line`), read with the TypeScript
 * compiler API from that file (`.ts`, or a compiled `.js` that kept its comments). For compiled
 * code that dropped them (a bundler, `removeComments`), the original source its source map names,
 * then the `.d.ts` beside it. Empty when TypeScript is not installed or nothing can be read. @internal
 */
export function docCommentAt(definedAt: string): DocComment {
  const ts = loadTypeScript();
  if (ts === undefined) return NO_DOC;
  const { file, line } = split(definedAt);
  const sf = sourceFileOf(file);
  if (sf === undefined) return NO_DOC;
  const statement = definingStatement(ts, sf, line);
  if (statement === undefined) return NO_DOC;
  const doc = docOf(ts, sf, statement);
  if (doc !== NO_DOC || !/\.[cm]?js$/.test(file)) return doc;
  const original = originalPosition(file, sf, statement);
  if (original !== undefined) {
    const fromSource = docCommentAt(original);
    if (fromSource !== NO_DOC) return fromSource;
  }
  return declarationDoc(ts, file, statement);
}

function docOf(ts: typeof TS, sf: TS.SourceFile, statement: TS.Node): DocComment {
  const holder = ts.isVariableStatement(statement) ? statement.declarationList.declarations[0]! : statement;
  const doc = ts.getJSDocCommentsAndTags(holder).filter(ts.isJSDoc).at(-1);
  if (doc === undefined) return NO_DOC;
  const text = (c: string | TS.NodeArray<TS.JSDocComment> | undefined) =>
    ts.getTextOfJSDocComment(c)?.trim() || undefined;
  const description = text(doc.comment);
  const tags: Record<string, string | undefined> = {};
  const params: Record<string, string> = {};
  for (const tag of doc.tags ?? []) {
    if (ts.isJSDocParameterTag(tag))
      params[tag.name.getText(sf)] = text(tag.comment)?.replace(/^-\s*/, '') ?? '';
    else tags[tag.tagName.text] = text(tag.comment);
  }
  return Object.freeze({
    description,
    maintainer: tags.maintainer,
    status: tags.status,
    tags: Object.freeze(
      (tags.tags ?? '')
        .split(',')
        .map((t) => t.trim())
        .filter((t) => t !== ''),
    ),
    params: Object.freeze(params),
  });
}

/** `file:line` of `statement` in the source `file`'s source map names, if it has one and it is readable. */
function originalPosition(file: string, sf: TS.SourceFile, statement: TS.Node): string | undefined {
  const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(sf.text)?.[1];
  if (url === undefined) return undefined;
  try {
    const inline = /^data:application\/json;(?:charset=utf-8;)?base64,(.*)$/.exec(url);
    const mapFile = resolve(dirname(file), url);
    const payload = JSON.parse(
      inline ? Buffer.from(inline[1]!, 'base64').toString('utf8') : readFileSync(mapFile, 'utf8'),
    ) as SourceMapPayload;
    const start = sf.getLineAndCharacterOfPosition(statement.getStart(sf));
    const entry = new SourceMap(payload).findEntry(start.line, start.character);
    if (!('originalSource' in entry)) return undefined;
    const base = inline ? dirname(file) : dirname(mapFile);
    const source = entry.originalSource.startsWith('file:')
      ? fileURLToPath(entry.originalSource)
      : resolve(base, payload.sourceRoot ?? '', entry.originalSource);
    return `${source}:${entry.originalLine + 1}`;
  } catch {
    return undefined; // no map, or a map that does not parse: nothing to add
  }
}

/** The doc comment a `.d.ts` beside compiled `file` gives the variable `statement` declares. */
function declarationDoc(ts: typeof TS, file: string, statement: TS.Node): DocComment {
  if (!ts.isVariableStatement(statement)) return NO_DOC;
  const name = statement.declarationList.declarations[0]?.name;
  if (name === undefined || !ts.isIdentifier(name)) return NO_DOC;
  const dts = sourceFileOf(file.replace(/\.([cm]?)js$/, '.d.$1ts'));
  if (dts === undefined) return NO_DOC;
  for (const declared of dts.statements) {
    if (
      ts.isVariableStatement(declared) &&
      declared.declarationList.declarations.some((d) => ts.isIdentifier(d.name) && d.name.text === name.text)
    )
      return docOf(ts, dts, declared);
  }
  return NO_DOC;
}

/**
 * Text of the top-level declarations of the defining file that `source` reaches (constants,
 * functions, classes, enums, followed transitively), which `fn.toString()` does not show. The
 * feature's own statement is left out. @internal
 */
export function reachedDeclarations(definedAt: string, source: string): string[] {
  const ts = loadTypeScript();
  const { file, line } = split(definedAt);
  const sf = sourceFileOf(file);
  if (ts === undefined || sf === undefined) return [];
  const byName = new Map<string, TS.Statement>();
  for (const statement of sf.statements) {
    if (lineOf(sf, statement.getStart(sf)) <= line && line <= lineOf(sf, statement.getEnd())) continue;
    if (ts.isVariableStatement(statement)) {
      for (const d of statement.declarationList.declarations)
        if (ts.isIdentifier(d.name)) byName.set(d.name.text, statement);
    } else if (
      (ts.isFunctionDeclaration(statement) ||
        ts.isClassDeclaration(statement) ||
        ts.isEnumDeclaration(statement)) &&
      statement.name !== undefined
    ) {
      byName.set(statement.name.text, statement);
    }
  }
  const reached = new Set<TS.Statement>();
  const pending = [source];
  while (pending.length > 0) {
    for (const [name] of pending.pop()!.matchAll(/[A-Za-z_$][\w$]*/g)) {
      const statement = byName.get(name);
      if (statement === undefined || reached.has(statement)) continue;
      reached.add(statement);
      pending.push(statement.getText(sf));
    }
  }
  return [...reached].sort((a, b) => a.pos - b.pos).map((s) => s.getText(sf));
}

/** The first paragraph of a description, on one line. @internal */
export function summaryOf(description: string | undefined): string | undefined {
  return description?.split(/\n\s*\n/, 1)[0]?.replace(/\s*\n\s*/g, ' ');
}

/** SHA-256 of the given parts, as hex. @internal */
export function hashOf(parts: readonly unknown[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
}
