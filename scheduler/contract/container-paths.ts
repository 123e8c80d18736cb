/**
 * Paths inside a run's container that both roles must agree on: the leader writes them into the
 * run's environment (DB_SOCKET), the node mounts there. Node code may import this file.
 */

/** Where the node mounts the dataset socket's folder in the container. */
export const DATASET_SOCKET_DIR = '/run/mysqld';
/** The dataset socket inside the container (DB_SOCKET). */
export const DATASET_SOCKET = `${DATASET_SOCKET_DIR}/mysqld.sock`;
