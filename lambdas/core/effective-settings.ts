import { profileSetting, type SettingOrigin, writtenBySource } from '../schema/profiles.js';
import type { SourceSettings } from '../schema/source.js';

/**
 * A source's effective settings, one row per setting: what `--explain` prints
 * and what each execution logs once. With the raw source (a local run), each
 * row also says where its value came from: the source itself, its profile
 * (with the profile's reason), or the schema's default.
 */
export interface EffectiveSetting {
  /** As a source file writes it: `retryAfterCeilingSeconds`, `export.typeParameterStyle`. */
  readonly path: string;
  readonly value: unknown;
  readonly origin?: SettingOrigin;
  /** The profile's reason, when the value is the profile's. */
  readonly why?: string;
  readonly factSource?: string;
}

/** Settings whose values identify patients: a log says how many, never which. */
const PATIENT_LISTS = new Set(['export.patient']);
/** The nested settings shown one member per row. */
const NESTED = new Set(['export', 'serverSupports']);

export function effectiveSettings(settings: SourceSettings, raw?: unknown): EffectiveSetting[] {
  const rows: EffectiveSetting[] = [];
  const add = (path: string, value: unknown) => {
    if (value === undefined) return;
    if (raw === undefined) {
      rows.push({ path, value });
      return;
    }
    if (writtenBySource(raw, path)) {
      rows.push({ path, value, origin: 'source' });
      return;
    }
    const fact = profileSetting(settings.profile, path);
    rows.push(
      fact
        ? { path, value, origin: 'profile', why: fact.why, factSource: fact.source }
        : { path, value, origin: 'default' },
    );
  };
  for (const [key, value] of Object.entries(settings)) {
    if (key === 'id') continue;
    if (NESTED.has(key) && typeof value === 'object' && value !== null) {
      for (const [member, inner] of Object.entries(value)) add(`${key}.${member}`, inner);
    } else {
      add(key, value);
    }
  }
  return rows;
}

/** The settings as one log attribute: `{ path: value }`, patient lists as their length. */
export function settingsForLog(settings: SourceSettings): Record<string, unknown> {
  return Object.fromEntries(
    effectiveSettings(settings).map(({ path, value }) => [
      path,
      PATIENT_LISTS.has(path) && Array.isArray(value) ? `${value.length} patients` : value,
    ]),
  );
}

/** `--explain`: a table a person reads, one setting per line, its origin, and the profile's reason. */
export function renderEffectiveSettings(settings: SourceSettings, raw: unknown): string {
  const rows = effectiveSettings(settings, raw);
  const shown = rows.map((row) => ({
    ...row,
    text: typeof row.value === 'string' ? row.value : JSON.stringify(row.value),
  }));
  const width = Math.max(...shown.map((row) => row.path.length));
  const valueWidth = Math.min(40, Math.max(...shown.map((row) => row.text.length)));
  const lines = [
    `source ${settings.id}, profile ${settings.profile}: effective settings (source = written in the source file, profile = set by the profile, default = the schema's default)`,
  ];
  for (const row of shown) {
    const origin = row.origin === 'profile' ? `profile ${settings.profile}` : (row.origin ?? '');
    lines.push(`  ${row.path.padEnd(width)}  ${row.text.padEnd(valueWidth)}  ${origin}`);
    if (row.why)
      lines.push(`  ${''.padEnd(width)}  ${''.padEnd(valueWidth)}    why: ${row.why} (${row.factSource})`);
  }
  return `${lines.join('\n')}\n`;
}
