import { buildLambdas } from '../../scripts/build-lambdas.js';

/**
 * The construct takes its functions from dist/lambdas (prebundled at build
 * time); a clean clone has none. Building here, once per run, keeps
 * `npm test` self-sufficient and tests what `npm run synth` ships.
 */
export default async function setup(): Promise<void> {
  await buildLambdas();
}
