import { DAY_MS, formatInstant, YEAR_MS } from '../clock.js';
import type { Cohort } from '../cohort.js';
import { conceptJson, patientId, type TypeModel, technicalPatientId } from '../model.js';
import { CONDITION_KINDS, type Code } from '../vocabulary.js';

/** A Group the sandbox can export (`Group/<id>/$export`) and lists as a Group resource. */
export interface GroupDefinition {
  readonly id: string;
  readonly name: string;
  /** The Condition its members share, if it is a disease registry. */
  readonly condition: Code | undefined;
  readonly lastUpdatedMs: number;
  contains(patient: number): boolean;
  /** Member patient indexes, ascending (computed on first use: `cohort` may have millions). */
  members(): readonly number[];
  /** The id in a member's `entity.reference` (`Patient/<it>`). */
  memberId(patient: number): string;
}

const SMALL_GROUP_SIZE = 10;
const TECHNICAL_ID_GROUP_SIZE = 25;
const DIABETES = CONDITION_KINDS[0]!;

function definition(
  id: string,
  name: string,
  condition: Code | undefined,
  lastUpdatedMs: number,
  contains: (patient: number) => boolean,
  patientCount: number,
  memberId: (patient: number) => string = patientId,
): GroupDefinition {
  let members: readonly number[] | undefined;
  return {
    id,
    name,
    condition,
    lastUpdatedMs,
    contains,
    memberId,
    members() {
      if (members === undefined) {
        const found: number[] = [];
        for (let patient = 0; patient < patientCount; patient++) if (contains(patient)) found.push(patient);
        members = Object.freeze(found);
      }
      return members;
    },
  };
}

/**
 * `cohort` (everyone), `diabetes` (the type 2 diabetes registry), `small` (the first 10) and
 * `cohort-technical-ids` (the first 25, its members referenced by their technical id, not their
 * logical id, as some EHRs' Groups do: a client resolving members must search by identifier).
 */
export function defineGroups(cohort: Cohort): readonly GroupDefinition[] {
  const n = cohort.patientCount;
  return [
    definition('cohort', 'All sandbox patients', undefined, cohort.epochMs - DAY_MS, () => true, n),
    definition(
      'diabetes',
      'Type 2 diabetes registry',
      DIABETES.snomed,
      cohort.epochMs - 30 * DAY_MS,
      (patient) => cohort.isDiabetic(patient),
      n,
    ),
    definition(
      'small',
      `First ${SMALL_GROUP_SIZE} patients`,
      undefined,
      cohort.epochMs - 4 * YEAR_MS,
      (patient) => patient < SMALL_GROUP_SIZE,
      n,
    ),
    definition(
      'cohort-technical-ids',
      `First ${TECHNICAL_ID_GROUP_SIZE} patients, referenced by technical id`,
      undefined,
      cohort.epochMs - 2 * YEAR_MS,
      (patient) => patient < TECHNICAL_ID_GROUP_SIZE,
      n,
      technicalPatientId,
    ),
  ];
}

export function groupModel(groups: readonly GroupDefinition[]): TypeModel {
  const render = (index: number): string => {
    const group = groups[index]!;
    const members = group.members();
    const parts = new Array<string>(members.length);
    for (let i = 0; i < members.length; i++) {
      parts[i] = `{"entity":{"reference":"Patient/${group.memberId(members[i]!)}"}}`;
    }
    const code = group.condition === undefined ? '' : `,"code":${conceptJson([group.condition])}`;
    return `{"resourceType":"Group","id":"${group.id}","meta":{"versionId":"1","lastUpdated":"${formatInstant(group.lastUpdatedMs)}"},"identifier":[{"system":"urn:oid:2.16.840.1.113883.3.7418.1.3","value":"${group.id}"}],"active":true,"type":"person","actual":true${code},"name":"${group.name}","quantity":${members.length},"member":[${parts.join(',')}]}`;
  };

  return {
    type: 'Group',
    scope: 'group',
    ownerCount: groups.length,
    countOf: () => 1,
    lastUpdated: (index) => groups[index]!.lastUpdatedMs,
    render,
    id: (index) => groups[index]!.id,
    search: {},
  };
}
