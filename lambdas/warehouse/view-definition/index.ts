export { ViewDefinitionError } from './errors.js';
export { parseViewDefinition } from './parse.js';
export { type CompiledView, compiledView, compileView } from './runner.js';
export { type NdjsonViewOptions, rowsOfNdjson } from './stream.js';
export type { ColumnSchema, ColumnValue, Row, ViewDefinition } from './types.js';
