import { loadUsCoreValidator } from './engine/index.js';
import type { ResourceValidator } from './types.js';

/** The rule set every export is validated against: US Core 6.1.0 (ONC HTI-1), compiled once per container. */
export const loadExportValidator = (): ResourceValidator => loadUsCoreValidator('6.1.0');
