/**
 * The views a source's exports are loaded as: the project's defaults (warehouse/views/*.json, bundled into the
 * Lambda) plus the source's own. A source's view with a default's name replaces it; any other name adds a
 * table. The view's name is its table's name, so it must be one every SQL engine accepts.
 */
import allergyIntolerance from '../../warehouse/views/allergy_intolerance.json' with { type: 'json' };
import condition from '../../warehouse/views/condition.json' with { type: 'json' };
import documentReference from '../../warehouse/views/document_reference.json' with { type: 'json' };
import encounter from '../../warehouse/views/encounter.json' with { type: 'json' };
import immunization from '../../warehouse/views/immunization.json' with { type: 'json' };
import medicationRequest from '../../warehouse/views/medication_request.json' with { type: 'json' };
import observation from '../../warehouse/views/observation.json' with { type: 'json' };
import patient from '../../warehouse/views/patient.json' with { type: 'json' };
import procedure from '../../warehouse/views/procedure.json' with { type: 'json' };
import { type CompiledView, compiledView, ViewDefinitionError } from './view-definition/index.js';

export const DEFAULT_VIEW_DEFINITIONS: readonly unknown[] = Object.freeze([
  patient,
  encounter,
  condition,
  observation,
  medicationRequest,
  immunization,
  procedure,
  allergyIntolerance,
  documentReference,
]);

/** Lower case, digits and _: a table name Glue/Athena and DuckDB take unquoted. */
const TABLE_NAME = /^[a-z][a-z0-9_]{0,63}$/;

/**
 * The compiled views for a source, by table name, in order: defaults first (replaced in place by a source's
 * view of the same name), then the source's new ones.
 */
export function viewsFor(sourceViews: readonly unknown[] = []): ReadonlyMap<string, CompiledView> {
  const views = new Map<string, CompiledView>();
  for (const definition of DEFAULT_VIEW_DEFINITIONS) {
    const view = compiledView(definition);
    views.set(tableName(view, 'default view'), view);
  }
  const seen = new Set<string>();
  for (const [i, definition] of sourceViews.entries()) {
    const view = compiledView(definition);
    const name = tableName(view, `the source's views[${i}]`);
    if (seen.has(name)) {
      throw new ViewDefinitionError(
        `the source's views[${i}]: a second view named "${name}": expected one view per name (it names the table)`,
      );
    }
    seen.add(name);
    views.set(name, view);
  }
  return views;
}

function tableName(view: CompiledView, where: string): string {
  const name = view.view.name;
  if (name === undefined || !TABLE_NAME.test(name)) {
    throw new ViewDefinitionError(
      `${where}: ViewDefinition ${view.label}: name: expected lower-case letters, digits and _ starting with a letter (it names the table)`,
    );
  }
  return name;
}
