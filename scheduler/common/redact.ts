/**
 * The one redactor, for every role. Text secd shows or stores comes partly from errors (git, GitLab,
 * Docker, MySQL), and an error can quote a URL with a token in it, or the token alone (git prints the
 * Basic-auth header it sent; a server echoes the statement it refused). Reasons, the page, the API,
 * `secd status` and the journal pass through here, and every secret becomes the same `***`, so a
 * reader learns one mark and a test asserts on one text.
 */

/** What a secret is replaced by, wherever secd shows text. */
export const REDACTED = '***';

// scheme://user-info@ — the user-info ends at the first "/", "@", space or quote.
const URL_USER_INFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@'"]+@/gi;

// Shorter strings would mask ordinary words and digits in the text around them.
const MIN_SECRET_LENGTH = 4;

/**
 * Replace the user-info of every URL in `text` (`https://oauth2:TOKEN@host` → `https://***@host`)
 * and every occurrence of each of `secrets` (4 characters or more) by `***`.
 */
export function redactCredentials(text: string, secrets: Iterable<string> = []): string {
  let out = text.replace(URL_USER_INFO, `$1${REDACTED}@`);
  for (const secret of secrets) {
    if (secret.length >= MIN_SECRET_LENGTH) out = out.split(secret).join(REDACTED);
  }
  return out;
}

/**
 * The forms a URL's credentials can take in a tool's output: its password as written (URL-encoded)
 * and decoded, and the Basic-auth value of `user:password`; a token given alone (`https://TOKEN@host`)
 * is the user name, so then that counts. None for a URL without credentials or a local path.
 */
export function urlSecrets(url: string): string[] {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return [];
  }
  if (parsed.username === '' && parsed.password === '') return [];
  const user = safeDecode(parsed.username);
  const password = safeDecode(parsed.password);
  const basic = Buffer.from(`${user}:${password}`).toString('base64');
  const forms = parsed.password === '' ? [parsed.username, user, basic] : [parsed.password, password, basic];
  return [...new Set(forms)].filter((s) => s.length >= MIN_SECRET_LENGTH);
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
