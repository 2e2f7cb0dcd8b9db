/** Where one decorator is attached: a store, the module prefix it covers, and how to undo it. @internal */
export interface Attachment {
  readonly store: object;
  readonly modulePrefix: string | undefined;
  readonly detach: () => void;
}

/** Keyed by decorator so that a materializer can find, and undo, every attachment of its own. */
const attachments = new WeakMap<object, Set<Attachment>>();

/** The non-enumerable link from a feature callable to the store it was registered in. @internal */
export const STORE_OF_FEATURE = Symbol('featurefn.store');

/** @internal */
export function recordAttachment(decorator: object, attachment: Attachment): void {
  const set = attachments.get(decorator) ?? new Set();
  attachments.set(decorator, set);
  set.add(attachment);
}

/** @internal */
export function forgetAttachment(decorator: object, attachment: Attachment): void {
  attachments.get(decorator)?.delete(attachment);
}

/** Every store (and prefix) a decorator is attached to now. @internal */
export function attachmentsOf(decorator: object): readonly Attachment[] {
  return [...(attachments.get(decorator) ?? [])];
}

/** Whether a decorator attached with `prefix` covers features of `module` (and its sub-modules). @internal */
export function covers(prefix: string | undefined, module: string): boolean {
  return prefix === undefined || module === prefix || module.startsWith(`${prefix}.`);
}
