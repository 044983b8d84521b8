/**
 * Terminology the synthetic records draw from: real LOINC, SNOMED CT, RxNorm, CVX, ICD-10-CM and
 * HL7 codes with their display text, so that downstream mapping code sees what EHRs send.
 */

export interface Code {
  readonly system: string;
  readonly code: string;
  readonly display: string;
}

export const SYSTEM = {
  loinc: 'http://loinc.org',
  snomed: 'http://snomed.info/sct',
  rxnorm: 'http://www.nlm.nih.gov/research/umls/rxnorm',
  cvx: 'http://hl7.org/fhir/sid/cvx',
  icd10cm: 'http://hl7.org/fhir/sid/icd-10-cm',
  ucum: 'http://unitsofmeasure.org',
  npi: 'http://hl7.org/fhir/sid/us-npi',
  ssn: 'http://hl7.org/fhir/sid/us-ssn',
  ombRace: 'urn:oid:2.16.840.1.113883.6.238',
  mrn: 'urn:oid:2.16.840.1.113883.3.7418.1.1',
  visit: 'urn:oid:2.16.840.1.113883.3.7418.1.2',
  actCode: 'http://terminology.hl7.org/CodeSystem/v3-ActCode',
  administrativeGender: 'http://hl7.org/fhir/administrative-gender',
  encounterStatus: 'http://hl7.org/fhir/encounter-status',
  observationStatus: 'http://hl7.org/fhir/observation-status',
  observationCategory: 'http://terminology.hl7.org/CodeSystem/observation-category',
  conditionClinical: 'http://terminology.hl7.org/CodeSystem/condition-clinical',
  conditionCategory: 'http://terminology.hl7.org/CodeSystem/condition-category',
  medicationRequestStatus: 'http://hl7.org/fhir/CodeSystem/medicationrequest-status',
  allergyClinical: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical',
  allergyCategory: 'http://hl7.org/fhir/allergy-intolerance-category',
  eventStatus: 'http://hl7.org/fhir/event-status',
  documentReferenceStatus: 'http://hl7.org/fhir/document-reference-status',
  usCoreDocumentCategory: 'http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category',
} as const;

const loinc = (code: string, display: string): Code => ({ system: SYSTEM.loinc, code, display });
const snomed = (code: string, display: string): Code => ({ system: SYSTEM.snomed, code, display });
const rxnorm = (code: string, display: string): Code => ({ system: SYSTEM.rxnorm, code, display });
const cvx = (code: string, display: string): Code => ({ system: SYSTEM.cvx, code, display });
const icd10 = (code: string, display: string): Code => ({ system: SYSTEM.icd10cm, code, display });

/** A code whose FHIR type is `code` (a status): searchable as `system|code` with its CodeSystem. */
export interface StatusCode {
  readonly code: string;
  readonly weight: number;
}

export const ADMINISTRATIVE_GENDERS = ['male', 'female', 'other', 'unknown'] as const;

// ---------------------------------------------------------------- Patient

export const FAMILY_NAMES = [
  'Smith',
  'Johnson',
  'Williams',
  'Brown',
  'Jones',
  'Garcia',
  'Miller',
  'Davis',
  'Rodriguez',
  'Martinez',
  'Hernandez',
  'Lopez',
  'Gonzalez',
  'Wilson',
  'Anderson',
  'Thomas',
  'Taylor',
  'Moore',
  'Jackson',
  'Martin',
  'Lee',
  'Perez',
  'Thompson',
  'White',
  'Harris',
  'Sanchez',
  'Clark',
  'Ramirez',
  'Lewis',
  'Robinson',
  'Walker',
  'Young',
  'Allen',
  'King',
  'Wright',
  'Scott',
  'Torres',
  'Nguyen',
  'Hill',
  'Flores',
  'Green',
  'Adams',
  'Nelson',
  'Baker',
  'Hall',
  'Rivera',
  'Campbell',
  'Mitchell',
  'Carter',
  'Roberts',
] as const;

export const MALE_GIVEN_NAMES = [
  'James',
  'John',
  'Robert',
  'Michael',
  'William',
  'David',
  'Richard',
  'Joseph',
  'Thomas',
  'Charles',
  'Christopher',
  'Daniel',
  'Matthew',
  'Anthony',
  'Mark',
  'Donald',
  'Steven',
  'Paul',
  'Andrew',
  'Joshua',
  'Kenneth',
  'Kevin',
  'Brian',
  'George',
  'Timothy',
  'Ronald',
  'Edward',
  'Jason',
  'Jeffrey',
  'Ryan',
] as const;

export const FEMALE_GIVEN_NAMES = [
  'Mary',
  'Patricia',
  'Jennifer',
  'Linda',
  'Elizabeth',
  'Barbara',
  'Susan',
  'Jessica',
  'Sarah',
  'Karen',
  'Lisa',
  'Nancy',
  'Betty',
  'Margaret',
  'Sandra',
  'Ashley',
  'Kimberly',
  'Emily',
  'Donna',
  'Michelle',
  'Carol',
  'Amanda',
  'Dorothy',
  'Melissa',
  'Deborah',
  'Stephanie',
  'Rebecca',
  'Sharon',
  'Laura',
  'Cynthia',
] as const;

export interface City {
  readonly city: string;
  readonly state: string;
  readonly zip3: string;
  readonly areaCode: string;
}

export const CITIES: readonly City[] = [
  { city: 'Boston', state: 'MA', zip3: '021', areaCode: '617' },
  { city: 'Worcester', state: 'MA', zip3: '016', areaCode: '508' },
  { city: 'Springfield', state: 'MA', zip3: '011', areaCode: '413' },
  { city: 'Providence', state: 'RI', zip3: '029', areaCode: '401' },
  { city: 'Hartford', state: 'CT', zip3: '061', areaCode: '860' },
  { city: 'Albany', state: 'NY', zip3: '122', areaCode: '518' },
  { city: 'Buffalo', state: 'NY', zip3: '142', areaCode: '716' },
  { city: 'Philadelphia', state: 'PA', zip3: '191', areaCode: '215' },
  { city: 'Pittsburgh', state: 'PA', zip3: '152', areaCode: '412' },
  { city: 'Baltimore', state: 'MD', zip3: '212', areaCode: '410' },
  { city: 'Richmond', state: 'VA', zip3: '232', areaCode: '804' },
  { city: 'Raleigh', state: 'NC', zip3: '276', areaCode: '919' },
  { city: 'Atlanta', state: 'GA', zip3: '303', areaCode: '404' },
  { city: 'Columbus', state: 'OH', zip3: '432', areaCode: '614' },
  { city: 'Cleveland', state: 'OH', zip3: '441', areaCode: '216' },
  { city: 'Detroit', state: 'MI', zip3: '482', areaCode: '313' },
  { city: 'Chicago', state: 'IL', zip3: '606', areaCode: '312' },
  { city: 'Madison', state: 'WI', zip3: '537', areaCode: '608' },
  { city: 'Minneapolis', state: 'MN', zip3: '554', areaCode: '612' },
  { city: 'St. Louis', state: 'MO', zip3: '631', areaCode: '314' },
  { city: 'Denver', state: 'CO', zip3: '802', areaCode: '303' },
  { city: 'Phoenix', state: 'AZ', zip3: '850', areaCode: '602' },
  { city: 'Austin', state: 'TX', zip3: '787', areaCode: '512' },
  { city: 'Houston', state: 'TX', zip3: '770', areaCode: '713' },
  { city: 'Seattle', state: 'WA', zip3: '981', areaCode: '206' },
  { city: 'Portland', state: 'OR', zip3: '972', areaCode: '503' },
  { city: 'Sacramento', state: 'CA', zip3: '958', areaCode: '916' },
  { city: 'San Diego', state: 'CA', zip3: '921', areaCode: '619' },
];

export const STREET_NAMES = [
  'Main',
  'Oak',
  'Maple',
  'Cedar',
  'Elm',
  'Pine',
  'Washington',
  'Lake',
  'Hill',
  'Park',
  'Walnut',
  'Spring',
  'North',
  'Ridge',
  'Church',
  'Willow',
  'Mill',
  'Sunset',
  'Highland',
  'Jackson',
  'Franklin',
  'Chestnut',
  'River',
  'Meadow',
] as const;

export const STREET_SUFFIXES = ['St', 'Ave', 'Rd', 'Ln', 'Dr', 'Blvd', 'Way', 'Ct'] as const;

/**
 * OMB race categories (CDC Race & Ethnicity code set), with rough US weights. `detailed`: not an OMB
 * category, so us-core-race carries it in its `detailed` slice only (the `ombCategory` slice's binding,
 * http://hl7.org/fhir/us/core/ValueSet/omb-race-category, is required and holds the five OMB races).
 */
export const RACES: readonly (Code & { readonly weight: number; readonly detailed?: true })[] = [
  { system: SYSTEM.ombRace, code: '2106-3', display: 'White', weight: 60 },
  { system: SYSTEM.ombRace, code: '2054-5', display: 'Black or African American', weight: 13 },
  { system: SYSTEM.ombRace, code: '2028-9', display: 'Asian', weight: 6 },
  { system: SYSTEM.ombRace, code: '1002-5', display: 'American Indian or Alaska Native', weight: 1 },
  { system: SYSTEM.ombRace, code: '2076-8', display: 'Native Hawaiian or Other Pacific Islander', weight: 1 },
  { system: SYSTEM.ombRace, code: '2131-1', display: 'Other Race', weight: 8, detailed: true },
];

export const ETHNICITIES: readonly (Code & { readonly weight: number })[] = [
  { system: SYSTEM.ombRace, code: '2135-2', display: 'Hispanic or Latino', weight: 19 },
  { system: SYSTEM.ombRace, code: '2186-5', display: 'Not Hispanic or Latino', weight: 81 },
];

export const MARITAL_STATUSES: readonly Code[] = [
  { system: 'http://terminology.hl7.org/CodeSystem/v3-MaritalStatus', code: 'M', display: 'Married' },
  { system: 'http://terminology.hl7.org/CodeSystem/v3-MaritalStatus', code: 'S', display: 'Never Married' },
  { system: 'http://terminology.hl7.org/CodeSystem/v3-MaritalStatus', code: 'D', display: 'Divorced' },
  { system: 'http://terminology.hl7.org/CodeSystem/v3-MaritalStatus', code: 'W', display: 'Widowed' },
];

export const LANGUAGES: readonly (Code & { readonly weight: number })[] = [
  { system: 'urn:ietf:bcp:47', code: 'en-US', display: 'English (United States)', weight: 85 },
  { system: 'urn:ietf:bcp:47', code: 'es', display: 'Spanish', weight: 11 },
  { system: 'urn:ietf:bcp:47', code: 'zh', display: 'Chinese', weight: 2 },
  { system: 'urn:ietf:bcp:47', code: 'vi', display: 'Vietnamese', weight: 2 },
];

// ---------------------------------------------------------------- Practitioner and Organization

export const QUALIFICATIONS: readonly Code[] = [
  { system: 'http://terminology.hl7.org/CodeSystem/v2-0360|2.7', code: 'MD', display: 'Doctor of Medicine' },
  {
    system: 'http://terminology.hl7.org/CodeSystem/v2-0360|2.7',
    code: 'DO',
    display: 'Doctor of Osteopathy',
  },
  { system: 'http://terminology.hl7.org/CodeSystem/v2-0360|2.7', code: 'NP', display: 'Nurse Practitioner' },
];

export const ORGANIZATION_SUFFIXES = [
  'Family Medicine',
  'Medical Center',
  'Community Health Center',
  'Primary Care Associates',
  'General Hospital',
  'Internal Medicine Group',
] as const;

// ---------------------------------------------------------------- Encounter

export const ENCOUNTER_STATUSES: readonly StatusCode[] = [
  { code: 'finished', weight: 91 },
  { code: 'cancelled', weight: 5 },
  { code: 'in-progress', weight: 2 },
  { code: 'entered-in-error', weight: 2 },
];

export interface EncounterKind {
  readonly class: Code;
  readonly type: Code;
  readonly minMinutes: number;
  readonly maxMinutes: number;
  readonly weight: number;
}

const actCode = (code: string, display: string): Code => ({ system: SYSTEM.actCode, code, display });

export const ENCOUNTER_KINDS: readonly EncounterKind[] = [
  {
    class: actCode('AMB', 'ambulatory'),
    type: snomed('185349003', 'Encounter for check up (procedure)'),
    minMinutes: 20,
    maxMinutes: 45,
    weight: 30,
  },
  {
    class: actCode('AMB', 'ambulatory'),
    type: snomed('390906007', 'Follow-up encounter (procedure)'),
    minMinutes: 15,
    maxMinutes: 30,
    weight: 25,
  },
  {
    class: actCode('AMB', 'ambulatory'),
    type: snomed('185345009', 'Encounter for symptom (procedure)'),
    minMinutes: 15,
    maxMinutes: 40,
    weight: 20,
  },
  {
    class: actCode('VR', 'virtual'),
    type: snomed('185317003', 'Telephone encounter (procedure)'),
    minMinutes: 10,
    maxMinutes: 20,
    weight: 12,
  },
  {
    class: actCode('EMER', 'emergency'),
    type: snomed('50849002', 'Emergency room admission (procedure)'),
    minMinutes: 90,
    maxMinutes: 360,
    weight: 8,
  },
  {
    class: actCode('IMP', 'inpatient encounter'),
    type: snomed('32485007', 'Hospital admission (procedure)'),
    minMinutes: 24 * 60,
    maxMinutes: 72 * 60,
    weight: 5,
  },
];

export const ENCOUNTER_REASONS: readonly Code[] = [
  snomed('267036007', 'Dyspnea (finding)'),
  snomed('21522001', 'Abdominal pain (finding)'),
  snomed('29857009', 'Chest pain (finding)'),
  snomed('25064002', 'Headache (finding)'),
  snomed('386661006', 'Fever (finding)'),
  snomed('49727002', 'Cough (finding)'),
];

// ---------------------------------------------------------------- Observation

export type ObservationCategory = 'vital-signs' | 'laboratory' | 'social-history';

export const OBSERVATION_CATEGORY_DISPLAY: Readonly<Record<ObservationCategory, string>> = {
  'vital-signs': 'Vital Signs',
  laboratory: 'Laboratory',
  'social-history': 'Social History',
};

export interface QuantityValue {
  readonly kind: 'quantity';
  readonly unit: string;
  readonly min: number;
  readonly max: number;
  readonly decimals: number;
  /** Reference range, for laboratory results. */
  readonly low?: number;
  readonly high?: number;
}

export interface BloodPressureValue {
  readonly kind: 'blood-pressure';
}

export interface ConceptValue {
  readonly kind: 'concept';
  readonly answers: readonly Code[];
}

export interface ObservationKind {
  readonly category: ObservationCategory;
  readonly codes: readonly Code[];
  readonly profile: string;
  readonly value: QuantityValue | BloodPressureValue | ConceptValue;
  readonly weight: number;
}

/**
 * US Core 6.1.0's own vital-sign profiles (http://hl7.org/fhir/us/core/StructureDefinition/us-core-vital-signs
 * and its children), which fix each one's LOINC code and UCUM unit: a resource claiming only the base FHIR
 * vital-sign profile is checked against US Core's generic rules, not these.
 */
const VITAL_PROFILE = 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-';
const LAB_PROFILE = 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab';
const quantity = (
  unit: string,
  min: number,
  max: number,
  decimals: number,
  low?: number,
  high?: number,
): QuantityValue => ({
  kind: 'quantity',
  unit,
  min,
  max,
  decimals,
  ...(low === undefined ? {} : { low }),
  ...(high === undefined ? {} : { high }),
});

export const OBSERVATION_KINDS: readonly ObservationKind[] = [
  {
    category: 'vital-signs',
    codes: [loinc('8867-4', 'Heart rate')],
    profile: `${VITAL_PROFILE}heart-rate`,
    value: quantity('/min', 55, 105, 0),
    weight: 3,
  },
  {
    category: 'vital-signs',
    codes: [loinc('9279-1', 'Respiratory rate')],
    profile: `${VITAL_PROFILE}respiratory-rate`,
    value: quantity('/min', 12, 20, 0),
    weight: 3,
  },
  {
    category: 'vital-signs',
    codes: [loinc('8310-5', 'Body temperature')],
    profile: `${VITAL_PROFILE}body-temperature`,
    value: quantity('Cel', 36.2, 37.9, 1),
    weight: 3,
  },
  {
    category: 'vital-signs',
    codes: [loinc('29463-7', 'Body weight')],
    profile: `${VITAL_PROFILE}body-weight`,
    value: quantity('kg', 48, 118, 1),
    weight: 3,
  },
  {
    category: 'vital-signs',
    codes: [loinc('8302-2', 'Body height')],
    profile: `${VITAL_PROFILE}body-height`,
    value: quantity('cm', 150, 193, 1),
    weight: 3,
  },
  {
    category: 'vital-signs',
    codes: [loinc('39156-5', 'Body mass index (BMI) [Ratio]')],
    profile: `${VITAL_PROFILE}bmi`,
    value: quantity('kg/m2', 18.5, 38, 1),
    weight: 3,
  },
  {
    category: 'vital-signs',
    codes: [loinc('85354-9', 'Blood pressure panel with all children optional')],
    profile: `${VITAL_PROFILE}blood-pressure`,
    value: { kind: 'blood-pressure' },
    weight: 4,
  },
  {
    category: 'vital-signs',
    // us-core-pulse-oximetry requires both codings (slices PulseOx 59408-5 and O2Sat 2708-6, 1..1 each).
    codes: [
      loinc('59408-5', 'Oxygen saturation in Arterial blood by Pulse oximetry'),
      loinc('2708-6', 'Oxygen saturation in Arterial blood'),
    ],
    profile: `${VITAL_PROFILE}pulse-oximetry`,
    value: quantity('%', 92, 100, 0),
    weight: 2,
  },
  {
    category: 'laboratory',
    codes: [loinc('4548-4', 'Hemoglobin A1c/Hemoglobin.total in Blood')],
    profile: LAB_PROFILE,
    value: quantity('%', 4.6, 9.8, 1, 4, 5.6),
    weight: 2,
  },
  {
    category: 'laboratory',
    codes: [loinc('2339-0', 'Glucose [Mass/volume] in Blood')],
    profile: LAB_PROFILE,
    value: quantity('mg/dL', 70, 190, 0, 70, 99),
    weight: 2,
  },
  {
    category: 'laboratory',
    codes: [loinc('2093-3', 'Cholesterol [Mass/volume] in Serum or Plasma')],
    profile: LAB_PROFILE,
    value: quantity('mg/dL', 140, 260, 0, undefined, 200),
    weight: 2,
  },
  {
    category: 'laboratory',
    codes: [loinc('2085-9', 'Cholesterol in HDL [Mass/volume] in Serum or Plasma')],
    profile: LAB_PROFILE,
    value: quantity('mg/dL', 30, 80, 0, 40),
    weight: 2,
  },
  {
    category: 'laboratory',
    codes: [loinc('18262-6', 'Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay')],
    profile: LAB_PROFILE,
    value: quantity('mg/dL', 60, 190, 0, undefined, 100),
    weight: 2,
  },
  {
    category: 'laboratory',
    codes: [loinc('2571-8', 'Triglyceride [Mass/volume] in Serum or Plasma')],
    profile: LAB_PROFILE,
    value: quantity('mg/dL', 50, 300, 0, undefined, 150),
    weight: 2,
  },
  {
    category: 'laboratory',
    codes: [loinc('718-7', 'Hemoglobin [Mass/volume] in Blood')],
    profile: LAB_PROFILE,
    value: quantity('g/dL', 10.5, 17.5, 1, 12, 17.5),
    weight: 2,
  },
  {
    category: 'laboratory',
    codes: [loinc('6690-2', 'Leukocytes [#/volume] in Blood by Automated count')],
    profile: LAB_PROFILE,
    value: quantity('10*3/uL', 3.5, 12.5, 1, 4.5, 11),
    weight: 2,
  },
  {
    category: 'laboratory',
    codes: [loinc('2160-0', 'Creatinine [Mass/volume] in Serum or Plasma')],
    profile: LAB_PROFILE,
    value: quantity('mg/dL', 0.6, 1.8, 2, 0.7, 1.3),
    weight: 2,
  },
  {
    category: 'laboratory',
    codes: [loinc('2951-2', 'Sodium [Moles/volume] in Serum or Plasma')],
    profile: LAB_PROFILE,
    value: quantity('mmol/L', 132, 147, 0, 136, 145),
    weight: 2,
  },
  {
    category: 'laboratory',
    codes: [loinc('2823-3', 'Potassium [Moles/volume] in Serum or Plasma')],
    profile: LAB_PROFILE,
    value: quantity('mmol/L', 3.3, 5.4, 1, 3.5, 5.1),
    weight: 2,
  },
  {
    category: 'social-history',
    codes: [loinc('72166-2', 'Tobacco smoking status')],
    profile: 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-smokingstatus',
    value: {
      kind: 'concept',
      answers: [
        snomed('266919005', 'Never smoked tobacco (finding)'),
        snomed('8517006', 'Ex-smoker (finding)'),
        snomed('449868002', 'Smokes tobacco daily (finding)'),
        snomed('428041000124106', 'Occasional tobacco smoker (finding)'),
      ],
    },
    weight: 2,
  },
  {
    category: 'social-history',
    codes: [loinc('74013-4', 'Alcoholic drinks per day')],
    // US Core 6.1.0 has no social-history profile: an observation without a profile of its own is a
    // Simple Observation, whose category binding (us-core-simple-observation-category) includes social-history.
    profile: 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-simple-observation',
    value: quantity('{drinks}/d', 0, 4, 0),
    weight: 1,
  },
];

export const BLOOD_PRESSURE_COMPONENTS = {
  systolic: loinc('8480-6', 'Systolic blood pressure'),
  diastolic: loinc('8462-4', 'Diastolic blood pressure'),
} as const;

export const OBSERVATION_STATUSES: readonly StatusCode[] = [
  { code: 'final', weight: 93 },
  { code: 'amended', weight: 3 },
  { code: 'preliminary', weight: 2 },
  { code: 'cancelled', weight: 1 },
  { code: 'entered-in-error', weight: 1 },
];

export const INTERPRETATIONS = {
  normal: {
    system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation',
    code: 'N',
    display: 'Normal',
  },
  high: {
    system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation',
    code: 'H',
    display: 'High',
  },
  low: {
    system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation',
    code: 'L',
    display: 'Low',
  },
} as const;

// ---------------------------------------------------------------- Medication

export interface MedicationKind {
  readonly code: Code;
  readonly dosage: string;
  readonly route: Code;
  readonly dose: { readonly value: number; readonly unit: string; readonly formCode: string };
  readonly perDay: number;
  readonly supplyDays: number;
}

const ORAL = snomed('26643006', 'Oral route (qualifier value)');
const INHALED = snomed('447694001', 'Respiratory tract route (qualifier value)');
const SUBCUTANEOUS = snomed('34206005', 'Subcutaneous route (qualifier value)');
const tablet = { value: 1, unit: 'tablet', formCode: 'TAB' } as const;
const capsule = { value: 1, unit: 'capsule', formCode: 'CAP' } as const;
const puffs = { value: 2, unit: 'puff', formCode: 'INHL' } as const;

export const MEDICATIONS = {
  metformin: {
    code: rxnorm('860975', '24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet'),
    dosage: 'Take 1 tablet by mouth once daily with the evening meal',
    route: ORAL,
    dose: tablet,
    perDay: 1,
    supplyDays: 90,
  },
  insulin: {
    code: rxnorm(
      '106892',
      'insulin isophane, human 70 UNT/ML / insulin, regular, human 30 UNT/ML Injectable Suspension [Humulin]',
    ),
    dosage: 'Inject 20 units under the skin twice daily before meals',
    route: SUBCUTANEOUS,
    dose: { value: 20, unit: 'unit', formCode: 'INJ' },
    perDay: 2,
    supplyDays: 30,
  },
  lisinopril: {
    code: rxnorm('314076', 'lisinopril 10 MG Oral Tablet'),
    dosage: 'Take 1 tablet by mouth once daily',
    route: ORAL,
    dose: tablet,
    perDay: 1,
    supplyDays: 90,
  },
  amlodipine: {
    code: rxnorm('197361', 'amlodipine 5 MG Oral Tablet'),
    dosage: 'Take 1 tablet by mouth once daily',
    route: ORAL,
    dose: tablet,
    perDay: 1,
    supplyDays: 90,
  },
  hydrochlorothiazide: {
    code: rxnorm('310798', 'hydrochlorothiazide 25 MG Oral Tablet'),
    dosage: 'Take 1 tablet by mouth every morning',
    route: ORAL,
    dose: tablet,
    perDay: 1,
    supplyDays: 90,
  },
  atorvastatin: {
    code: rxnorm('259255', 'atorvastatin 80 MG Oral Tablet'),
    dosage: 'Take 1 tablet by mouth at bedtime',
    route: ORAL,
    dose: tablet,
    perDay: 1,
    supplyDays: 90,
  },
  simvastatin: {
    code: rxnorm('312961', 'simvastatin 20 MG Oral Tablet'),
    dosage: 'Take 1 tablet by mouth at bedtime',
    route: ORAL,
    dose: tablet,
    perDay: 1,
    supplyDays: 90,
  },
  albuterol: {
    code: rxnorm('745679', '200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler'),
    dosage: 'Inhale 2 puffs every 4 to 6 hours as needed for wheezing',
    route: INHALED,
    dose: puffs,
    perDay: 4,
    supplyDays: 25,
  },
  fluticasone: {
    code: rxnorm('895994', '120 ACTUAT fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler'),
    dosage: 'Inhale 2 puffs twice daily; rinse mouth after use',
    route: INHALED,
    dose: puffs,
    perDay: 2,
    supplyDays: 30,
  },
  fluoxetine: {
    code: rxnorm('310385', 'fluoxetine 20 MG Oral Capsule'),
    dosage: 'Take 1 capsule by mouth once daily',
    route: ORAL,
    dose: capsule,
    perDay: 1,
    supplyDays: 30,
  },
  amoxicillin: {
    code: rxnorm('308182', 'amoxicillin 250 MG Oral Capsule'),
    dosage: 'Take 1 capsule by mouth three times daily for 10 days',
    route: ORAL,
    dose: capsule,
    perDay: 3,
    supplyDays: 10,
  },
  ibuprofen: {
    code: rxnorm('310965', 'ibuprofen 200 MG Oral Tablet'),
    dosage: 'Take 1 tablet by mouth every 6 hours as needed for pain',
    route: ORAL,
    dose: tablet,
    perDay: 4,
    supplyDays: 15,
  },
  acetaminophen: {
    code: rxnorm('313782', 'acetaminophen 325 MG Oral Tablet'),
    dosage: 'Take 2 tablets by mouth every 6 hours as needed for pain or fever',
    route: ORAL,
    dose: { value: 2, unit: 'tablet', formCode: 'TAB' },
    perDay: 8,
    supplyDays: 10,
  },
} as const satisfies Record<string, MedicationKind>;

export type MedicationName = keyof typeof MEDICATIONS;
export const MEDICATION_NAMES = Object.keys(MEDICATIONS) as MedicationName[];

export const MEDICATION_REQUEST_STATUSES: readonly StatusCode[] = [
  { code: 'active', weight: 45 },
  { code: 'completed', weight: 35 },
  { code: 'stopped', weight: 12 },
  { code: 'cancelled', weight: 5 },
  { code: 'on-hold', weight: 3 },
];

// ---------------------------------------------------------------- Condition

export interface ConditionKind {
  readonly snomed: Code;
  readonly icd10: Code;
  /** Chronic conditions sit on the problem list; acute ones are encounter diagnoses that resolve. */
  readonly chronic: boolean;
  /** What gets prescribed for it. */
  readonly medications: readonly MedicationName[];
}

/** Index 0 is type 2 diabetes: the `diabetes` Group's members have it. */
export const CONDITION_KINDS: readonly ConditionKind[] = [
  {
    snomed: snomed('44054006', 'Diabetes mellitus type 2 (disorder)'),
    icd10: icd10('E11.9', 'Type 2 diabetes mellitus without complications'),
    chronic: true,
    medications: ['metformin', 'insulin'],
  },
  {
    snomed: snomed('38341003', 'Hypertensive disorder, systemic arterial (disorder)'),
    icd10: icd10('I10', 'Essential (primary) hypertension'),
    chronic: true,
    medications: ['lisinopril', 'amlodipine', 'hydrochlorothiazide'],
  },
  {
    snomed: snomed('55822004', 'Hyperlipidemia (disorder)'),
    icd10: icd10('E78.5', 'Hyperlipidemia, unspecified'),
    chronic: true,
    medications: ['atorvastatin', 'simvastatin'],
  },
  {
    snomed: snomed('195967001', 'Asthma (disorder)'),
    icd10: icd10('J45.909', 'Unspecified asthma, uncomplicated'),
    chronic: true,
    medications: ['albuterol', 'fluticasone'],
  },
  {
    snomed: snomed('13645005', 'Chronic obstructive lung disease (disorder)'),
    icd10: icd10('J44.9', 'Chronic obstructive pulmonary disease, unspecified'),
    chronic: true,
    medications: ['albuterol'],
  },
  {
    snomed: snomed('35489007', 'Depressive disorder (disorder)'),
    icd10: icd10('F32.A', 'Depression, unspecified'),
    chronic: true,
    medications: ['fluoxetine'],
  },
  {
    snomed: snomed('197480006', 'Anxiety disorder (disorder)'),
    icd10: icd10('F41.9', 'Anxiety disorder, unspecified'),
    chronic: true,
    medications: ['fluoxetine'],
  },
  {
    snomed: snomed('444814009', 'Viral sinusitis (disorder)'),
    icd10: icd10('J01.90', 'Acute sinusitis, unspecified'),
    chronic: false,
    medications: ['acetaminophen'],
  },
  {
    snomed: snomed('10509002', 'Acute bronchitis (disorder)'),
    icd10: icd10('J20.9', 'Acute bronchitis, unspecified'),
    chronic: false,
    medications: ['amoxicillin', 'acetaminophen'],
  },
  {
    snomed: snomed('43878008', 'Streptococcal sore throat (disorder)'),
    icd10: icd10('J02.0', 'Streptococcal pharyngitis'),
    chronic: false,
    medications: ['amoxicillin'],
  },
  {
    snomed: snomed('239873007', 'Osteoarthritis of knee (disorder)'),
    icd10: icd10('M17.9', 'Osteoarthritis of knee, unspecified'),
    chronic: true,
    medications: ['ibuprofen', 'acetaminophen'],
  },
  {
    snomed: snomed('162864005', 'Body mass index 30+ - obesity (finding)'),
    icd10: icd10('E66.9', 'Obesity, unspecified'),
    chronic: true,
    medications: [],
  },
  {
    snomed: snomed('271737000', 'Anemia (disorder)'),
    icd10: icd10('D64.9', 'Anemia, unspecified'),
    chronic: true,
    medications: [],
  },
  {
    snomed: snomed('49436004', 'Atrial fibrillation (disorder)'),
    icd10: icd10('I48.91', 'Unspecified atrial fibrillation'),
    chronic: true,
    medications: [],
  },
  {
    snomed: snomed('68496003', 'Polyp of colon (disorder)'),
    icd10: icd10('K63.5', 'Polyp of colon'),
    chronic: false,
    medications: [],
  },
];

export const CHRONIC_CLINICAL_STATUSES: readonly StatusCode[] = [
  { code: 'active', weight: 85 },
  { code: 'inactive', weight: 5 },
  { code: 'remission', weight: 5 },
  { code: 'recurrence', weight: 3 },
  { code: 'relapse', weight: 2 },
];

export const ACUTE_CLINICAL_STATUSES: readonly StatusCode[] = [
  { code: 'resolved', weight: 85 },
  { code: 'active', weight: 10 },
  { code: 'recurrence', weight: 5 },
];

/** Every `condition-clinical` code, in a fixed order (filter masks are indexed by it). */
export const CLINICAL_STATUS_CODES = [
  'active',
  'recurrence',
  'relapse',
  'inactive',
  'remission',
  'resolved',
] as const;

export const CONDITION_CATEGORIES = {
  problemList: { system: SYSTEM.conditionCategory, code: 'problem-list-item', display: 'Problem List Item' },
  encounterDiagnosis: {
    system: SYSTEM.conditionCategory,
    code: 'encounter-diagnosis',
    display: 'Encounter Diagnosis',
  },
} as const;

// ---------------------------------------------------------------- AllergyIntolerance

export interface AllergyKind {
  readonly code: Code;
  readonly category: 'food' | 'medication' | 'environment' | 'biologic';
  readonly type: 'allergy' | 'intolerance';
  readonly reaction: Code;
}

export const ALLERGY_KINDS: readonly AllergyKind[] = [
  {
    code: snomed('762952008', 'Peanut (substance)'),
    category: 'food',
    type: 'allergy',
    reaction: snomed('39579001', 'Anaphylaxis (disorder)'),
  },
  {
    code: snomed('764146007', 'Penicillin (substance)'),
    category: 'medication',
    type: 'allergy',
    reaction: snomed('271807003', 'Eruption of skin (disorder)'),
  },
  {
    code: snomed('387458008', 'Aspirin (substance)'),
    category: 'medication',
    type: 'intolerance',
    reaction: snomed('247472004', 'Wheal (finding)'),
  },
  {
    code: snomed('256259004', 'Pollen (substance)'),
    category: 'environment',
    type: 'allergy',
    reaction: snomed('878820003', 'Rhinoconjunctivitis (disorder)'),
  },
  {
    code: snomed('264287008', 'Animal dander (substance)'),
    category: 'environment',
    type: 'allergy',
    reaction: snomed('49727002', 'Cough (finding)'),
  },
  {
    code: snomed('111088007', 'Latex (substance)'),
    category: 'environment',
    type: 'allergy',
    reaction: snomed('247472004', 'Wheal (finding)'),
  },
  {
    code: snomed('260147004', 'House dust mite (organism)'),
    category: 'environment',
    type: 'allergy',
    reaction: snomed('267036007', 'Dyspnea (finding)'),
  },
  {
    code: snomed('102263004', 'Eggs (edible) (substance)'),
    category: 'food',
    type: 'allergy',
    reaction: snomed('271807003', 'Eruption of skin (disorder)'),
  },
  {
    code: snomed('3718001', "Cow's milk (substance)"),
    category: 'food',
    type: 'intolerance',
    reaction: snomed('21522001', 'Abdominal pain (finding)'),
  },
  {
    code: rxnorm('2670', 'Codeine'),
    category: 'medication',
    type: 'intolerance',
    reaction: snomed('422587007', 'Nausea (finding)'),
  },
  {
    code: rxnorm('10180', 'Sulfamethoxazole'),
    category: 'medication',
    type: 'allergy',
    reaction: snomed('271807003', 'Eruption of skin (disorder)'),
  },
];

export const ALLERGY_CLINICAL_STATUSES: readonly StatusCode[] = [
  { code: 'active', weight: 90 },
  { code: 'inactive', weight: 6 },
  { code: 'resolved', weight: 4 },
];

// ---------------------------------------------------------------- Procedure

export interface ProcedureKind {
  readonly code: Code;
  readonly minutes: number;
  readonly weight: number;
}

export const PROCEDURE_KINDS: readonly ProcedureKind[] = [
  { code: snomed('430193006', 'Medication Reconciliation (procedure)'), minutes: 15, weight: 20 },
  {
    code: snomed('710824005', 'Assessment of health and social care needs (procedure)'),
    minutes: 15,
    weight: 15,
  },
  {
    code: snomed('428191000124101', 'Documentation of current medications (procedure)'),
    minutes: 10,
    weight: 15,
  },
  { code: snomed('171207006', 'Depression screening (procedure)'), minutes: 10, weight: 12 },
  { code: snomed('399208008', 'Plain X-ray of chest (procedure)'), minutes: 20, weight: 10 },
  { code: snomed('23426006', 'Measurement of respiratory function (procedure)'), minutes: 30, weight: 8 },
  { code: snomed('76601001', 'Intramuscular injection (procedure)'), minutes: 10, weight: 8 },
  { code: snomed('73761001', 'Colonoscopy (procedure)'), minutes: 45, weight: 5 },
  { code: snomed('180256009', 'Subcutaneous immunotherapy (procedure)'), minutes: 30, weight: 4 },
  { code: snomed('265764009', 'Renal dialysis (procedure)'), minutes: 240, weight: 3 },
];

export const PROCEDURE_STATUSES: readonly StatusCode[] = [
  { code: 'completed', weight: 94 },
  { code: 'in-progress', weight: 2 },
  { code: 'not-done', weight: 2 },
  { code: 'stopped', weight: 2 },
];

// ---------------------------------------------------------------- Immunization

export interface VaccineKind {
  readonly code: Code;
  readonly doseMl: number;
  readonly manufacturer: string;
}

export const VACCINES: readonly VaccineKind[] = [
  {
    code: cvx('140', 'Influenza, seasonal, injectable, preservative free'),
    doseMl: 0.5,
    manufacturer: 'Sanofi Pasteur',
  },
  {
    code: cvx(
      '208',
      'SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose',
    ),
    doseMl: 0.3,
    manufacturer: 'Pfizer, Inc',
  },
  { code: cvx('113', 'Td (adult) preservative free'), doseMl: 0.5, manufacturer: 'MassBiologics' },
  { code: cvx('115', 'Tdap'), doseMl: 0.5, manufacturer: 'GlaxoSmithKline' },
  {
    code: cvx('33', 'pneumococcal polysaccharide vaccine, 23 valent'),
    doseMl: 0.5,
    manufacturer: 'Merck and Co., Inc.',
  },
  { code: cvx('133', 'Pneumococcal conjugate PCV 13'), doseMl: 0.5, manufacturer: 'Pfizer, Inc' },
  { code: cvx('187', 'zoster vaccine recombinant'), doseMl: 0.5, manufacturer: 'GlaxoSmithKline' },
  { code: cvx('43', 'Hep B, adult'), doseMl: 1, manufacturer: 'GlaxoSmithKline' },
  { code: cvx('62', 'HPV, quadrivalent'), doseMl: 0.5, manufacturer: 'Merck and Co., Inc.' },
  { code: cvx('83', 'Hep A, ped/adol, 2 dose'), doseMl: 0.5, manufacturer: 'Merck and Co., Inc.' },
];

export const IMMUNIZATION_STATUSES: readonly StatusCode[] = [
  { code: 'completed', weight: 95 },
  { code: 'not-done', weight: 4 },
  { code: 'entered-in-error', weight: 1 },
];

// ---------------------------------------------------------------- DocumentReference

export const NOTE_TYPES: readonly Code[] = [
  loinc('11506-3', 'Progress note'),
  loinc('34117-2', 'History and physical note'),
  loinc('11488-4', 'Consult note'),
  loinc('18842-5', 'Discharge summary'),
  loinc('28570-0', 'Procedure note'),
  loinc('34133-9', 'Summary of episode note'),
];

export const DOCUMENT_REFERENCE_STATUSES: readonly StatusCode[] = [
  { code: 'current', weight: 90 },
  { code: 'superseded', weight: 8 },
  { code: 'entered-in-error', weight: 2 },
];

/** Sentences a synthetic clinical note is assembled from (no patient-identifying text). */
export const NOTE_SENTENCES = [
  'Patient presents for scheduled follow-up and reports feeling generally well.',
  'No acute distress noted on arrival; vital signs reviewed with the patient.',
  'Denies chest pain, shortness of breath, palpitations or syncope.',
  'Reports intermittent headaches over the past two weeks, relieved by rest.',
  'Medication list reconciled; patient reports good adherence to current regimen.',
  'Lungs clear to auscultation bilaterally without wheezes or crackles.',
  'Heart regular rate and rhythm, no murmurs, rubs or gallops.',
  'Abdomen soft, non-tender, non-distended with normal bowel sounds.',
  'Extremities without edema; peripheral pulses intact and symmetric.',
  'Recent laboratory results discussed, including lipid panel and HbA1c.',
  'Counseled on diet, regular physical activity and weight management.',
  'Smoking cessation resources offered; patient is considering options.',
  'Blood pressure remains above goal; will titrate antihypertensive therapy.',
  'Glycemic control improved since last visit; continue current plan.',
  'Influenza vaccination recommended and administered per protocol.',
  'Patient educated on warning signs that should prompt urgent evaluation.',
  'Referral placed to physical therapy for knee pain and reduced mobility.',
  'Screening for depression completed; score within normal range.',
  'Plan to repeat basic metabolic panel in three months.',
  'Follow up in clinic in six weeks or sooner if symptoms worsen.',
  'Patient verbalized understanding and agreement with the plan of care.',
  'Sleep quality fair; discussed sleep hygiene and limiting caffeine.',
  'No known drug allergies were reported in addition to those on file.',
  'Family history reviewed and unchanged since the previous encounter.',
] as const;
