import { formatInstant, MINUTE_MS } from '../clock.js';
import { type Cohort, SALT } from '../cohort.js';
import {
  clinicalId,
  codedJson,
  conceptJson,
  organizationId,
  patientId,
  practitionerId,
  profileJson,
  type TypeModel,
} from '../model.js';
import { Stream, weightedChoice } from '../random.js';
import { codeParameter } from '../search.js';
import { DOCUMENT_REFERENCE_STATUSES, NOTE_SENTENCES, NOTE_TYPES, SYSTEM } from '../vocabulary.js';

const PROFILE = profileJson('http://hl7.org/fhir/us/core/StructureDefinition/us-core-documentreference');
const STATUS_CODES = DOCUMENT_REFERENCE_STATUSES.map((status) => status.code);
const chooseStatus = weightedChoice(DOCUMENT_REFERENCE_STATUSES.map((status) => status.weight));
const TYPES = NOTE_TYPES.map((type) => conceptJson([type]));
const CLINICAL_NOTE = {
  system: SYSTEM.usCoreDocumentCategory,
  code: 'clinical-note',
  display: 'Clinical Note',
};
const CATEGORY = codedJson([CLINICAL_NOTE]);
const FORMAT = JSON.stringify({
  system: 'http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode',
  code: 'urn:ihe:iti:xds:2017:mimeTypeSufficient',
  display: 'mimeType Sufficient',
});

/**
 * Note text is stored base64-encoded, as EHRs inline it. Each piece is padded to a multiple of
 * 3 bytes so that the base64 of a note is the concatenation of its pieces' base64: encoding is
 * a lookup, not work per resource.
 */
interface NotePiece {
  readonly base64: string;
  readonly bytes: number;
}

function notePiece(line: string, newlines: number): NotePiece {
  const length = line.length + newlines;
  const padded = `${line.padEnd(Math.ceil(length / 3) * 3 - newlines, ' ')}${'\n'.repeat(newlines)}`;
  return { base64: Buffer.from(padded, 'ascii').toString('base64'), bytes: padded.length };
}

const TITLES = NOTE_TYPES.map((type) => notePiece(type.display.toUpperCase(), 2));
const SENTENCES = NOTE_SENTENCES.map((sentence) => notePiece(sentence, 1));

const SENTENCE_STEP = 5;

const HEX_PAIRS = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Eight random hex digits. */
function hex8(stream: Stream): string {
  const bits = Math.floor(stream.next() * 4294967296);
  return `${HEX_PAIRS[bits >>> 24]}${HEX_PAIRS[(bits >>> 16) & 255]}${HEX_PAIRS[(bits >>> 8) & 255]}${HEX_PAIRS[bits & 255]}`;
}

export function documentReferenceModel(cohort: Cohort): TypeModel {
  const stream = new Stream();
  const typeOf = (patient: number, j: number): number =>
    cohort.hash(SALT.documentKind, patient, j) % NOTE_TYPES.length;
  const statusOf = (patient: number, j: number): number =>
    chooseStatus(cohort.unit(SALT.documentStatus, patient, j));
  /** Signed within two days of the end of its encounter. */
  const signed = (patient: number, j: number): number =>
    cohort.encounterEnd(patient, cohort.encounterOf(patient, j)) +
    (30 + (cohort.hash(SALT.documentTiming, patient, j) % 2850)) * MINUTE_MS;
  const lastUpdated = (patient: number, j: number): number =>
    signed(patient, j) + (cohort.hash(SALT.documentTiming, patient, j + 64) % 600) * 1000;

  const render = (patient: number, j: number): string => {
    stream.reset(cohort.hash(SALT.documentRender, patient, j));
    const typeIndex = typeOf(patient, j);
    const encounter = cohort.encounterOf(patient, j);
    const date = formatInstant(signed(patient, j));
    const author = cohort.encounterPractitioner(patient, encounter);
    const title = TITLES[typeIndex]!;
    let data = title.base64;
    let bytes = title.bytes;
    // A step coprime with the number of sentences never repeats one within a note.
    const first = stream.below(SENTENCES.length);
    for (let k = 0, sentences = stream.between(2, 6); k < sentences; k++) {
      const sentence = SENTENCES[(first + k * SENTENCE_STEP) % SENTENCES.length]!;
      data += sentence.base64;
      bytes += sentence.bytes;
    }
    const a = hex8(stream);
    const b = hex8(stream);
    const c = hex8(stream);
    const uuid = `${a}-${b.slice(0, 4)}-4${b.slice(5)}-a${c.slice(1, 4)}-${c.slice(4)}${hex8(stream)}`;
    return `{"resourceType":"DocumentReference","id":"${clinicalId('DocumentReference', patient, j)}","meta":{"versionId":"1","lastUpdated":"${formatInstant(lastUpdated(patient, j))}"${PROFILE}},"identifier":[{"system":"urn:ietf:rfc:3986","value":"urn:uuid:${uuid}"}],"status":"${STATUS_CODES[statusOf(patient, j)]}","docStatus":"final","type":${TYPES[typeIndex]},"category":[${CATEGORY}],"subject":{"reference":"Patient/${patientId(patient)}"},"date":"${date}","author":[{"reference":"Practitioner/${practitionerId(author)}"}],"custodian":{"reference":"Organization/${organizationId(cohort.organizationOf(author))}"},"content":[{"attachment":{"contentType":"text/plain; charset=utf-8","language":"en-US","data":"${data}","size":${bytes},"title":"${NOTE_TYPES[typeIndex]!.display}","creation":"${date}"},"format":${FORMAT}}],"context":{"encounter":[{"reference":"Encounter/${clinicalId('Encounter', patient, encounter)}"}],"period":{"start":"${formatInstant(cohort.encounterStart(patient, encounter))}","end":"${formatInstant(cohort.encounterEnd(patient, encounter))}"}}}`;
  };

  return {
    type: 'DocumentReference',
    scope: 'clinical',
    ownerCount: cohort.patientCount,
    countOf: cohort.counter('DocumentReference'),
    lastUpdated,
    render,
    id: (patient, j) => clinicalId('DocumentReference', patient, j),
    search: {
      status: codeParameter(SYSTEM.documentReferenceStatus, STATUS_CODES, statusOf),
      type: { domain: NOTE_TYPES.map((type) => [type]), valueIndex: typeOf },
      category: { domain: NOTE_TYPES.map(() => [CLINICAL_NOTE]), valueIndex: typeOf },
    },
  };
}
