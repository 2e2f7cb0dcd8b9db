import type { FeatureInfo } from '../feature/feature.js';
import type { Params } from '../feature/params.js';
import type { Materializer } from '../materializer/materializer.js';
import { checkNames, type ParamSpec, paramsFor, takenNames } from '../resolver/resolvers.js';

/**
 * How a live read calls its features: each with only the parameters it takes (judged from its
 * materializations; all of `params` when nothing of it is materialized), and which features have
 * no materialization at those parameters, so that running the read would run their code. Refuses
 * a parameter no feature takes (`UNKNOWN_PARAMETER`). @internal
 */
export async function liveCalls(
  materializers: readonly (Materializer | undefined)[],
  features: readonly FeatureInfo[],
  spec: ParamSpec,
  params: Params,
): Promise<{ featureParams: Params[]; missing: string[] }> {
  const listed = await Promise.all(
    features.map(async (f, i) => (await materializers[i]?.listMaterializations(f.name)) ?? []),
  );
  const taken = listed.map((ms) => takenNames(ms.map((m) => m.paramsKey)));
  checkNames(
    spec,
    taken,
    features.map((f) => f.name),
  );
  const featureParams = taken.map((t) => paramsFor(params, t));
  const missing: string[] = [];
  for (let i = 0; i < features.length; i++) {
    const m = materializers[i];
    if (
      m === undefined ||
      (await m.findMaterialization(features[i]!.name, featureParams[i]!)) === undefined
    ) {
      missing.push(features[i]!.name);
    }
  }
  return { featureParams, missing };
}
