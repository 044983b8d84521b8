/**
 * `organizeOutputBy=Patient` (IG 2.0, "Bulk Data Output File Organization"): output files made of
 * resource blocks, each "a header Parameters resource containing a parameter named header with a
 * reference to" a patient, then that patient and the resources of its compartment, of every type
 * asked for. Types outside the Patient compartment (Practitioner, Organization, Group) are left
 * out, which the IG allows ("MAY be omitted from the export"). A block is never split across files,
 * so no `continuesInFile` is needed.
 */
import { patientId } from '../data/model.js';
import type { Dataset, ExportableType, ResourceSelection } from '../data/types.js';
import type { LineSource } from './file-source.js';

/** Types whose resources belong to a patient's compartment in this dataset. */
const OUTSIDE_PATIENT_COMPARTMENT: readonly ExportableType[] = ['Practitioner', 'Organization', 'Group'];

/** Patient blocks per file: small, so a 20-patient export has several files. */
export const PATIENTS_PER_ORGANIZED_FILE = 5;

export interface OrganizedFile {
  /** `patients.<n>.ndjson`. */
  readonly name: string;
  /** Lines: each block's header and its resources. */
  readonly count: number;
  readonly source: LineSource;
}

export function organizedTypes(types: readonly ExportableType[]): ExportableType[] {
  return types.filter((type) => !OUTSIDE_PATIENT_COMPARTMENT.includes(type));
}

/** The export's files organized by patient, for the patients `patientIndexes` names (all when absent). */
export function organizedFiles(
  dataset: Pick<Dataset, 'count' | 'lines' | 'options'>,
  types: readonly ExportableType[],
  patientIndexes: readonly number[] | undefined,
  selection: (type: ExportableType) => ResourceSelection,
): OrganizedFile[] {
  const patients = patientIndexes ?? Array.from({ length: dataset.options.patientCount }, (_, i) => i);
  const blockTypes = organizedTypes(types);
  const blocks = patients
    .map((patient) => {
      const parts = blockTypes.map((type) => ({ ...selection(type), patientIndexes: [patient] }));
      const resources = parts.reduce((sum, part) => sum + dataset.count(part), 0);
      return { patient, parts, resources };
    })
    // A patient with nothing selected (a `_since` that none of its resources pass) has no block.
    .filter((block) => block.resources > 0);
  const files: OrganizedFile[] = [];
  for (let at = 0; at < blocks.length; at += PATIENTS_PER_ORGANIZED_FILE) {
    const inFile = blocks.slice(at, at + PATIENTS_PER_ORGANIZED_FILE);
    files.push({
      name: `patients.${files.length + 1}.ndjson`,
      count: inFile.reduce((sum, block) => sum + 1 + block.resources, 0),
      source: {
        *lines(from) {
          let line = 0;
          for (const block of inFile) {
            // The header names the patient even when `_since` leaves its Patient resource out of the block.
            const header = JSON.stringify({
              resourceType: 'Parameters',
              parameter: [
                { name: 'header', valueReference: { reference: `Patient/${patientId(block.patient)}` } },
              ],
            });
            if (line++ >= from) yield header;
            for (const part of block.parts) {
              for (const resource of dataset.lines(part)) if (line++ >= from) yield resource;
            }
          }
        },
      },
    });
  }
  return files;
}
