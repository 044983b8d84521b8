import { PipelineError } from '../../errors.js';

/**
 * A ViewDefinition that cannot run as written (a missing element, a wrong JSON type, a FHIRPath that does not
 * parse, an undefined constant, unionAll branches whose columns differ), or a resource on which it cannot
 * produce a row as the spec defines (a non-collection column with several values, a `where` that is not
 * boolean). The message names the view, the path in it and what was expected; never resource content.
 */
export class ViewDefinitionError extends PipelineError {
  readonly code = 'ERR_VIEW_DEFINITION';
}
