import { FeatureStore, type Materializer } from 'featurefn';
import { describe, it } from 'vitest';

declare const materializer: Materializer;

describe('materialize takes options after the parameters', () => {
  it('keeps materialize(f) for features without parameters, and checks both arguments', () => {
    const store = new FeatureStore();
    const none = store.feature(async function none() {
      return [{ id: 1 }];
    });
    const dated = store.feature(async function dated(_p: { when: Date }) {
      return [{ id: 1 }];
    });
    void materializer.materialize(none);
    void materializer.materialize(none, {}, { timeout: '10 minutes' });
    void materializer.materialize(dated, { when: new Date() }, { timeout: 60_000 });
    // @ts-expect-error: the parameters are required
    void materializer.materialize(dated);
    // @ts-expect-error: a timeout is a duration, not a boolean
    void materializer.materialize(dated, { when: new Date() }, { timeout: true });
  });
});
