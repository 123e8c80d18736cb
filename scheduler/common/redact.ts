/**
 * Text the leader shows about runs comes partly from errors (git, GitLab, Docker); an error can quote a
 * URL with a token in it. Everything the page, the API and `secd status` show passes through here.
 */

/** Replace the user-info part of every URL in `text` (`https://oauth2:TOKEN@host` → `https://***@host`). */
export function redactCredentials(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@'"]+@/gi, '$1***@');
}
