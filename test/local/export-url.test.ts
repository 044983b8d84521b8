import { describe, expect, it } from 'vitest';
import { parseExportUrl } from '../../scripts/local/local-validation.js';

describe('npm run validate --export', () => {
  it('takes an export folder with or without its trailing slash, under a prefix or not', () => {
    expect(parseExportUrl('s3://bulk-export/source=epic/export=2026-11-26T110000.123Z/')).toEqual({
      bucket: 'bulk-export',
      prefix: '',
      folder: 'source=epic/export=2026-11-26T110000.123Z/',
    });
    expect(parseExportUrl('s3://my.bucket/fhir/raw/source=epic/export=2026-11-26T110000.123Z_run-2')).toEqual(
      {
        bucket: 'my.bucket',
        prefix: 'fhir/raw/',
        folder: 'fhir/raw/source=epic/export=2026-11-26T110000.123Z_run-2/',
      },
    );
  });

  it.each([
    ['/tmp/source=x/export=y/', '--export must be an s3:// URL of an export folder'],
    ['s3://bulk-export/', 'is not an export folder: expected it to end in source=ID/export=TIME/'],
    ['s3://bulk-export/source=epic/', 'is not an export folder'],
    ['s3://bulk-export/source=epic/export=t/type=Patient/', 'is not an export folder'],
    ['s3://bulk-export/source=Epic_1/export=t/', 'is not an export folder'],
  ])('refuses %s, saying what it expected', (url, message) => {
    expect(() => parseExportUrl(url)).toThrow(message);
  });
});
