/**
 * The few helpers every server-rendered page uses to put text into HTML: escaping, a dash for
 * nothing, and a UTC time element. Shared by pages.ts and release-section.ts.
 */

/** Escape text for HTML element and attribute content. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** Escaped text, or a dash for nothing. */
export function text(value: string | number | null | undefined): string {
  return value === null || value === undefined || value === '' ? '—' : escapeHtml(String(value));
}

/** A UTC time element ("2026-01-01 12:00:00Z"), or a dash. */
export function time(iso: string | null | undefined): string {
  if (!iso) return '—';
  return `<time datetime="${escapeHtml(iso)}">${escapeHtml(iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z'))}</time>`;
}
