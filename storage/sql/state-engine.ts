/** Which engine holds the leader's state (DESIGN §11): the embedded SQLite file, or MariaDB/MySQL. */
export type StateEngine = 'sqlite' | 'mysql';
