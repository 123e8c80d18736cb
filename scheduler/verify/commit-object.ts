/**
 * A raw git commit object split the way git splits it when it checks a signature: the fields, the
 * signature of the repository's object format, and the exact payload that was signed. Shared by the
 * OpenPGP and SSH verifiers, which must agree byte for byte on what was signed.
 */

/** One `Name <email> <unix time> <tz>` line of a commit (author or committer). */
export interface CommitIdentity {
  name: string;
  email: string;
  /** Seconds since the epoch, as recorded in the commit. */
  time: number;
  /** The recorded offset, e.g. "+0200". */
  timezone: string;
}

/** A commit object split the way git splits it when it checks a signature. */
export interface ParsedCommit {
  tree: string;
  parents: string[];
  author: CommitIdentity | null;
  committer: CommitIdentity | null;
  message: string;
  /** The armored signature (continuation-line prefixes removed), or null when unsigned. */
  signature: string | null;
  /** The bytes that were signed: the object without its gpgsig / gpgsig-sha256 header lines. */
  payload: Buffer;
}

/** Which hash a repository names objects with; it decides which signature header is "the" signature. */
export type ObjectFormat = 'sha1' | 'sha256';

/** Split a raw commit object into its fields, its signature and the exact payload that was signed. */
export function parseCommit(raw: Buffer, objectFormat: ObjectFormat = 'sha1'): ParsedCommit {
  // Mirrors git's parse_buffer_signed_by_header(): in the header, the `gpgsig ` line of this object
  // format (`gpgsig-sha256 ` in a SHA-256 repository) and its continuation lines (one leading space)
  // are the signature; any other `gpgsig*` header with its continuations is dropped from the payload
  // too (it signs the other format's form of the commit); the first empty line ends the header and
  // everything from there on is payload, byte for byte.
  const sigHeader = objectFormat === 'sha1' ? 'gpgsig ' : 'gpgsig-sha256 ';
  const payloadParts: Buffer[] = [];
  const sigParts: string[] = [];
  const headerLines: string[] = [];
  let inSignature = false;
  let otherSignature = false;
  let sawSignature = false;
  let pos = 0;
  let bodyStart = raw.length;
  while (pos < raw.length) {
    const nl = raw.indexOf(0x0a, pos);
    const next = nl === -1 ? raw.length : nl + 1;
    const line = raw.subarray(pos, next);
    if (line[0] === 0x0a) {
      bodyStart = next;
      payloadParts.push(raw.subarray(pos));
      break;
    }
    const text = line.toString('utf8');
    let sig: string | null = null;
    if (inSignature && text.startsWith(' ')) {
      sig = text.slice(1);
    } else if (text.startsWith(sigHeader)) {
      sig = text.slice(sigHeader.length);
      otherSignature = false;
    } else if (text.startsWith('gpgsig')) {
      otherSignature = true;
    } else if (otherSignature && !text.startsWith(' ')) {
      otherSignature = false;
    }
    if (sig !== null) {
      sigParts.push(sig);
      sawSignature = true;
      inSignature = true;
    } else {
      if (!otherSignature) {
        payloadParts.push(line);
        headerLines.push(text.replace(/\n$/, ''));
      }
      inSignature = false;
    }
    pos = next;
  }

  let tree = '';
  const parents: string[] = [];
  let author: CommitIdentity | null = null;
  let committer: CommitIdentity | null = null;
  for (const line of headerLines) {
    if (line.startsWith(' ')) continue; // continuation of a header we do not read (mergetag)
    const space = line.indexOf(' ');
    const key = space === -1 ? line : line.slice(0, space);
    const value = space === -1 ? '' : line.slice(space + 1);
    if (key === 'tree') tree = value;
    else if (key === 'parent') parents.push(value);
    else if (key === 'author' && !author) author = parseIdentity(value);
    else if (key === 'committer' && !committer) committer = parseIdentity(value);
  }

  return {
    tree,
    parents,
    author,
    committer,
    message: raw.subarray(bodyStart).toString('utf8'),
    signature: sawSignature ? sigParts.join('') : null,
    payload: Buffer.concat(payloadParts),
  };
}

function parseIdentity(value: string): CommitIdentity | null {
  const m = /^(.*?) ?<([^<>]*)> (\d+) ([+-]\d{4})$/.exec(value);
  if (!m) return null;
  return { name: m[1]!, email: m[2]!, time: Number(m[3]), timezone: m[4]! };
}
