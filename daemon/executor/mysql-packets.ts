/**
 * The few pieces of the MySQL client/server protocol the dataset socket reads, so that a run can log
 * in only as its own account (issue 13): the server greeting's capability flags, the client's first
 * packet (HandshakeResponse41 or SSLRequest), the command byte of each later client packet, and an
 * ERR packet to tell a refused client why.
 *
 * Why hand-written: the MySQL libraries on npm (mysql2, mysql) are clients, and the proxy-side
 * parsers found there parse whole sessions into objects; secd needs a dozen fields and must not
 * slow a large SELECT down, so the server->client direction is never parsed after the greeting and
 * the client->server direction is read only at packet headers. Field layouts follow the MariaDB
 * protocol docs ("Connection", "Handshake Response Packet", "ERR_Packet", "Text Protocol").
 *
 * Rules, and why they are enough:
 * - Every packet is a 3-byte little-endian payload length and a 1-byte sequence number.
 * - The client's first packet must be at most MAX_HANDSHAKE_BYTES (which also turns away a PROXY
 *   protocol header that would claim another source address) and carry CLIENT_PROTOCOL_41 and neither CLIENT_SSL nor
 *   CLIENT_COMPRESS: a server that sees CLIENT_SSL in the first packet starts TLS whatever the
 *   packet's length (so a full response carrying the right name could hide a second, encrypted one),
 *   and compression would hide the later commands' bytes. Its user name (NUL-terminated, after the
 *   4 capability bytes, 4 max-packet bytes, 1 charset byte and 23 filler bytes) must be exact.
 * - After it, a client packet with sequence number 0 starts a command; every other packet continues
 *   one (authentication rounds, a payload over 16 MiB, LOAD DATA contents). The server resets the
 *   sequence to 0 before reading each command and drops a session whose packets arrive out of
 *   order, so no other packet is ever read as a command. Commands are an allow-list: what data
 *   clients send (queries, prepared statements, ping, quit...). COM_CHANGE_USER, which logs in
 *   again as anyone, is not on it; neither are replication, shutdown or MariaDB's COM_MULTI.
 */

/** CLIENT_* capability bits this module looks at. */
export const CLIENT_COMPRESS = 0x20;
export const CLIENT_PROTOCOL_41 = 0x200;
export const CLIENT_SSL = 0x800;

/** The largest first client packet accepted (a handshake response with connect attributes is ~1 KiB). */
export const MAX_HANDSHAKE_BYTES = 64 * 1024;

/** Commands a data client may send once logged in (first payload byte of a sequence-0 packet). */
const ALLOWED_COMMANDS: ReadonlyMap<number, string> = new Map([
  [0x01, 'COM_QUIT'],
  [0x02, 'COM_INIT_DB'],
  [0x03, 'COM_QUERY'],
  [0x04, 'COM_FIELD_LIST'],
  [0x09, 'COM_STATISTICS'],
  [0x0c, 'COM_PROCESS_KILL'],
  [0x0e, 'COM_PING'],
  [0x16, 'COM_STMT_PREPARE'],
  [0x17, 'COM_STMT_EXECUTE'],
  [0x18, 'COM_STMT_SEND_LONG_DATA'],
  [0x19, 'COM_STMT_CLOSE'],
  [0x1a, 'COM_STMT_RESET'],
  [0x1b, 'COM_SET_OPTION'],
  [0x1c, 'COM_STMT_FETCH'],
  [0x1f, 'COM_RESET_CONNECTION'],
  [0xfa, 'COM_STMT_BULK_EXECUTE'],
]);

/** Names of refused commands that have one, for the message. */
const KNOWN_COMMANDS: ReadonlyMap<number, string> = new Map([
  [0x11, 'COM_CHANGE_USER'],
  [0x12, 'COM_BINLOG_DUMP'],
  [0x08, 'COM_SHUTDOWN'],
  [0x0b, 'COM_CONNECT'],
  [0xfe, 'COM_MULTI'],
]);

/** Why a client is refused: a stable code and a sentence for the person running the client. */
export interface Refusal {
  code: 'wrong_user' | 'tls_refused' | 'compression_refused' | 'old_protocol' | 'bad_handshake' | 'command_refused';
  message: string;
}

/** The outcome of reading the client's first packet. */
export type HandshakeCheck =
  | { state: 'more' }
  | { state: 'ok'; length: number; seq: number }
  | { state: 'refused'; seq: number; refusal: Refusal };

/** Read the client's first packet from the start of `buf`: wait for more, accept it, or refuse it. */
export function checkHandshake(buf: Buffer, expectedUser: string): HandshakeCheck {
  if (buf.length < 4) return { state: 'more' };
  const length = buf.readUIntLE(0, 3);
  const seq = buf[3]!;
  const refuse = (code: Refusal['code'], message: string): HandshakeCheck => ({ state: 'refused', seq, refusal: { code, message } });
  if (length > MAX_HANDSHAKE_BYTES) return refuse('bad_handshake', 'the first packet is too large for a login');
  // The capability flags decide about TLS and compression before the rest of the packet is in.
  if (buf.length < 8) return { state: 'more' };
  const caps = buf.readUInt32LE(4);
  if (caps & CLIENT_SSL) {
    return refuse('tls_refused', 'TLS is not offered on the dataset socket (it is local to the run); connect without ssl');
  }
  if (caps & CLIENT_COMPRESS) return refuse('compression_refused', 'compression is not offered on the dataset socket; connect without compress');
  if (!(caps & CLIENT_PROTOCOL_41)) return refuse('old_protocol', 'the client speaks the pre-4.1 protocol, which the dataset socket does not accept');
  if (buf.length < 4 + length) return { state: 'more' };
  const payload = buf.subarray(4, 4 + length);
  const nameAt = 4 + 4 + 1 + 23;
  const end = payload.indexOf(0, nameAt);
  if (payload.length <= nameAt || end < 0) return refuse('bad_handshake', 'the login packet has no user name');
  const user = payload.subarray(nameAt, end);
  if (!user.equals(Buffer.from(expectedUser, 'utf8'))) {
    return refuse('wrong_user', `this run's dataset socket logs in only as ${expectedUser} (DB_USER), not as ${printable(user)}`);
  }
  return { state: 'ok', length, seq };
}

/**
 * Clear CLIENT_SSL and CLIENT_COMPRESS in the server's greeting (protocol 10) held at the start of
 * `buf`, in place, so clients that would use them when offered do not ask. Returns 'more' until the
 * capability bytes are in, 'done' once they are (or when the packet is no greeting, e.g. an ERR).
 */
export function stripGreetingCapabilities(buf: Buffer): 'more' | 'done' {
  if (buf.length < 5) return 'more';
  if (buf[4] !== 0x0a) return 'done';
  const versionEnd = buf.indexOf(0, 5);
  if (versionEnd < 0) return buf.length > 4 + 256 ? 'done' : 'more';
  // thread id (4), auth-plugin-data part 1 (8), filler (1), then the lower 2 capability bytes.
  const capsAt = versionEnd + 1 + 4 + 8 + 1;
  const length = buf.readUIntLE(0, 3);
  if (capsAt + 2 > 4 + length) return 'done';
  if (buf.length < capsAt + 2) return 'more';
  buf.writeUInt16LE(buf.readUInt16LE(capsAt) & ~(CLIENT_SSL | CLIENT_COMPRESS) & 0xffff, capsAt);
  return 'done';
}

/**
 * Follows client->server packet boundaries after the login packet and stops at the first command
 * that is not allowed. Bytes of a packet whose header (and command byte) is not complete yet are
 * held back, so nothing of a refused command ever reaches the server.
 */
export class ClientCommandGate {
  /** Payload bytes of the current packet still to pass. */
  private remaining = 0;
  private held: Buffer | null = null;

  /** Start after the login packet, `pending` payload bytes of which are still to come. */
  constructor(pending = 0) {
    this.remaining = pending;
  }

  /** The bytes of `chunk` that may go on to the server, and the refusal that stopped the rest. */
  feed(chunk: Buffer): { pass: Buffer; refusal: Refusal | null } {
    let data = chunk;
    if (this.held !== null) {
      data = Buffer.concat([this.held, chunk]);
      this.held = null;
    }
    let pos = 0;
    while (pos < data.length) {
      if (this.remaining > 0) {
        const step = Math.min(this.remaining, data.length - pos);
        pos += step;
        this.remaining -= step;
        continue;
      }
      if (data.length - pos < 4) {
        this.held = data.subarray(pos);
        return { pass: data.subarray(0, pos), refusal: null };
      }
      const length = data.readUIntLE(pos, 3);
      if (data[pos + 3] === 0) {
        if (length === 0) return { pass: data.subarray(0, pos), refusal: commandRefusal(null) };
        if (data.length - pos < 5) {
          this.held = data.subarray(pos);
          return { pass: data.subarray(0, pos), refusal: null };
        }
        const command = data[pos + 4]!;
        if (!ALLOWED_COMMANDS.has(command)) return { pass: data.subarray(0, pos), refusal: commandRefusal(command) };
      }
      pos += 4;
      this.remaining = length;
    }
    return { pass: data, refusal: null };
  }
}

function commandRefusal(command: number | null): Refusal {
  const name = command === null ? 'an empty command' : (KNOWN_COMMANDS.get(command) ?? `command 0x${command.toString(16).padStart(2, '0')}`);
  const why = command === 0x11 ? ': a run stays logged in as its own account' : '';
  return { code: 'command_refused', message: `the dataset socket does not pass ${name}${why}` };
}

/** ER_ACCESS_DENIED_ERROR for login refusals, ER_SPECIFIC_ACCESS_DENIED_ERROR for commands. */
const ERROR_CODES: Record<Refusal['code'], { code: number; sqlState: string }> = {
  wrong_user: { code: 1045, sqlState: '28000' },
  tls_refused: { code: 1045, sqlState: '28000' },
  compression_refused: { code: 1045, sqlState: '28000' },
  old_protocol: { code: 1045, sqlState: '28000' },
  bad_handshake: { code: 1045, sqlState: '08S01' },
  command_refused: { code: 1227, sqlState: '42000' },
};

/** A protocol-4.1 ERR packet with sequence number `seq`, saying `secd: <message>`. */
export function errPacket(seq: number, refusal: Refusal): Buffer {
  const { code, sqlState } = ERROR_CODES[refusal.code];
  const message = Buffer.from(`secd: ${refusal.message}`, 'utf8');
  const payload = Buffer.alloc(1 + 2 + 1 + 5 + message.length);
  payload[0] = 0xff;
  payload.writeUInt16LE(code, 1);
  payload.write(`#${sqlState}`, 3, 'latin1');
  message.copy(payload, 9);
  const header = Buffer.alloc(4);
  header.writeUIntLE(payload.length, 0, 3);
  header[3] = seq & 0xff;
  return Buffer.concat([header, payload]);
}

function printable(name: Buffer): string {
  const text = name.toString('utf8').slice(0, 64);
  return JSON.stringify(text.replace(/[^\x20-\x7e]/g, '?'));
}
